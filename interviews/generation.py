"""Where a question comes from: the built-in bank, or an LLM. No database transaction is open here.

A source proposes a `Proposal`: a `QuestionSpec` (interviews.spec, the one check of a question's
shape) and where it comes from. The question flow (interviews.services) checks that it is not a
repeat and, if so, pays for it and stores it. A source that cannot propose raises
GenerationFailed with a `Reason` (OffSchema when what it got is not a valid question).
`propose` is a coroutine: the LLM source waits on the model without holding a thread or a
database connection; the bank source reads the database in a short synchronous step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from asgiref.sync import sync_to_async
from django.conf import settings

from interviews.coding.spec import CodeQuestionSpec
from interviews.exceptions import GenerationFailed, Reason
from interviews.models import Answer, Question, ServedQuestion
from interviews.spec import QuestionSpec

if TYPE_CHECKING:
    from interviews.models import InterviewSession
    from interviews.selectors import PoolState


@dataclass(frozen=True)
class Proposal:
    spec: QuestionSpec
    source: str  # a Question.Source
    model: str = ""
    question: Question | None = None  # an existing pool question (the bank)
    pool_reset: bool = False  # serving it starts a new pass through the pool
    # A coding problem: what runs and grades it (interviews.coding.spec), its reference already
    # proven against its tests in the sandbox.
    problem: dict[str, Any] | None = None

    def question_fields(self) -> dict[str, Any]:
        """A Question's wording and origin, as this proposal has them."""
        fields: dict[str, Any] = {
            "text": self.spec.text,
            "key_points": list(self.spec.key_points),
            "outline": self.spec.outline,
            "difficulty": self.spec.difficulty,
            "source": self.source,
            "model": self.model,
        }
        if self.problem is not None:
            fields |= {"kind": Question.Kind.CODE, "problem": self.problem}
        return fields


def _stored_proposal(question: Question, *, pool_reset: bool = False) -> Proposal:
    """A question already in the database, proposed as it is: it still passes the contract
    (OffSchema if a row edited outside the admin does not)."""
    contract = CodeQuestionSpec if question.is_code else QuestionSpec
    spec = contract.parse(
        {
            "text": question.text,
            "key_points": question.key_points,
            "outline": question.outline,
            "difficulty": question.difficulty,
        }
    )
    return Proposal(
        spec=spec,
        source=question.source,
        model=question.model,
        question=question,
        pool_reset=pool_reset,
        problem=question.problem if question.is_code else None,
    )


class QuestionSource(Protocol):
    name: str
    calls_model: bool  # each proposal is a model call (counted by the in-flight limit)

    async def propose(self, *, session: InterviewSession, pool: PoolState) -> Proposal: ...


class BankSource:
    """Picks a question the candidate has not seen in this pass, at the session's difficulty
    when one is left; when the whole pool is seen, the pool recycles.

    The pick is one indexed query whatever the size of the pool or of the history: the first
    unseen question at or after a random point of the pool's fixed random order (`draw`).
    """

    name = "bank"
    calls_model = False

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.SystemRandom()

    async def propose(self, *, session: InterviewSession, pool: PoolState) -> Proposal:
        return await sync_to_async(self.pick)(session=session, pool=pool)

    def pick(self, *, session: InterviewSession, pool: PoolState) -> Proposal:
        user, topic, difficulty = session.user_id, session.topic_id, session.difficulty
        question = _closest_to_focus(session=session, cycle=pool.cycle) if session.focus else None
        question = question or _first_after_random_point(
            user=user, topic=topic, cycle=pool.cycle, difficulty=difficulty, rng=self.rng
        )
        pool_reset = question is None
        if pool_reset:
            # A new pass: anything but the question just served (unless it is the only one).
            question = _first_after_random_point(
                topic=topic, difficulty=difficulty, rng=self.rng, exclude=pool.last_question_id
            ) or _first_after_random_point(topic=topic, difficulty=difficulty, rng=self.rng)
        if question is None:
            raise GenerationFailed(Reason.EMPTY_POOL, f"The {session.topic} pool has no questions.")
        return _stored_proposal(question, pool_reset=pool_reset)


