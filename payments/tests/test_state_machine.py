"""A seeded random walk over two purchases' events (paid, delivered, replayed, refunded in
steps and out of order, disputed, won or lost, the success page, questions spent), checked
against a plain Python model after every step.

Invariants: the balance is the model's and never below zero; per purchase, one grant once paid,
and granted - taken back + given back between 0 and the pack's tokens; the ledger reconciles.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from django.test import Client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from accounts.models import User
from ledger import services as ledger
from ledger.models import LedgerEntry
from ledger.selectors import account_problem_list
from payments.models import Purchase
from payments.tests.fake_stripe import FakeStripe, charge_refunded, dispute, event
from payments.tests.flow import answer, deliver, purchase_open

_users = itertools.count(1)
PACKS = ("standard", "starter")  # 60 tokens for 12.00, 20 tokens for 5.00
WELCOME = 3


@dataclass
class ModelPurchase:
    tokens: int
    amount: int
    paid_on_stripe: bool = False
    granted: bool = False
    refunded: int = 0  # the largest cumulative amount Stripe has told
    refund_owed: int = 0
    net: int = 0  # tokens of the pack the account still has (granted - taken + given back)
    dispute: str = ""
    dispute_taken: int = 0
    dispute_took: bool = False
    dispute_settled: bool = False
    shortfall: int = 0


class Model:
    def __init__(self, purchases: list[ModelPurchase]) -> None:
        self.balance = WELCOME
        self.purchases = purchases

    def take(self, p: ModelPurchase, wanted: int) -> int:
        # Only unspent tokens: never more than the balance (no question is pending between
        # steps) nor than is left of the pack.
        taken = max(0, min(wanted, self.balance, p.net))
        self.balance -= taken
        p.net -= taken
        p.shortfall += wanted - taken
        return taken

    def take_backs(self, p: ModelPurchase) -> None:
        if not p.granted:
            return
        owed = min(p.tokens, -(-p.tokens * p.refunded // p.amount))  # rounded up
        if owed > p.refund_owed:
            self.take(p, owed - p.refund_owed)
            p.refund_owed = owed
        if p.dispute in ("open", "lost") and not p.dispute_took:
            if p.net > 0:
                p.dispute_taken = self.take(p, p.net)
            p.dispute_took = True
        if p.dispute in ("won", "lost") and not p.dispute_settled:
            if p.dispute == "won":
                self.balance += p.dispute_taken
                p.net += p.dispute_taken
            p.dispute_settled = True

    def grant(self, p: ModelPurchase) -> None:
        if p.granted:
            return
        p.granted = True
        p.net = p.tokens
        self.balance += p.tokens
        self.take_backs(p)


def is_unpaid(p: ModelPurchase) -> bool:
    return not p.paid_on_stripe


def is_paid(p: ModelPurchase) -> bool:
    return p.paid_on_stripe


def is_refundable(p: ModelPurchase) -> bool:
    return p.paid_on_stripe and p.refunded < p.amount and p.dispute not in ("open", "lost")


def is_refunded(p: ModelPurchase) -> bool:
    return p.refunded > 0


def is_disputable(p: ModelPurchase) -> bool:
    # A dispute names the charge, which Mockroom learns with the payment: only then.
    return p.granted and not p.dispute and p.refunded < p.amount


def is_disputed(p: ModelPurchase) -> bool:
    return p.dispute == "open"


class PurchaseMachine(RuleBasedStateMachine):
    fake: FakeStripe  # set by the test before the walk

    def __init__(self) -> None:
        super().__init__()
        # A new candidate per run: runs never see each other's rows.
        self.user = User.objects.create_user(email=f"buyer{next(_users)}@example.com", password="x")
        self.account = ledger.account_open(user=self.user, welcome_tokens=WELCOME)
        self.user.refresh_from_db()
        self.client = Client()
        self.client.force_login(self.user)
        self.rows = [purchase_open(self.user, self.fake, pack=code) for code in PACKS]
        self.model = Model([ModelPurchase(tokens=p.tokens, amount=p.amount) for p in self.rows])
        self.sent: list[dict[str, Any]] = []
        self.spent = 0

    # --- helpers

    def send(self, payload: dict[str, Any]) -> dict[str, Any]:
        response = deliver(self.client, payload)
        assert response.status_code == 200, response.content
        self.sent.append(payload)
        return answer(response)

    def session_id(self, which: int) -> str:
        session_id = self.rows[which].checkout_session_id
        assert session_id is not None
        return session_id

    def charge(self, which: int) -> dict[str, Any]:
        return self.fake.charge_of(self.session_id(which))

    def eligible(self, can: Any) -> list[int]:
        return [i for i, p in enumerate(self.model.purchases) if can(p)]

    def pick(self, data: st.DataObject, can: Any) -> tuple[int, ModelPurchase]:
        which = data.draw(st.sampled_from(self.eligible(can)))
        return which, self.model.purchases[which]

    # --- rules

    @precondition(lambda self: self.eligible(is_unpaid))
    @rule(data=st.data())
    def pay_on_stripe(self, data: st.DataObject) -> None:
        """The candidate pays on Stripe's page (what Mockroom hears of it comes later)."""
        which, p = self.pick(data, is_unpaid)
        self.fake.pay(self.session_id(which))
        p.paid_on_stripe = True

    @precondition(lambda self: self.eligible(is_paid))
    @rule(data=st.data())
    def deliver_completed(self, data: st.DataObject) -> None:
        which, p = self.pick(data, is_paid)
        self.send(event("checkout.session.completed", self.fake.session_for(self.rows[which].pk)))
        self.model.grant(p)

    @precondition(lambda self: self.eligible(is_paid))
    @rule(data=st.data())
    def open_success_page(self, data: st.DataObject) -> None:
        which, p = self.pick(data, is_paid)
        page = self.client.get("/tokens/buy/done/", {"session_id": self.session_id(which)})
        assert page.status_code == 200
        self.model.grant(p)
        assert f"+{p.tokens} tokens".encode() in page.content

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        payload = data.draw(st.sampled_from(self.sent))
        response = deliver(self.client, payload)
        assert response.status_code == 200
        assert answer(response)["replay"] is True

    @precondition(lambda self: self.eligible(is_refundable))
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        """Stripe says the charge is refunded up to a (cumulative) amount. Disputed payments
        cannot be refunded on Stripe, so not while a dispute is open or lost."""
        which, p = self.pick(data, is_refundable)
        step = data.draw(st.sampled_from([1, p.amount // 4, p.amount // 3, p.amount]))
        total = min(p.amount, p.refunded + step)
        self.send(charge_refunded(self.charge(which), total))
        p.refunded = total
        self.model.take_backs(p)

    @precondition(lambda self: self.eligible(is_refunded))
    @rule(data=st.data())
    def refund_told_late(self, data: st.DataObject) -> None:
        """An older charge.refunded (a smaller cumulative amount) arrives after a newer one."""
        which, p = self.pick(data, is_refunded)
        older = data.draw(st.integers(min_value=1, max_value=p.refunded))
        self.send(charge_refunded(self.charge(which), older))

    @precondition(lambda self: self.eligible(is_disputable))
    @rule(data=st.data())
    def open_dispute(self, data: st.DataObject) -> None:
        which, p = self.pick(data, is_disputable)
        self.send(dispute("charge.dispute.created", self.charge(which), "needs_response"))
        p.dispute = "open"
        self.model.take_backs(p)

    @precondition(lambda self: self.eligible(is_disputed))
    @rule(data=st.data(), won=st.booleans())
    def close_dispute(self, data: st.DataObject, won: bool) -> None:
        which, p = self.pick(data, is_disputed)
        self.send(dispute("charge.dispute.closed", self.charge(which), "won" if won else "lost"))
        p.dispute = "won" if won else "lost"
        self.model.take_backs(p)

    @precondition(lambda self: self.model.balance >= 1)
    @rule()
    def spend_a_token(self) -> None:
        self.spent += 1
        hold = ledger.hold_reserve(
            account=self.account, request_id=f"q{self.spent}", purpose="question", actor=None
        ).hold
        ledger.hold_capture(hold=hold, reason="A question")
        self.model.balance -= 1

    # --- invariants

    @invariant()
    def balance_is_the_models_and_never_negative(self) -> None:
        self.account.refresh_from_db()
        assert self.account.balance == self.model.balance
        assert self.account.balance >= 0
        assert self.account.held == 0

    @invariant()
    def each_purchase_is_the_models(self) -> None:
        for row, p in zip(self.rows, self.model.purchases, strict=True):
            row.refresh_from_db()
            granted, net = ledger.purchase_totals(purchase=row.pk)
            grants = LedgerEntry.objects.filter(purchase=row.pk, kind=LedgerEntry.Kind.PURCHASE)
            assert grants.count() == (1 if p.granted else 0)
            assert (granted, net) == (p.tokens if p.granted else 0, p.net)
            assert 0 <= net <= row.tokens
            assert (row.status == Purchase.Status.PAID) == p.granted
            assert row.amount_refunded == p.refunded
            assert row.shortfall == p.shortfall
            assert row.dispute_status == p.dispute
            assert row.dispute_tokens_taken == p.dispute_taken

    @invariant()
    def the_ledger_reconciles(self) -> None:
        assert account_problem_list(account_ids=[self.account.pk]) == []


def test_purchase_events_keep_the_ledger_equal_to_a_model(db, fake_stripe):
    PurchaseMachine.fake = fake_stripe
    PurchaseMachine.TestCase.settings = settings(
        max_examples=20,
        stateful_step_count=20,
        deadline=None,
        derandomize=True,  # seeded: the same walks every run
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    PurchaseMachine.TestCase().runTest()
