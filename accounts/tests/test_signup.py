import pytest
from django.urls import reverse

from accounts.models import User
from ledger.models import LedgerEntry

SIGNUP = reverse("accounts:signup")
GOOD = {"email": "new@example.com", "password1": "Quiet-Harbor-42", "password2": "Quiet-Harbor-42"}


def test_signup_creates_the_user_logs_in_and_grants_welcome_tokens(client, db, settings):
    settings.WELCOME_TOKENS = 10
    response = client.post(SIGNUP, GOOD)
    assert response.status_code == 302
    assert response["Location"] == reverse("interviews:dashboard")
    user = User.objects.get(email="new@example.com")
    assert user.token_account.balance == 10
    grant = LedgerEntry.objects.get(account__user=user)
    assert (grant.kind, grant.balance_delta, grant.source, grant.reason) == (
        "grant",
        10,
        "signup",
        "Welcome tokens",
    )
    page = client.get(reverse("interviews:dashboard")).content.decode()
    assert 'id="token-balance"' in page
    assert "10 tokens" in page


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({**GOOD, "email": "not-an-email"}, "email", "valid email"),
        ({**GOOD, "email": ""}, "email", "required"),
        ({**GOOD, "password2": "Quiet-Harbor-43"}, "password2", "do not match"),
        ({**GOOD, "password1": "short", "password2": "short"}, "password1", "too short"),
        (
            {**GOOD, "password1": "password123", "password2": "password123"},
            "password1",
            "too common",
        ),
        (
            {**GOOD, "password1": "48291736150", "password2": "48291736150"},
            "password1",
            "entirely numeric",
        ),
    ],
)
def test_signup_errors_are_clear_and_create_nothing(client, db, data, field, message):
    response = client.post(SIGNUP, data)
    assert response.status_code == 400
    errors = " ".join(response.context["form"].errors[field])
    assert message in errors
    assert message in response.content.decode()
    assert not User.objects.exists()
    assert not LedgerEntry.objects.exists()


def test_a_duplicate_email_is_refused_whatever_its_case(client, make_user):
    make_user(email="taken@example.com")
    response = client.post(SIGNUP, {**GOOD, "email": "TAKEN@example.com"})
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert User.objects.count() == 1


def test_login_with_email_and_logout(client, make_user):
    make_user(email="ada@example.com", password="Quiet-Harbor-42")
    response = client.post(
        reverse("accounts:login"), {"username": "Ada@Example.com", "password": "Quiet-Harbor-42"}
    )
    assert response.status_code == 302
    assert client.get(reverse("interviews:dashboard")).status_code == 200
    assert client.post(reverse("accounts:logout")).status_code == 302
    assert client.get(reverse("interviews:dashboard")).status_code == 302


def test_a_wrong_password_says_so(client, make_user):
    make_user(email="ada@example.com", password="Quiet-Harbor-42")
    response = client.post(
        reverse("accounts:login"), {"username": "ada@example.com", "password": "nope"}
    )
    assert response.status_code == 200
    assert "Please enter a correct" in response.content.decode()


def test_signup_and_login_pages_are_public(client, db):
    assert client.get(SIGNUP).status_code == 200
    assert client.get(reverse("accounts:login")).status_code == 200
    assert client.get(reverse("home")).status_code == 200
