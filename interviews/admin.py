from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from interviews.exceptions import OffSchema
from interviews.models import (
    Answer,
    InterviewSession,
    PreparedQuestion,
    Question,
    ServedQuestion,
    Topic,
    question_fingerprint,
)
from interviews.spec import QuestionSpec


class QuestionForm(forms.ModelForm[Question]):
    class Meta:
        model = Question
        fields = ["topic", "difficulty", "text", "key_points", "outline", "is_active"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        # A pool question is served as any generated one is: it must pass the same spec.
        shape = {
            name: cleaned.get(name) for name in ("text", "key_points", "outline", "difficulty")
        }
        if not self.errors:
            try:
                QuestionSpec.parse(shape)
            except OffSchema as exc:
                field, _, problem = exc.detail.partition(": ")
                name = field.split(".")[0]
                self.add_error(name if name in shape else None, problem or exc.detail)
        topic, text = cleaned.get("topic"), cleaned.get("text")
        if topic and text:
            same = Question.objects.filter(topic=topic, fingerprint=question_fingerprint(text))
            if same.exclude(pk=self.instance.pk).exists():
                self.add_error("text", "This topic already has a question with this wording.")
        return cleaned


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin[Topic]):
    list_display = ["name", "slug", "order", "is_active"]
    list_editable = ["order", "is_active"]
    prepopulated_fields = {"slug": ["name"]}
    show_facets = admin.ShowFacets.NEVER


@admin.register(Question)
class QuestionAdmin(admin.ModelAdmin[Question]):
    """Staff edit the bank here. Reloading the bank (migrate) keeps their edits."""

    form = QuestionForm

    list_display = ["short_text", "topic", "difficulty", "source", "model", "is_active"]
    list_filter = ["topic", "difficulty", "source", "is_active"]
    list_select_related = ["topic"]
    search_fields = ["text", "=bank_key"]
    readonly_fields = ["bank_key", "source", "model", "created_at"]
    show_facets = admin.ShowFacets.NEVER
    show_full_result_count = False

    @admin.display(description="question")
    def short_text(self, question: Question) -> str:
        return question.text[:100]

    def has_delete_permission(self, request: HttpRequest, obj: Question | None = None) -> bool:
        # A served question is part of someone's paid history: deactivate it instead.
        if obj is not None and obj.served.exists():
            return False
        return super().has_delete_permission(request, obj)


class ServedInline(admin.TabularInline[ServedQuestion, InterviewSession]):
    model = ServedQuestion
    fields = ("position", "question", "cycle", "pool_reset_size", "debit", "served_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: InterviewSession | None = None) -> bool:
        return False


class ReadOnlyAdmin[M: Model](admin.ModelAdmin[M]):
    """What candidates did and paid for: staff read it, nobody edits or deletes it here."""

    show_facets = admin.ShowFacets.NEVER
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: M | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: M | None = None) -> bool:
        return False  # paid for: the candidate's history stays whole


@admin.register(InterviewSession)
class InterviewSessionAdmin(ReadOnlyAdmin[InterviewSession]):
    list_display = ["started_at", "user", "topic", "difficulty", "ended_at"]
    list_filter = ["topic", "difficulty"]
    list_select_related = ["user", "topic"]
    search_fields = ["=user__email"]
    readonly_fields = ["id", "user", "topic", "difficulty", "started_at", "ended_at"]
    inlines = [ServedInline]


@admin.register(ServedQuestion)
class ServedQuestionAdmin(ReadOnlyAdmin[ServedQuestion]):
    """Questions bought, beside their debits in the ledger; "pool reset" shows where a
    candidate had seen a whole topic and its pool started a new pass (free of charge)."""

    list_display = ["served_at", "user", "topic", "position", "cycle", "pool_reset_size", "debit"]
    list_filter = [("pool_reset_size", admin.EmptyFieldListFilter), "topic"]
    list_select_related = ["user", "topic", "debit"]
    search_fields = ["=user__email"]
    readonly_fields = [f.name for f in ServedQuestion._meta.fields]


@admin.register(Answer)
class AnswerAdmin(ReadOnlyAdmin[Answer]):
    list_display = ["served", "score", "feedback_source", "updated_at"]
    list_filter = ["feedback_source"]
    readonly_fields = [f.name for f in Answer._meta.fields]


@admin.register(PreparedQuestion)
class PreparedQuestionAdmin(ReadOnlyAdmin[PreparedQuestion]):
    """Questions prepared in the background before candidates asked (PREFETCH). "Discarded":
    prepared and never bought (the session ended, the candidate stopped, or it went stale): a
    model call's cost without revenue when its source is the LLM."""

    list_display = ["created_at", "session", "source", "model", "status", "resolved_at"]
    list_filter = ["status", "source"]
    list_select_related = ["session__topic"]
    search_fields = ["=session__user__email"]
    readonly_fields = [f.name for f in PreparedQuestion._meta.fields]
