"""Two-factor authentication (TOTP, django-allauth's MFA): open to everyone, required for staff
before the admin opens (STAFF_MFA_REQUIRED), and asked for at every login, the admin's too."""

import time

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY, format_hotp_value, hotp_value
from django.urls import reverse

from accounts.services import user_signup

PASSWORD = "staff password 9"
LOGIN = "/accounts/login/"


def code(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


@pytest.fixture
def staff(db, settings):
    settings.STAFF_MFA_REQUIRED = True
    user = user_signup(email="staff@example.com", password=PASSWORD)
    user.is_staff = user.is_superuser = True
    user.save()
    return user


def activate_totp(client, password: str) -> str:
    # Turning two-factor on asks for the password again first.
    page = client.get(reverse("mfa_activate_totp"))
    assert page.status_code == 302
    assert page["Location"].startswith(reverse("account_reauthenticate"))
    assert client.post(page["Location"], {"password": password}).status_code == 302
    page = client.get(reverse("mfa_activate_totp"))
    assert page.status_code == 200
    secret = client.session[SECRET_SESSION_KEY]
    assert secret in page.content.decode()  # shown for apps that cannot scan the QR code
    assert client.post(reverse("mfa_activate_totp"), {"code": "000000"}).status_code == 200
    response = client.post(reverse("mfa_activate_totp"), {"code": code(secret)})
    assert response.status_code == 302
    return secret


def test_staff_cannot_open_the_admin_until_two_factor_is_on(client, staff):
    response = client.post(LOGIN, {"login": "staff@example.com", "password": PASSWORD})
    assert response["Location"] == reverse("mfa_activate_totp")
    admin = client.get("/admin/")
    assert admin.status_code == 302
    assert admin["Location"] == reverse("mfa_activate_totp")
    assert client.get("/admin/ledger/ledgerentry/").status_code == 302
    activate_totp(client, PASSWORD)
    assert client.get("/admin/").status_code == 200


def log_in(client, email: str, password: str):
    response = client.post(LOGIN, {"login": email, "password": password})
    assert response.status_code == 302
    return response


def test_the_admin_login_is_the_site_login_with_its_second_factor(client, staff):
    log_in(client, "staff@example.com", PASSWORD)
    secret = activate_totp(client, PASSWORD)
    client.post("/accounts/logout/")

    # /admin/login/ sends to the site's login, which asks for the code after the password.
    admin_login = client.get("/admin/login/?next=/admin/")
    assert admin_login.status_code == 302
    assert admin_login["Location"].startswith(LOGIN)
    step = client.post(
        LOGIN, {"login": "staff@example.com", "password": PASSWORD, "next": "/admin/"}
    )
    assert step["Location"] == reverse("mfa_authenticate")
    assert client.get("/admin/").status_code == 302  # not logged in yet
    assert client.post(reverse("mfa_authenticate"), {"code": "123456"}).status_code == 200
    done = client.post(reverse("mfa_authenticate"), {"code": code(secret)})
    assert done.status_code == 302
    assert client.get("/admin/").status_code == 200
    # The Django admin's own login form is never shown: no way around the second factor.
    again = client.post("/admin/login/", {"username": "staff@example.com", "password": PASSWORD})
    assert again["Location"] == reverse("admin:index")


def test_the_admin_login_form_never_logs_anyone_in(client, staff):
    credentials = {"username": "staff@example.com", "password": PASSWORD}
    response = client.post("/admin/login/?next=/admin/", credentials)
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)
    assert client.get("/admin/").status_code == 302


def test_candidates_can_turn_two_factor_on(client, make_user, settings):
    user = make_user(email="ada@example.com", password="correct horse 9")
    log_in(client, "ada@example.com", "correct horse 9")
    assert "Two-factor" in client.get(reverse("accounts:profile")).content.decode()
    activate_totp(client, "correct horse 9")
    assert Authenticator.objects.filter(user=user, type="totp").exists()
    client.post("/accounts/logout/")
    step = client.post(LOGIN, {"login": "ada@example.com", "password": "correct horse 9"})
    assert step["Location"] == reverse("mfa_authenticate")


def test_without_the_requirement_staff_open_the_admin(client, staff, settings):
    settings.STAFF_MFA_REQUIRED = False
    client.force_login(staff)
    assert client.get("/admin/").status_code == 200
