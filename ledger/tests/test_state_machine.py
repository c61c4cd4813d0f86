"""A seeded random walk over the ledger services, checked against a plain Python model.

After every step the database (balance, held, every hold's status, the entry count) equals the
model, and account_problem_list() finds nothing to reconcile.
"""

import itertools
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from accounts.models import User
from ledger import services
from ledger.exceptions import (
    HoldExpired,
    HoldNotPending,
    InsufficientTokens,
    NotRefundable,
    RequestAlreadyFailed,
    RequestConflict,
    RequestInProgress,
)
from ledger.models import Hold, LedgerEntry
from ledger.selectors import account_problem_list

_users = itertools.count(1)
Source = LedgerEntry.Source
REQUEST_IDS = st.sampled_from(["a", "b", "c", "d", "e", "f"])
PURPOSES = st.sampled_from(["question:one", "question:two"])


@dataclass
class ModelHold:
    purpose: str
    status: str = "pending"
    due: bool = False  # past its expiry, not yet swept


@dataclass
class Model:
    balance: int = 0
    held: int = 0
    entries: int = 0
    holds: dict[str, ModelHold] = field(default_factory=dict)
    refunded: set[int] = field(default_factory=set)

    def expire_due(self) -> None:
        for hold in self.holds.values():
            if hold.status == "pending" and hold.due:
                hold.status = "expired"
                self.held -= 1
                self.entries += 1


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # A new account per run: runs never see each other's rows.
        user = User.objects.create_user(email=f"walk{next(_users)}@example.com", password="x")
        self.account = services.account_open(user=user, welcome_tokens=0)
        self.model = Model()
        self.debits: list[LedgerEntry] = []

    def hold(self, request_id: str) -> Hold:
        return Hold.objects.get(account=self.account, request_id=request_id)

    @rule(amount=st.integers(min_value=1, max_value=3))
    def grant(self, amount: int) -> None:
        services.account_grant(
            account=self.account, amount=amount, actor=None, source=Source.SYSTEM, reason="walk"
        )
        self.model.balance += amount
        self.model.entries += 1

    @rule(request_id=REQUEST_IDS, purpose=PURPOSES)
    def reserve(self, request_id: str, purpose: str) -> None:
        """Also the replay rule: ids repeat, so the same id comes back in every state."""
        model = self.model
        existing = model.holds.get(request_id)
        expected: type[Exception] | str | None  # the exception the service raises, or "new"
        if existing is not None:
            if existing.purpose != purpose:
                expected = RequestConflict
            else:
                if existing.status == "pending" and existing.due:
                    model.expire_due()  # the retry of a dead worker's attempt frees it at once
                expected = {
                    "pending": RequestInProgress,
                    "captured": None,
                    "released": RequestAlreadyFailed,
                    "expired": RequestAlreadyFailed,
                }[existing.status]
        elif model.balance - model.held < 1:
            model.expire_due()  # expired holds are freed when they hold the tokens needed
            expected = InsufficientTokens if model.balance - model.held < 1 else "new"
        else:
            expected = "new"
        try:
            reservation = services.hold_reserve(
                account=self.account, request_id=request_id, purpose=purpose, actor=None
            )
        except (
            RequestConflict,
            RequestInProgress,
            RequestAlreadyFailed,
            InsufficientTokens,
        ) as exc:
            assert type(exc) is expected, (exc, expected)
            return
        if expected is None:
            assert reservation.replay
        else:
            assert expected == "new", expected
            assert not reservation.replay
            model.holds[request_id] = ModelHold(purpose=purpose)
            model.held += 1
            model.entries += 1

    def pending(self) -> list[str]:
        return sorted(k for k, h in self.model.holds.items() if h.status == "pending")

    @rule(data=st.data())
    def capture(self, data) -> None:
        request_id = data.draw(REQUEST_IDS)
        model_hold = self.model.holds.get(request_id)
        if model_hold is None:
            return
        try:
            capture = services.hold_capture(hold=self.hold(request_id), reason="walk")
        except HoldExpired:
            assert model_hold.status == "pending"
            assert model_hold.due
            self.model.expire_due()
            return
        except HoldNotPending:
            assert model_hold.status != "pending"
            return
        assert model_hold.status == "pending"
        assert not model_hold.due
        model_hold.status = "captured"
        self.model.balance -= 1
        self.model.held -= 1
        self.model.entries += 1
        self.debits.append(capture.entry)

    @rule(request_id=REQUEST_IDS)
    def release(self, request_id: str) -> None:
        model_hold = self.model.holds.get(request_id)
        if model_hold is None:
            return
        try:
            services.hold_release(hold=self.hold(request_id), note="walk failure")
        except HoldNotPending:
            assert model_hold.status != "pending"
            return
        assert model_hold.status == "pending"
        model_hold.status = "released"
        self.model.held -= 1
        self.model.entries += 1

    @rule(request_id=REQUEST_IDS)
    def pass_expiry(self, request_id: str) -> None:
        """Time passes for one hold: it is now past its expiry (nothing is written yet)."""
        model_hold = self.model.holds.get(request_id)
        if model_hold is None or model_hold.status != "pending":
            return
        Hold.objects.filter(account=self.account, request_id=request_id).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        model_hold.due = True

    @rule()
    def sweep(self) -> None:
        services.hold_expire_due()
        self.model.expire_due()

    @rule(data=st.data())
    def refund(self, data) -> None:
        if not self.debits:
            return
        debit = data.draw(st.sampled_from(self.debits))
        try:
            services.account_refund(entry=debit, actor=None, source=Source.SYSTEM, reason="walk")
        except NotRefundable:
            assert debit.pk in self.model.refunded
            return
        assert debit.pk not in self.model.refunded
        self.model.refunded.add(debit.pk)
        self.model.balance += 1
        self.model.entries += 1

    @invariant()
    def database_equals_model(self) -> None:
        self.account.refresh_from_db()
        model = self.model
        assert (self.account.balance, self.account.held) == (model.balance, model.held)
        assert self.account.balance >= self.account.held >= 0
        assert self.account.entries.count() == model.entries == self.account.version
        statuses = dict(self.account.holds.values_list("request_id", "status"))
        assert statuses == {k: h.status for k, h in model.holds.items()}
        assert account_problem_list(account_ids=[self.account.pk]) == []


def test_ledger_matches_a_plain_model(db):
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=25,
            deadline=None,
            derandomize=True,  # seeded: the same walks every run
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
