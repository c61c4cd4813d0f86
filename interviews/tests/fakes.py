"""Question sources for tests: the real flow, with a generator we control."""

import threading

from asgiref.sync import sync_to_async

from config.testing import assert_no_transaction_open
from interviews.exceptions import GenerationFailed
from interviews.generation import BankSource, Proposal
from interviews.spec import QuestionSpec


class ScriptedSource:
    """Proposes from a script of outcomes: a text, an Exception to raise, or a Proposal."""

    name = "scripted"
    calls_model = False  # the in-flight limit is tested against the real model client

    def __init__(self, *outcomes, default=None) -> None:
        self.outcomes = list(outcomes)
        self.default = default
        self.calls = 0
        self.lock = threading.Lock()

    async def propose(self, *, session, pool) -> Proposal:
        # In the thread of the flow's database steps: that is where a transaction could be open.
        return await sync_to_async(self._next)(session=session)

    def _next(self, *, session) -> Proposal:
        assert_no_transaction_open()
        with self.lock:
            self.calls += 1
            outcome = self.outcomes.pop(0) if self.outcomes else self.default
        if outcome is None:
            outcome = f"Generated question number {self.calls} about {session.topic.name}?"
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, Proposal):
            return outcome
        # Made as a real source makes it: an invalid question raises OffSchema here.
        spec = QuestionSpec.parse(
            {
                "text": outcome,
                "key_points": ["first point", "second point", "third point"],
                "outline": "An outline.",
                "difficulty": session.difficulty,
            }
        )
        return Proposal(spec=spec, source="openai", model="fake-model")


class CountingBankSource(BankSource):
    """The real bank source, counting calls and checking no transaction is open."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.threads: set[int] = set()  # which requests (one thread each) ever proposed
        self.lock = threading.Lock()

    def pick(self, *, session, pool) -> Proposal:
        # The bank's pick runs in the thread of the flow's database steps (the request's thread).
        assert_no_transaction_open()
        with self.lock:
            self.calls += 1
            self.threads.add(threading.get_ident())
        return super().pick(session=session, pool=pool)


def failing(reason: str = "timeout") -> GenerationFailed:
    return GenerationFailed(reason, "the fake generator failed")
