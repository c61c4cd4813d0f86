"""Signup and login on django-allauth, with verification off (the tests' default; `make run`'s):
the welcome tokens come at signup. Verification is in test_verification.py."""

import pytest
from django.urls import reverse

from accounts.models import User, WelcomeGrant
from ledger.models import LedgerEntry

SIGNUP = "/accounts/signup/"
LOGIN = "/accounts/login/"
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
    assert WelcomeGrant.objects.get(user=user).tokens == 10
    page = client.get(reverse("interviews:dashboard")).content.decode()
    assert 'id="token-balance"' in page
    assert "10 tokens" in page
    assert "You have 10 tokens" in page


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({**GOOD, "email": "not-an-email"}, "email", "valid email"),
        ({**GOOD, "email": ""}, "email", "required"),
        ({**GOOD, "password2": "Quiet-Harbor-43"}, "password2", "same password"),
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
    assert "already registered" in response.content.decode()
    assert User.objects.count() == 1


def test_a_second_account_on_the_same_mailbox_gets_no_welcome_tokens(client, db, settings):
    settings.WELCOME_TOKENS = 10
    assert client.post(SIGNUP, {**GOOD, "email": "alice.smith@gmail.com"}).status_code == 302
    client.post("/accounts/logout/")
    response = client.post(SIGNUP, {**GOOD, "email": "AliceSmith+mock@googlemail.com"})
    assert response.status_code == 302
    second = User.objects.get(email__iexact="alicesmith+mock@googlemail.com")
    assert second.token_account.balance == 0
    assert WelcomeGrant.objects.get(user=second).tokens == 0
    page = client.get(reverse("interviews:dashboard")).content.decode()
    assert "already received its welcome tokens" in page
    assert LedgerEntry.objects.filter(kind="grant").count() == 1


def test_login_with_email_and_logout(client, make_user):
    make_user(email="ada@example.com", password="Quiet-Harbor-42")
    response = client.post(LOGIN, {"login": "Ada@Example.com", "password": "Quiet-Harbor-42"})
    assert response.status_code == 302
    assert client.get(reverse("interviews:dashboard")).status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get(reverse("interviews:dashboard")).status_code == 302


def test_a_wrong_password_says_so(client, make_user):
    make_user(email="ada@example.com", password="Quiet-Harbor-42")
    response = client.post(LOGIN, {"login": "ada@example.com", "password": "nope"})
    assert response.status_code == 400
    assert "not correct" in response.content.decode()


def test_signup_and_login_pages_are_public(client, db):
    assert client.get(SIGNUP).status_code == 200
    assert client.get(LOGIN).status_code == 200
    assert client.get("/accounts/password/reset/").status_code == 200
    assert client.get(reverse("home")).status_code == 200
