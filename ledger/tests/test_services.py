from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.utils import timezone

from ledger import services
from ledger.exceptions import (
    HoldExpired,
    HoldNotPending,
    InsufficientTokens,
    InvalidAmount,
    NotRefundable,
    ReasonRequired,
    RequestAlreadyFailed,
    RequestConflict,
    RequestInProgress,
)
from ledger.models import Hold, LedgerEntry
from ledger.selectors import account_problem_list
from ledger.tests.flow import buy

Kind = LedgerEntry.Kind
Source = LedgerEntry.Source


def kinds(account) -> list[str]:
    return list(account.entries.order_by("version").values_list("kind", flat=True))


def reserve(account, request_id="r1", purpose="question:test"):
    return services.hold_reserve(
        account=account, request_id=request_id, purpose=purpose, actor=None
    )


def test_signup_opens_account_with_welcome_grant(make_user):
    user = make_user(tokens=7)
    account = user.token_account
    assert (account.balance, account.held, account.version) == (7, 0, 1)
    entry = account.entries.get()
    assert (entry.kind, entry.balance_delta, entry.balance_after, entry.source) == (
        Kind.GRANT,
        7,
        7,
        Source.SIGNUP,
    )
    assert entry.actor == user


def test_grant_writes_entry_with_actor_source_and_reason(make_user, staff_user):
    account = make_user(tokens=1).token_account
    entry = services.account_grant(
        account=account, amount=5, actor=staff_user, source=Source.ADMIN, reason="Goodwill"
    )
    account.refresh_from_db()
    assert account.balance == 6
    assert (entry.version, entry.balance_after, entry.actor_label, entry.reason) == (
        2,
        6,
        "staff@example.com",
        "Goodwill",
    )


@pytest.mark.parametrize("amount", [0, -3, 1.5, "2", True, None, 1_000_001])
def test_grant_refuses_bad_amounts_and_writes_nothing(make_user, amount):
    account = make_user(tokens=1).token_account
    with pytest.raises(InvalidAmount):
        services.account_grant(
            account=account, amount=amount, actor=None, source=Source.COMMAND, reason="x"
        )
    assert account.entries.count() == 1


def test_grant_requires_a_reason(make_user):
    account = make_user(tokens=1).token_account
    with pytest.raises(ReasonRequired):
        services.account_grant(
            account=account, amount=1, actor=None, source=Source.COMMAND, reason="  "
        )
    assert account.entries.count() == 1


def test_reserve_capture_charges_one_token(make_user):
    account = make_user(tokens=3).token_account
    reservation = reserve(account)
    account.refresh_from_db()
    assert (account.balance, account.held) == (3, 1)
    capture = services.hold_capture(hold=reservation.hold, reason="Question")
    account.refresh_from_db()
    assert (account.balance, account.held) == (2, 0)
    assert (capture.entry.kind, capture.entry.balance_delta, capture.entry.balance_after) == (
        Kind.DEBIT,
        -1,
        2,
    )
    assert capture.entry.balance_before == 3
    assert kinds(account) == [Kind.GRANT, Kind.HOLD, Kind.DEBIT]
    assert Hold.objects.get().status == Hold.Status.CAPTURED


def stored_fields(instance) -> dict:
    """Every column of `instance` as the database holds it, and as the instance says."""
    fresh = type(instance).objects.get(pk=instance.pk)
    names = [field.attname for field in type(instance)._meta.concrete_fields]
    return {
        "stored": {name: getattr(fresh, name) for name in names},
        "returned": {name: getattr(instance, name) for name in names},
    }


@pytest.mark.parametrize("written_out", [True, False], ids=["statements", "orm"])
def test_a_purchase_writes_what_it_returns_with_its_statements_or_the_orm(
    make_user, monkeypatch, written_out
):
    """The purchase's statements written out for PostgreSQL (ledger.services) and the ORM
    (other databases) write the same rows, and return them as stored."""
    monkeypatch.setattr(services, "_fast", lambda: written_out)
    user = make_user(tokens=2)
    account = user.token_account
    reservation = services.hold_reserve(
        account=account, request_id="r1", purpose="question:1", actor=user
    )
    hold_entry = account.entries.get(kind=Kind.HOLD)
    assert (hold_entry.hold_id, hold_entry.held_delta, hold_entry.actor_label) == (
        reservation.hold.pk,
        1,
        user.email,
    )
    capture = services.hold_capture(hold=reservation.hold, reason="Question", actor=user)
    for instance in (reservation.hold, capture.entry):
        fields = stored_fields(instance)
        assert fields["stored"] == fields["returned"]
        assert not instance._state.adding
    account.refresh_from_db()
    assert (account.balance, account.held, account.version) == (1, 0, 3)
    # A request id seen before inserts nothing: the same again replays, another purpose
    # conflicts, and with no token left a new one is refused.
    again = services.hold_reserve(
        account=account, request_id="r1", purpose="question:1", actor=user
    )
    assert (again.replay, again.hold.pk) == (True, reservation.hold.pk)
    with pytest.raises(RequestConflict):
        services.hold_reserve(account=account, request_id="r1", purpose="question:2", actor=user)
    services.hold_capture(hold=reserve(account, "r2").hold, reason="Question")
    with pytest.raises(InsufficientTokens):
        reserve(account, "r3")
    assert Hold.objects.count() == 2
    assert account_problem_list() == []


