"""Email verification (ACCOUNT_EMAIL_VERIFICATION, `mandatory` when DEBUG is off): the welcome
tokens come with the first verified address, once per account and once per mailbox."""

import re

import pytest
from django.core import mail
from django.urls import reverse

from accounts.models import User, WelcomeGrant
from config.testing import run_concurrently
from interviews.models import InterviewSession, Topic
from ledger.models import LedgerEntry
from ledger.selectors import account_problem_list

SIGNUP = "/accounts/signup/"
PASSWORD = "Quiet-Harbor-42"


def signup(client, email: str):
    return client.post(SIGNUP, {"email": email, "password1": PASSWORD, "password2": PASSWORD})


def confirm_link(to: str) -> str:
    message = next(m for m in reversed(mail.outbox) if to in m.to)
    match = re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^\s]+/)", str(message.body))
    assert match, "no confirmation link in the email"
    return match[1]


@pytest.fixture
def mandatory(settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    settings.WELCOME_TOKENS = 10


def balance(email: str) -> int:
    return User.objects.get(email__iexact=email).token_account.balance


def test_signup_sends_a_link_and_grants_nothing_until_it_is_opened(client, db, mandatory):
    response = signup(client, "ada@example.com")
    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    assert balance("ada@example.com") == 0
    assert not LedgerEntry.objects.exists()
    [message] = mail.outbox
    assert message.to == ["ada@example.com"]
    assert message.subject.startswith("[Mockroom]")

    # Until then, logging in only says to verify.
    login = client.post("/accounts/login/", {"login": "ada@example.com", "password": PASSWORD})
    assert login["Location"] == reverse("account_email_verification_sent")
    assert client.get(reverse("interviews:dashboard")).status_code == 302

    link = confirm_link("ada@example.com")
    page = client.get(link)
    assert page.status_code == 200
    assert "ada@example.com" in page.content.decode()
    assert balance("ada@example.com") == 0  # opening the page (a mail scanner) grants nothing
    response = client.post(link, follow=True)
    assert response.status_code == 200
    assert balance("ada@example.com") == 10
    assert "You have 10 tokens" in response.content.decode()
    # Confirming again (a double click, the link opened twice) grants nothing more.
    client.post(link)
    assert balance("ada@example.com") == 10
    assert LedgerEntry.objects.filter(kind="grant").count() == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("bob@example.com", "BOB@Example.COM"),  # refused as a duplicate account anyway
        ("bob@example.com", "bob+practice@example.com"),
        ("bob.smith@gmail.com", "b.o.b.s.m.i.t.h+2@googlemail.com"),
    ],
)
def test_one_grant_per_mailbox(client, db, mandatory, first, second):
    signup(client, first)
    client.post(confirm_link(first))
    client.post("/accounts/logout/")
    signup(client, second)
    if User.objects.count() == 2:
        client.post(confirm_link(second))
        assert balance(second) == 0
        assert WelcomeGrant.objects.get(user__email__iexact=second).tokens == 0
    assert balance(first) == 10
    assert LedgerEntry.objects.filter(kind="grant").count() == 1


def test_dots_count_only_where_the_provider_ignores_them(client, db, mandatory):
    for email in ("bob.smith@example.com", "bobsmith@example.com"):
        signup(client, email)
        client.post(confirm_link(email))
        client.post("/accounts/logout/")
        assert balance(email) == 10


def test_changing_the_email_never_grants_again(client, db, mandatory):
    signup(client, "carol@example.com")
    client.post(confirm_link("carol@example.com"))
    assert balance("carol@example.com") == 10
    response = client.post(
        reverse("account_email"), {"action_add": "", "email": "carol@elsewhere.example"}
    )
    assert response.status_code == 302
    client.post(confirm_link("carol@elsewhere.example"))
    user = User.objects.get()
    assert user.email == "carol@elsewhere.example"
    assert user.token_account.balance == 10
    assert WelcomeGrant.objects.count() == 1


def test_an_unverified_candidate_can_browse_and_is_told_to_verify(client, db, settings):
    """`optional`: logged in at once, the paid action answers 402 "verify your email"."""
    settings.ACCOUNT_EMAIL_VERIFICATION = "optional"
    settings.WELCOME_TOKENS = 10
    assert signup(client, "dan@example.com")["Location"] == reverse("interviews:dashboard")
    assert client.get(reverse("interviews:dashboard")).status_code == 200
    profile = client.get(reverse("accounts:profile")).content.decode()
    assert "Verify your email address to receive your welcome tokens" in profile
    session = InterviewSession.objects.create(
        user=User.objects.get(), topic=Topic.objects.order_by("pk").first(), difficulty="medium"
    )
    response = client.post(
        reverse("interviews:question_next", args=[session.pk]),
        {"request_id": "a" * 32},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 402
    body = response.content.decode()
    assert "Verify your email address to receive your welcome tokens" in body
    assert "not charged" in body
    assert not LedgerEntry.objects.exists()
    client.post(confirm_link("dan@example.com"))
    assert balance("dan@example.com") == 10


@pytest.mark.django_db(transaction=True)
def test_two_accounts_on_one_mailbox_verifying_at_once_get_one_grant(settings):
    from accounts.services import user_signup, welcome_grant_create

    settings.WELCOME_TOKENS = 10
    emails = [f"eve+{n}@example.com" for n in range(6)]
    users = [user_signup(email=e, password=PASSWORD, email_verified=False) for e in emails]
    results = run_concurrently(
        lambda n: welcome_grant_create(user=users[n], email=emails[n]), len(users)
    )
    assert not [r for r in results if isinstance(r, BaseException)]
    assert sorted(r.tokens for r in results) == [0, 0, 0, 0, 0, 10]
    assert LedgerEntry.objects.filter(kind="grant").count() == 1
    assert account_problem_list() == []
