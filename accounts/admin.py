"""Staff's view of accounts: find a user, deactivate a farmed or abusive one, see whether their
welcome tokens were granted. Balances and grants live in the ledger's admin."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import User, WelcomeGrant


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


class WelcomeGrantInline(admin.StackedInline):
    model = WelcomeGrant
    fields = ("tokens", "created_at")
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0
    verbose_name = "welcome tokens"
    verbose_name_plural = "welcome tokens"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreationForm
    inlines = [WelcomeGrantInline]
    ordering = ("-date_joined",)
    list_display = ("email", "is_active", "is_staff", "date_joined", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser")
    search_fields = ("email", "display_name")
    readonly_fields = ("date_joined", "last_login")
    show_full_result_count = False
    actions = ["deactivate"]
    fieldsets = (
        (None, {"fields": ("email", "display_name", "password")}),
        (
            "Access",
            {
                "fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions"),
                "description": "A deactivated account cannot log in; its ledger is unchanged.",
            },
        ),
        ("Dates", {"fields": ("date_joined", "last_login")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "usable_password", "password1", "password2"),
            },
        ),
    )

    @admin.action(description="Deactivate the selected accounts (they can no longer log in)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        yourself = request.user.pk or 0  # never deactivate the staff member doing it
        count = queryset.filter(is_active=True).exclude(pk=yourself).update(is_active=False)
        messages.success(request, f"Deactivated {count} account{'s' if count != 1 else ''}.")


@admin.register(WelcomeGrant)
class WelcomeGrantAdmin(admin.ModelAdmin):
    """One row per account whose welcome tokens were decided: 0 tokens means its mailbox had
    already had a grant (a second account on one inbox)."""

    list_display = ("user", "tokens", "created_at")
    list_filter = ("tokens",)
    search_fields = ("user__email",)
    list_select_related = ("user",)
    readonly_fields = ("user", "mailbox", "tokens", "created_at")
    ordering = ("-created_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