def test_capture_stores_the_record_in_the_same_transaction(make_user):
    account = make_user(tokens=1).token_account
    hold = reserve(account).hold
    capture = services.hold_capture(
        hold=hold, reason="Question", record=lambda h, e: (h.pk, e.kind)
    )
    assert capture.record == (hold.pk, Kind.DEBIT)


def test_a_failing_record_charges_nothing_and_leaves_the_hold_to_release(make_user):
    account = make_user(tokens=1).token_account
    hold = reserve(account).hold

    def record(hold, entry):
        raise IntegrityError("duplicate question")

    with pytest.raises(IntegrityError):
        services.hold_capture(hold=hold, reason="Question", record=record)
    account.refresh_from_db()
    assert (account.balance, account.held) == (1, 1)
    services.hold_release(hold=hold, note="duplicate")
    account.refresh_from_db()
    assert (account.balance, account.held) == (1, 0)
    assert kinds(account) == [Kind.GRANT, Kind.HOLD, Kind.RELEASE]


def test_not_enough_tokens_is_refused_and_nothing_written(make_user):
    account = make_user(tokens=1).token_account
    reserve(account, "a")
    with pytest.raises(InsufficientTokens) as refused:
        reserve(account, "b")
    assert (refused.value.needed, refused.value.available) == (1, 0)
    assert account.holds.count() == 1


def test_zero_balance_is_refused(make_user):
    account = make_user(tokens=0).token_account
    with pytest.raises(InsufficientTokens):
        reserve(account)
    assert account.entries.count() == 0


def test_same_request_id_after_capture_replays_without_charging(make_user):
    account = make_user(tokens=5).token_account
    first = reserve(account, "same")
    services.hold_capture(hold=first.hold, reason="Question")
    again = reserve(account, "same")
    assert again.replay
    assert again.hold.pk == first.hold.pk
    account.refresh_from_db()
    assert account.balance == 4
    assert kinds(account) == [Kind.GRANT, Kind.HOLD, Kind.DEBIT]


def test_same_request_id_while_pending_is_in_progress(make_user):
    account = make_user(tokens=5).token_account
    reserve(account, "same")
    with pytest.raises(RequestInProgress):
        reserve(account, "same")
    assert account.holds.count() == 1


def test_same_request_id_with_other_parameters_is_a_conflict(make_user):
    account = make_user(tokens=5).token_account
    reserve(account, "same", purpose="question:session-a")
    with pytest.raises(RequestConflict):
        reserve(account, "same", purpose="question:session-b")


def test_same_request_id_after_a_failure_says_so_and_charges_nothing(make_user):
    account = make_user(tokens=5).token_account
    hold = reserve(account, "same").hold
    services.hold_release(hold=hold, note="LLM timeout")
    with pytest.raises(RequestAlreadyFailed):
        reserve(account, "same")
    account.refresh_from_db()
    assert (account.balance, account.held) == (5, 0)


def test_request_ids_are_per_user(make_user):
    one, two = make_user(tokens=1).token_account, make_user(tokens=1).token_account
    reserve(one, "shared-id")
    assert not reserve(two, "shared-id").replay


def test_generator_failure_releases_the_hold_and_charges_nothing(make_user):
    account = make_user(tokens=2).token_account

    def broken():
        raise TimeoutError("LLM timed out")

    with pytest.raises(TimeoutError):
        buy(account=account, request_id="x", generate=broken)
    account.refresh_from_db()
    assert (account.balance, account.held) == (2, 0)
    assert kinds(account) == [Kind.GRANT, Kind.HOLD, Kind.RELEASE]
    assert Hold.objects.get().status == Hold.Status.RELEASED


def test_a_resolved_hold_cannot_be_resolved_again(make_user):
    account = make_user(tokens=2).token_account
    hold = reserve(account).hold
    services.hold_capture(hold=hold, reason="Question")
    with pytest.raises(HoldNotPending):
        services.hold_release(hold=hold, note="late failure")
    with pytest.raises(HoldNotPending):
        services.hold_capture(hold=hold, reason="Question")
    account.refresh_from_db()
    assert (account.balance, account.held) == (1, 0)


