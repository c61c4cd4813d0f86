"""Password reset and change, account deletion, and the limits that stop brute force."""

import re

import pytest
from django.core import mail
from django.urls import reverse

from accounts.models import User, WelcomeGrant
from interviews.models import InterviewSession, Topic
from interviews.services import question_next
from ledger.models import LedgerEntry, TokenAccount
from ledger.selectors import account_problem_list

PASSWORD = "correct horse 9"
LOGIN = "/accounts/login/"


def test_password_reset_by_email(client, make_user):
    make_user(email="ada@example.com", password=PASSWORD)
    response = client.post("/accounts/password/reset/", {"email": "ADA@example.com"})
    assert response.status_code == 302
    [message] = mail.outbox
    link = re.search(r"https?://[^/\s]+(/accounts/password/reset/key/[^\s]+/)", message.body)[1]
    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200
    action = form_page.redirect_chain[-1][0] if form_page.redirect_chain else link
    new = {"password1": "Brand-New-Lantern-7", "password2": "Brand-New-Lantern-7"}
    assert client.post(action, new).status_code == 302
    assert User.objects.get().check_password("Brand-New-Lantern-7")
    # An unknown address gets the same answer (nobody learns who has an account).
    assert client.post("/accounts/password/reset/", {"email": "x@example.com"}).status_code == 302


def test_password_change_needs_the_current_password(client, make_user):
    user = make_user(email="ada@example.com", password=PASSWORD)
    client.force_login(user)
    url = reverse("account_change_password")
    wrong = {
        "oldpassword": "nope",
        "password1": "Brand-New-Lantern-7",
        "password2": "Brand-New-Lantern-7",
    }
    assert client.post(url, wrong).status_code == 200
    assert User.objects.get().check_password(PASSWORD)
    right = {**wrong, "oldpassword": PASSWORD}
    assert client.post(url, right).status_code == 302
    assert User.objects.get().check_password("Brand-New-Lantern-7")


def test_deleting_the_account_keeps_the_ledger_and_the_mailbox_spent(client, make_user, settings):
    user = make_user(email="leaving@example.com", password=PASSWORD, tokens=3)
    session = InterviewSession.objects.create(
        user=user, topic=Topic.objects.order_by("pk").first(), difficulty="medium"
    )
    question_next(session=session, request_id="bought-one")
    client.force_login(user)
    assert client.get(reverse("accounts:delete")).status_code == 200
    refused = client.post(reverse("accounts:delete"), {"password": "nope", "confirm": "DELETE"})
    assert refused.status_code == 400
    assert "not your password" in refused.content.decode()
    refused = client.post(reverse("accounts:delete"), {"password": PASSWORD, "confirm": "yes"})
    assert refused.status_code == 400
    assert User.objects.filter(pk=user.pk).exists()

    done = client.post(reverse("accounts:delete"), {"password": PASSWORD, "confirm": "DELETE"})
    assert done.status_code == 302
    assert not User.objects.filter(pk=user.pk).exists()
    assert not InterviewSession.objects.exists()
    account = TokenAccount.objects.get()
    assert (account.user, account.email, account.balance) == (None, "leaving@example.com", 2)
    labels = set(LedgerEntry.objects.values_list("actor_label", flat=True))
    assert labels == {"leaving@example.com"}
    assert account_problem_list() == []
    assert client.get(reverse("interviews:dashboard")).status_code == 302  # logged out

    # The same mailbox signing up again gets no second welcome grant.
    settings.WELCOME_TOKENS = 10
    again = {"email": "Leaving+again@example.com", "password1": "Quiet-Harbor-42"}
    client.post("/accounts/signup/", {**again, "password2": "Quiet-Harbor-42"})
    assert User.objects.get().token_account.balance == 0
    assert WelcomeGrant.objects.filter(user=None, tokens=3).exists()


@pytest.mark.parametrize("path", [LOGIN, "/admin/login/"])
def test_wrong_passwords_are_refused_long_before_the_thirtieth(client, make_user, settings, path):
    settings.RATE_LIMITS_ENABLED = True
    settings.ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
    make_user(email="ada@example.com", password=PASSWORD)
    login = client.get(path, follow=True).redirect_chain[-1][0] if path != LOGIN else LOGIN
    assert login.startswith(LOGIN)
    statuses = [
        client.post(LOGIN, {"login": "ada@example.com", "password": f"guess {n}"}).status_code
        for n in range(6)
    ]
    assert statuses == [400] * 5 + [429]
    right = client.post(LOGIN, {"login": "ada@example.com", "password": PASSWORD})
    assert right.status_code == 429  # even the right password waits out the window
    assert int(right["Retry-After"]) == 300
    assert "Too many failed login attempts" in right.content.decode()
    assert client.get(reverse("interviews:dashboard")).status_code == 302


def test_scripted_signups_from_one_address_are_refused_past_the_limit(client, db, settings):
    settings.RATE_LIMITS_ENABLED = True
    settings.ACCOUNT_RATE_LIMITS = {"signup": "5/m/ip,30/h/ip"}
    statuses = []
    for n in range(8):
        client.post("/accounts/logout/")
        data = {"email": f"farm{n}@example.com", "password1": "Quiet-Harbor-42"}
        statuses.append(client.post("/accounts/signup/", {**data, "password2": "Quiet-Harbor-42"}))
    assert [r.status_code for r in statuses] == [302] * 5 + [429] * 3
    refused = statuses[-1]
    assert refused["Retry-After"] == "3600"  # the longest window of the signup limit
    assert (
        "not charged" in refused.content.decode().lower()
        or "nothing" in refused.content.decode().lower()
    )
    assert User.objects.count() == 5


def test_rate_limits_off_for_load_tests(client, db, settings):
    settings.ACCOUNT_RATE_LIMITS = False
    for n in range(8):
        client.post("/accounts/logout/")
        data = {"email": f"load{n}@example.com", "password1": "Quiet-Harbor-42"}
        assert (
            client.post("/accounts/signup/", {**data, "password2": "Quiet-Harbor-42"}).status_code
            == 302
        )