def _closest_to_focus(*, session: InterviewSession, cycle: int) -> Question | None:
    """For a weak-spots session: of the questions the candidate has not seen in this pass, the
    one whose key points share most significant words with the key points they keep missing
    (the session's difficulty first on a tie); None when no question shares any. A pass never
    repeats a question, so the weak spots are practised through the closest unseen ones."""
    from interviews.feedback import terms

    wanted = set().union(*(terms(point) for point in session.focus))
    seen = ServedQuestion.objects.filter(
        user_id=session.user_id, topic_id=session.topic_id, cycle=cycle
    ).values("question_id")
    unseen = (
        Question.objects.filter(topic_id=session.topic_id, is_active=True, follows=None)
        .exclude(pk__in=seen)
        .only("pk", "key_points", "difficulty")
    )
    best, best_rank = None, (0, False)
    for question in unseen.iterator():
        shared = len(wanted & set().union(*(terms(str(p)) for p in question.key_points)))
        rank = (shared, question.difficulty == session.difficulty)
        if shared and rank > best_rank:
            best, best_rank = question, rank
    return Question.objects.get(pk=best.pk) if best is not None else None


# One branch of the pick: the first active question of the topic at or after (or before) the
# random point, at the session's difficulty (or any), optionally one not served in this pass.
# Each branch is a short walk along a partial index on (topic, [difficulty,] draw).
_PICK_BRANCH = """
SELECT * FROM (
    SELECT q.id, q.difficulty, q.text, q.key_points, q.outline, q.source, q.model, q.draw,
           q.kind, q.problem,
           {rank} AS pick_rank
    FROM {question} AS q
    WHERE q.topic_id = %(topic)s AND q.is_active AND q.follows_id IS NULL AND {where}
    ORDER BY q.draw LIMIT 1
) AS branch_{rank}
"""
_UNSEEN = """NOT EXISTS (
    SELECT 1 FROM {served} AS s
    WHERE s.user_id = %(user)s AND s.topic_id = %(topic)s AND s.cycle = %(cycle)s
      AND s.question_id = q.id
)"""


def _first_after_random_point(
    *,
    topic: int,
    difficulty: str,
    rng: random.Random,
    user: int | None = None,
    cycle: int = 0,
    exclude: int | None = None,
) -> Question | None:
    """One query, whatever the size of the pool or of the history: the first question at or
    after a random point of the pool's fixed random order (wrapping around), preferring the
    session's difficulty; only questions not served to `user` in `cycle` when a user is given.

    Written out rather than built by the ORM: it runs for every bank question, and the ORM
    spends more CPU composing these four branches than the database spends running them.
    """
    conditions = []
    if user is not None:
        conditions.append(_UNSEEN.format(served=ServedQuestion._meta.db_table))
    if exclude is not None:
        conditions.append("q.id <> %(exclude)s")
    common = " AND ".join(conditions) or "TRUE"
    branches = [
        f"q.difficulty = %(difficulty)s AND q.draw >= %(point)s AND {common}",
        f"q.difficulty = %(difficulty)s AND q.draw < %(point)s AND {common}",
        f"q.draw >= %(point)s AND {common}",
        f"q.draw < %(point)s AND {common}",
    ]
    # Table names come from the models, values are parameters.
    sql = " UNION ALL ".join(
        _PICK_BRANCH.format(rank=rank, question=Question._meta.db_table, where=where)
        for rank, where in enumerate(branches)
    )
    params = {
        "topic": topic,
        "difficulty": difficulty,
        "point": rng.random(),
        "user": user,
        "cycle": cycle,
        "exclude": exclude,
    }
    ranked = f"SELECT * FROM ({sql}) AS picked ORDER BY pick_rank LIMIT 1"  # noqa: S608
    return next(iter(Question.objects.raw(ranked, params)), None)


