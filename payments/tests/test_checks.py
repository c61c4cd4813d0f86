"""The payments settings are checked before a server starts, and the periodic re-check grants
purchases whose webhook never came and alerts staff, once, about those still not granted."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.checks import run_checks
from django.core.management.base import SystemCheckError
from django.utils import timezone

from config.checks import checks_enforce
from ledger import services as ledger
from payments.models import PaymentEvent, Purchase
from payments.tasks import purchases_check
from payments.tests.fake_stripe import event
from payments.tests.flow import balance, deliver, entries, purchase_open

Status = Purchase.Status


def check_ids(**kwargs) -> set[str]:
    return {message.id for message in run_checks(**kwargs) if message.id}


# --- system checks ---------------------------------------------------------------------------


def test_the_fake_provider_with_debug_off_is_an_error_that_stops_the_server(settings):
    settings.DEBUG = False
    settings.PAYMENTS_PROVIDER = "fake"
    assert "payments.E001" in check_ids()
    with pytest.raises(SystemCheckError, match=r"payments\.E001"):
        checks_enforce()


def test_the_fake_provider_with_debug_on_is_allowed(settings):
    settings.DEBUG = True
    settings.PAYMENTS_PROVIDER = "fake"
    assert "payments.E001" not in check_ids(tags=["payments"])


def test_stripe_without_a_secret_key_is_an_error(settings):
    settings.PAYMENTS_PROVIDER = "stripe"
    settings.STRIPE_SECRET_KEY = ""
    assert "payments.E002" in check_ids(tags=["payments"])


@pytest.mark.parametrize(
    "packs",
    [
        [],
        {"code": "one"},
        [{"code": "Big Pack", "tokens": 10, "amount": 500}],
        [{"code": "p", "tokens": 0, "amount": 500}],
        [{"code": "p", "tokens": 10, "amount": 10}],  # below Stripe's smallest charge
        [{"code": "p", "tokens": 10, "amount": 500, "currency": "dollars"}],
        [{"code": "p", "tokens": 10, "amount": 500, "price": 5}],
        [{"code": "p", "tokens": 10, "amount": 500}, {"code": "p", "tokens": 20, "amount": 900}],
        [{"code": "p", "tokens": True, "amount": 500}],
    ],
)
def test_token_packs_that_do_not_describe_packs_are_an_error(settings, packs):
    settings.TOKEN_PACKS = packs
    assert "payments.E003" in check_ids(tags=["payments"])


def test_valid_token_packs_pass(settings):
    settings.TOKEN_PACKS = [{"code": "solo", "tokens": 5, "amount": 200, "currency": "EUR"}]
    assert "payments.E003" not in check_ids(tags=["payments"])


def environment(**changes: str) -> dict[str, str]:
    """This process's environment (its DATABASE_URL) without any payments setting, changed."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STRIPE_", "PAYMENTS_", "TOKEN_PACKS", "DEBUG"))
    }
    env.update(SECRET_KEY="x" * 60, ALLOWED_HOSTS="127.0.0.1", **changes)
    return env


def run(code: list[str], **changes: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *code],
        cwd=django_settings.BASE_DIR,
        env=environment(**changes),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("entry_point", ["config.asgi", "config.wsgi"])
def test_a_server_with_debug_off_and_the_fake_provider_does_not_start(entry_point):
    refused = run(["-c", f"import {entry_point}"], DEBUG="0", PAYMENTS_PROVIDER="fake")
    assert refused.returncode != 0
    assert "payments.E001" in refused.stderr
    # The same server without the fake provider starts: E001 is what stopped it.
    started = run(["-c", f"import {entry_point}; print('started')"], DEBUG="0")
    assert started.returncode == 0, started.stderr
    assert "started" in started.stdout


def test_check_deploy_fails_for_stripe_without_a_webhook_secret():
    missing = run(["manage.py", "check", "--deploy"], DEBUG="0", STRIPE_SECRET_KEY="sk_test_x")
    assert missing.returncode != 0
    assert "payments.E004" in missing.stderr
    configured = run(
        ["manage.py", "check", "--deploy"],
        DEBUG="0",
        STRIPE_SECRET_KEY="sk_test_x",
        STRIPE_WEBHOOK_SECRET="whsec_x",
    )
    assert "payments.E004" not in configured.stderr + configured.stdout


# --- the periodic re-check ---------------------------------------------------------------------