def expire_now(hold):
    Hold.objects.filter(pk=hold.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def test_crashed_reservation_is_freed_by_the_sweeper(make_user):
    account = make_user(tokens=1).token_account
    hold = reserve(account).hold  # ... and the worker dies here
    assert services.hold_expire_due() == 0  # not yet due
    expire_now(hold)
    assert services.hold_expire_due() == 1
    account.refresh_from_db()
    assert (account.balance, account.held) == (1, 0)
    assert kinds(account) == [Kind.GRANT, Kind.HOLD, Kind.EXPIRE]
    assert services.hold_expire_due() == 0
    assert account_problem_list() == []


def test_expired_reservation_is_freed_lazily_by_the_next_reserve(make_user):
    account = make_user(tokens=1).token_account
    expire_now(reserve(account, "crashed").hold)
    assert not reserve(account, "next").replay  # would be InsufficientTokens if not freed
    assert kinds(account) == [Kind.GRANT, Kind.HOLD, Kind.EXPIRE, Kind.HOLD]


def test_late_capture_after_expiry_charges_nothing(make_user):
    account = make_user(tokens=1).token_account
    hold = reserve(account).hold
    expire_now(hold)
    with pytest.raises(HoldExpired):
        services.hold_capture(hold=hold, reason="Question")
    account.refresh_from_db()
    assert (account.balance, account.held) == (1, 0)
    assert kinds(account) == [Kind.GRANT, Kind.HOLD, Kind.EXPIRE]
    assert account_problem_list() == []


def test_late_capture_after_the_sweeper_charges_nothing(make_user):
    account = make_user(tokens=1).token_account
    hold = reserve(account).hold
    expire_now(hold)
    services.hold_expire_due()
    with pytest.raises(HoldNotPending):
        services.hold_capture(hold=hold, reason="Question")
    account.refresh_from_db()
    assert account.balance == 1


def test_capture_writes_only_the_debit(make_user):
    account = make_user(tokens=1).token_account
    hold = reserve(account).hold
    services.hold_capture(hold=hold, reason="Question")
    assert kinds(account) == [Kind.GRANT, Kind.HOLD, Kind.DEBIT]


def test_refund_names_the_debit_and_happens_once(make_user, staff_user):
    account = make_user(tokens=1).token_account
    debit = services.hold_capture(hold=reserve(account).hold, reason="Question").entry
    refund = services.account_refund(
        entry=debit, actor=staff_user, source=Source.ADMIN, reason="Bad question"
    )
    assert (refund.kind, refund.balance_delta, refund.balance_after, refund.corrects) == (
        Kind.REFUND,
        1,
        1,
        debit,
    )
    with pytest.raises(NotRefundable):
        services.account_refund(entry=debit, actor=staff_user, source=Source.ADMIN, reason="Again")
    account.refresh_from_db()
    assert account.balance == 1


def test_only_debits_are_refundable(make_user, staff_user):
    account = make_user(tokens=1).token_account
    grant = account.entries.get()
    with pytest.raises(NotRefundable):
        services.account_refund(entry=grant, actor=staff_user, source=Source.ADMIN, reason="x")
    with pytest.raises(ReasonRequired):
        services.account_refund(entry=grant, actor=staff_user, source=Source.ADMIN, reason="")


def test_adjustment_corrects_an_entry_and_never_goes_below_held(make_user, staff_user):
    account = make_user(tokens=5).token_account
    grant = account.entries.get()
    adjustment = services.account_adjust(
        corrects=grant, delta=-3, actor=staff_user, source=Source.ADMIN, reason="Granted 3 too many"
    )
    assert (adjustment.balance_after, adjustment.corrects) == (2, grant)
    reserve(account)  # held 1 of 2
    with pytest.raises(InsufficientTokens):
        services.account_adjust(
            corrects=grant, delta=-2, actor=staff_user, source=Source.ADMIN, reason="x"
        )
    with pytest.raises(InvalidAmount):
        services.account_adjust(
            corrects=grant, delta=0, actor=staff_user, source=Source.ADMIN, reason="x"
        )
    account.refresh_from_db()
    assert (account.balance, account.held) == (2, 1)
    assert account_problem_list() == []


def test_account_get_or_open_opens_an_account_without_a_grant(db):
    from accounts.models import User

    user = User.objects.create_user(email="nogrant@example.com", password="x")
    account = services.account_get_or_open(user=user)
    assert (account.balance, account.version, account.email) == (0, 0, "nogrant@example.com")
    assert services.account_get_or_open(user=user) == account


def test_the_no_transaction_guard_of_the_fake_generators_can_fail(db):
    """The generator fakes assert no transaction is open; that assertion must be able to trip."""
    from django.db import transaction

    from config.testing import assert_no_transaction_open

    assert_no_transaction_open()  # the test case's own wrapping transaction does not count
    with transaction.atomic(), pytest.raises(AssertionError, match="transaction is open"):
        assert_no_transaction_open()