class LLMSource:
    """Asks the configured OpenAI-compatible model for a new question."""

    name = "openai"
    calls_model = True

    async def propose(self, *, session: InterviewSession, pool: PoolState) -> Proposal:
        from interviews import llm
        from interviews.spend import BudgetSpent, amodel_call_take

        try:
            await amodel_call_take()
        except BudgetSpent as exc:
            raise GenerationFailed(Reason.BUDGET_SPENT, str(exc)) from exc
        if session.topic.is_code:
            from interviews.coding.generation import aproblem_generate

            return await aproblem_generate(session=session, pool=pool)
        try:
            generated = await llm.agenerate_question(
                topic=session.topic.name,
                difficulty=session.difficulty,
                avoid=list(pool.recent_texts),
                focus=[str(point) for point in session.focus],
            )
        except llm.LLMError as exc:
            # An unusable answer is asked for again (Reason.asks_again); a refusal, a timeout or
            # a server error is not (the client already retried transport faults in its budget).
            raise GenerationFailed(exc.reason, exc.detail) from exc
        return Proposal(spec=generated, source=Question.Source.OPENAI, model=generated.model)


def question_source_get() -> QuestionSource:
    """The source QUESTION_SOURCE names: `openai` or `bank`."""
    return LLMSource() if settings.QUESTION_SOURCE == "openai" else BankSource()


# --- follow-ups ------------------------------------------------------------------------------


class FollowUpSource(Protocol):
    name: str
    calls_model: bool

    def has_follow_up(self, *, parent: ServedQuestion) -> bool:
        """Whether a follow-up can be proposed at all (asked before anything is reserved)."""
        ...

    async def propose_follow_up(self, *, parent: ServedQuestion, answer: Answer) -> Proposal: ...


def _written_follow_ups(*, parent: ServedQuestion) -> list[Question]:
    """The bank's written follow-ups of the chain's first question not yet asked in this
    session, in the bank's order."""
    root = parent.question.follows or parent.question
    asked = ServedQuestion.objects.filter(
        session_id=parent.session_id, question__follows=root
    ).values("question_id")
    return list(
        Question.objects.filter(follows=root, is_active=True)
        .exclude(pk__in=asked)
        .order_by("bank_key", "pk")
    )


class BankFollowUps:
    """The bank's written follow-ups: the one that digs into most of the key points the answer
    missed (each follow-up names the key points of its question it probes)."""

    name = "bank"
    calls_model = False

    def has_follow_up(self, *, parent: ServedQuestion) -> bool:
        return bool(_written_follow_ups(parent=parent))

    async def propose_follow_up(self, *, parent: ServedQuestion, answer: Answer) -> Proposal:
        return await sync_to_async(self.pick)(parent=parent, answer=answer)

    def pick(self, *, parent: ServedQuestion, answer: Answer) -> Proposal:
        candidates = _written_follow_ups(parent=parent)
        if not candidates:
            raise GenerationFailed(Reason.EMPTY_POOL, "No follow-up is left for this question.")
        key_points = list(parent.question.key_points)
        missed = {key_points.index(point) for point in answer.missed if point in key_points}
        # The first follow-up of the bank's order among those probing most missed key points.
        chosen = max(
            enumerate(candidates),
            key=lambda pair: (len(missed & set(pair[1].probes)), -pair[0]),
        )[1]
        return _stored_proposal(chosen)


class LLMFollowUps:
    """Asks the model for a follow-up that probes the answer and what it missed."""

    name = "openai"
    calls_model = True

    def has_follow_up(self, *, parent: ServedQuestion) -> bool:
        return True

    async def propose_follow_up(self, *, parent: ServedQuestion, answer: Answer) -> Proposal:
        from interviews import llm
        from interviews.spend import BudgetSpent, amodel_call_take

        try:
            await amodel_call_take()
        except BudgetSpent as exc:
            raise GenerationFailed(Reason.BUDGET_SPENT, str(exc)) from exc
        question = parent.question
        try:
            generated = await llm.agenerate_follow_up(
                question=question.text,
                key_points=list(question.key_points),
                missed=[str(item) for item in (answer.missed or answer.gaps)],
                answer=answer.text,
                difficulty=question.difficulty,
            )
        except llm.LLMError as exc:
            raise GenerationFailed(exc.reason, exc.detail) from exc
        return Proposal(spec=generated, source=Question.Source.OPENAI, model=generated.model)


def follow_up_source_get() -> FollowUpSource:
    """Follow-ups come from where questions come from (QUESTION_SOURCE)."""
    return LLMFollowUps() if settings.QUESTION_SOURCE == "openai" else BankFollowUps()