def age(purchase: Purchase, minutes: int) -> None:
    """The purchase was created (and last changed) `minutes` ago."""
    then = timezone.now() - timedelta(minutes=minutes)
    Purchase.objects.filter(pk=purchase.pk).update(created_at=then, updated_at=then)


@pytest.mark.django_db
def test_an_open_purchase_that_stripe_says_is_paid_is_granted(make_user, fake_stripe):
    user = make_user(tokens=0)
    purchase = purchase_open(user, fake_stripe)
    recent = purchase_open(user, fake_stripe, pack="starter")
    fake_stripe.pay(purchase.checkout_session_id)
    fake_stripe.pay(recent.checkout_session_id)
    age(purchase, 6)

    assert purchases_check.call() == 0

    purchase.refresh_from_db()
    assert purchase.status == Status.PAID
    assert entries(purchase) == [("purchase", 60)]
    # A purchase younger than the re-check delay is left to its webhook.
    recent.refresh_from_db()
    assert recent.status == Status.OPEN
    assert balance(user) == 60
    assert purchases_check.call() == 0
    assert balance(user) == 60


@pytest.mark.django_db
def test_an_open_purchase_stripe_cannot_be_asked_about_is_left_open(make_user, fake_stripe):
    user = make_user(tokens=0)
    purchase = purchase_open(user, fake_stripe)
    age(purchase, 6)
    fake_stripe.fail_next(5, status=500)
    assert purchases_check.call() == 0
    purchase.refresh_from_db()
    assert purchase.status == Status.OPEN


@pytest.mark.django_db
def test_a_paid_purchase_in_review_alerts_staff_once(
    client, make_user, staff_user, fake_stripe, mailoutbox
):
    user = make_user(tokens=0)
    purchase = purchase_open(user, fake_stripe)
    session = fake_stripe.pay(purchase.checkout_session_id)
    deliver(client, event("checkout.session.completed", session | {"amount_total": 99}))
    purchase.refresh_from_db()
    assert purchase.status == Status.REVIEW

    assert purchases_check.call() == 0  # not yet: 15 minutes first
    assert mailoutbox == []

    age(purchase, 16)
    assert purchases_check.call() == 1
    [mail] = mailoutbox
    assert mail.to == [staff_user.email]
    assert "1 paid purchase(s) not granted after 15 minutes" in mail.subject
    assert str(purchase.pk) in mail.body
    assert "amount 99 (sold for 1200)" in mail.body

    assert purchases_check.call() == 0
    assert len(mailoutbox) == 1
    assert balance(user) == 0


@pytest.mark.django_db
def test_a_paid_purchase_whose_event_keeps_failing_alerts_staff_once(
    client, make_user, staff_user, fake_stripe, mailoutbox, monkeypatch
):
    """The grant fails for the webhook and for the re-check alike (a bug, a broken database
    row): the re-check goes on to the other purchases and staff are told, once."""
    user = make_user(tokens=0)
    broken = purchase_open(user, fake_stripe)
    fine = purchase_open(user, fake_stripe, pack="starter")
    session = fake_stripe.pay(broken.checkout_session_id)
    fake_stripe.pay(fine.checkout_session_id)
    real_grant = ledger.purchase_grant

    def grant(**kwargs):
        if kwargs["purchase"] == broken.pk:
            raise RuntimeError("this purchase cannot be granted")
        return real_grant(**kwargs)

    monkeypatch.setattr(ledger, "purchase_grant", grant)
    payload = event("checkout.session.completed", session)
    assert deliver(client, payload).status_code == 500
    age(broken, 16)
    age(fine, 16)
    PaymentEvent.objects.filter(pk=payload["id"]).update(
        received_at=timezone.now() - timedelta(minutes=16)
    )

    assert purchases_check.call() == 1
    fine.refresh_from_db()
    assert fine.status == Status.PAID  # re-checked and granted, despite the broken one
    assert balance(user) == 20
    [mail] = mailoutbox
    assert str(broken.pk) in mail.body
    assert payload["id"] in mail.body
    assert "this purchase cannot be granted" in mail.body

    assert purchases_check.call() == 0
    assert len(mailoutbox) == 1


@pytest.mark.django_db
def test_without_a_provider_the_re_check_does_nothing(settings, make_user, mailoutbox):
    settings.PAYMENTS_PROVIDER = "none"
    assert purchases_check.call() == 0
    assert mailoutbox == []
