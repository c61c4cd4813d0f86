"""Reads for the interview pages and the question flow. Nothing here writes."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import Avg, Count, Model, Q, QuerySet
from django.utils import timezone

from interviews.models import (
    MOCK_GRACE_SECONDS,
    Answer,
    InterviewSession,
    Question,
    ServedQuestion,
    Topic,
)
from ledger.models import TokenAccount

if TYPE_CHECKING:
    from accounts.models import User

RECENT_LIMIT = 30


@dataclass(frozen=True)
class PoolState:
    """Where a candidate stands in a topic's pool, read from the newest questions served only:
    one indexed query whatever the size of the pool or of the history."""

    cycle: int  # the current pass through the pool (1, 2, ...)
    recent: tuple[tuple[int, str], ...]  # (question id, text) newest first, for the LLM prompt

    @property
    def recent_texts(self) -> tuple[str, ...]:
        return tuple(text for _, text in self.recent)

    @property
    def last_question_id(self) -> int | None:
        return self.recent[0][0] if self.recent else None


# Written out: it runs for every question, and the ORM spends several times more CPU composing
# it than the database spends running it. Table names come from the models, values are
# parameters.
_POOL_STATE_SQL = f"""
SELECT served.question_id, served.cycle, question.text
FROM {ServedQuestion._meta.db_table} AS served
JOIN {Question._meta.db_table} AS question ON question.id = served.question_id
WHERE served.user_id = %s AND served.topic_id = %s
ORDER BY served.id DESC
LIMIT %s
"""  # noqa: S608


def pool_state_get(*, user: User, topic: Topic) -> PoolState:
    # Newest first by id: ids grow in the order captures commit (one account lock at a time), and
    # passes only grow, so the newest question served belongs to the current pass.
    with connection.cursor() as cursor:
        cursor.execute(_POOL_STATE_SQL, [user.pk, topic.pk, RECENT_LIMIT])
        rows = cursor.fetchall()
    return PoolState(
        cycle=rows[0][1] if rows else 1,
        recent=tuple((question_id, text) for question_id, _, text in rows),
    )


@dataclass(frozen=True)
class PoolProgress:
    """ "N of M seen" in the current pass."""

    cycle: int
    seen: int
    size: int


# On the path of every question: written out, it costs a tenth of the CPU of the same query
# built by the ORM from three correlated subqueries. Three index lookups, whatever the history.
# Table names come from the models, values are parameters.
_POOL_PROGRESS_SQL = f"""
WITH pass AS (
    SELECT COALESCE((
        SELECT cycle FROM {ServedQuestion._meta.db_table}
        WHERE user_id = %(user)s AND topic_id = %(topic)s ORDER BY id DESC LIMIT 1
    ), 1) AS cycle
)
SELECT pass.cycle,
    (SELECT COUNT(*) FROM {ServedQuestion._meta.db_table}
     WHERE user_id = %(user)s AND topic_id = %(topic)s AND cycle = pass.cycle
       AND parent_id IS NULL),
    (SELECT COUNT(*) FROM {Question._meta.db_table}
     WHERE topic_id = %(topic)s AND is_active AND follows_id IS NULL)
FROM pass
"""  # noqa: S608


def pool_progress_get(*, user: User, topic: Topic) -> PoolProgress:
    """The candidate's progress through a topic's pool, in one query."""
    with connection.cursor() as cursor:
        cursor.execute(_POOL_PROGRESS_SQL, {"user": user.pk, "topic": topic.pk})
        cycle, seen, size = cursor.fetchone()
    return PoolProgress(cycle=cycle, seen=seen, size=size)


@dataclass(frozen=True)
class CaptureState:
    """What the capture of a question reads under the account lock, in one query: enough to
    store it (its pass, its position) and to show it (its number, the pool's progress) without
    reading anything again."""

    cycle: int  # the current pass (as PoolState.cycle)
    served: int  # questions in the session, follow-ups included: the next position is served + 1
    asked: int  # first-level questions in the session: the next one's number is asked + 1
    seen: int  # first-level questions served in this pass ("N of M seen")
    size: int  # the pool: the topic's active first-level questions
    # The topic's question with the wording asked about (a generated question's fingerprint),
    # if there is one: the same wording is the same question.
    wording: int | None = None

    def progress_after(self, *, cycle: int, added_to_pool: bool) -> PoolProgress:
        """The pool's progress once one more first-level question is served in `cycle` (the
        current pass, or a new one), `added_to_pool` if that question is new to the pool."""
        seen = self.seen + 1 if cycle == self.cycle else 1
        return PoolProgress(cycle=cycle, seen=seen, size=self.size + int(added_to_pool))


# The pass as in _POOL_PROGRESS_SQL, then the session's counts, and the question with a wording
# when one is given: six index lookups.
_CAPTURE_STATE_SQL = f"""
WITH pass AS (
    SELECT COALESCE((
        SELECT cycle FROM {ServedQuestion._meta.db_table}
        WHERE user_id = %(user)s AND topic_id = %(topic)s ORDER BY id DESC LIMIT 1
    ), 1) AS cycle
)
SELECT pass.cycle,
    (SELECT COUNT(*) FROM {ServedQuestion._meta.db_table} WHERE session_id = %(session)s),
    (SELECT COUNT(*) FROM {ServedQuestion._meta.db_table}
     WHERE session_id = %(session)s AND parent_id IS NULL),
    (SELECT COUNT(*) FROM {ServedQuestion._meta.db_table}
     WHERE user_id = %(user)s AND topic_id = %(topic)s AND cycle = pass.cycle
       AND parent_id IS NULL),
    (SELECT COUNT(*) FROM {Question._meta.db_table}
     WHERE topic_id = %(topic)s AND is_active AND follows_id IS NULL),
    (SELECT id FROM {Question._meta.db_table}
     WHERE topic_id = %(topic)s AND fingerprint = %(fingerprint)s)
FROM pass
"""  # noqa: S608


def capture_state_get(*, session: InterviewSession, fingerprint: str | None = None) -> CaptureState:
    """The session's pass, counts and pool progress, and the topic's question with the wording
    of `fingerprint` (question_fingerprint) if given, in one query (see CaptureState)."""
    params: dict[str, Any] = {
        "user": session.user_id,
        "topic": session.topic_id,
        "session": _session_id(session.pk),
        "fingerprint": fingerprint,
    }
    with connection.cursor() as cursor:
        cursor.execute(_CAPTURE_STATE_SQL, params)
        cycle, served, asked, seen, size, wording = cursor.fetchone()
    return CaptureState(
        cycle=cycle, served=served, asked=asked, seen=seen, size=size, wording=wording
    )


@dataclass(frozen=True)
class TopicProgress:
    topic: Topic
    seen: int
    size: int
    cycle: int
    coding: list[TopicProgress] = field(default_factory=list)  # its coding pools, by language


def topic_progress_list(*, user: User) -> list[TopicProgress]:
    """Every active topic with "N of M seen" in the candidate's current pass."""
    topics = list(
        Topic.objects.filter(is_active=True)
        .annotate(
            size=Count(
                "questions",
                filter=Q(questions__is_active=True, questions__follows__isnull=True),
            )
        )
        .order_by("order", "name")  # Meta.ordering does not apply to aggregate queries
    )
    # Distinct questions seen per pass, in one query; the latest pass of a topic wins.
    passes = (
        ServedQuestion.objects.filter(user=user, parent=None)
        .values_list("topic_id", "cycle")
        .annotate(seen=Count("question_id", distinct=True))
        .order_by("topic_id", "cycle")
    )
    cycles: dict[int, int] = {}
    seen: dict[int, int] = {}
    for topic_id, cycle, count in passes:
        cycles[topic_id], seen[topic_id] = cycle, count
    progress = {
        t.pk: TopicProgress(topic=t, seen=seen.get(t.pk, 0), size=t.size, cycle=cycles.get(t.pk, 1))
        for t in topics
    }
    # A topic's coding pools go under it (the dashboard offers "Coding" there).
    for item in progress.values():
        parent = progress.get(item.topic.parent_id) if item.topic.parent_id else None
        if parent is not None:
            parent.coding.append(item)
    return [item for item in progress.values() if not item.topic.is_code]


def session_list(*, user: User) -> QuerySet[InterviewSession]:
    return (
        InterviewSession.objects.filter(user=user)
        .select_related("topic")
        .annotate(question_count=Count("served", distinct=True))
        .order_by("-started_at")
    )


def _columns(model: type[Model], alias: str) -> str:
    quote = connection.ops.quote_name  # "order" is a column name too
    fields = model._meta.concrete_fields
    return ", ".join(f"{alias}.{quote(str(column.column))}" for column in fields)


def _session_id(session_id: uuid.UUID) -> Any:
    """A session's id as a written-out statement's parameter (a UUID, or its text where the
    database has no UUID type)."""
    return InterviewSession._meta.pk.get_db_prep_value(session_id, connection)


def _instance[M: Model](model: type[M], values: Sequence[Any]) -> M:
    """An instance of `model` from its columns' values as a cursor returns them, converted as
    the ORM converts them (JSON, ...)."""
    columns = model._meta.concrete_fields
    converted = list(values)
    for index, column in enumerate(columns):
        expression = column.get_col(model._meta.db_table)
        backend = connection.ops.get_db_converters(expression)
        for convert in [*backend, *column.get_db_converters(connection)]:
            converted[index] = convert(converted[index], expression, connection)
    return model.from_db(connection.alias, [column.attname for column in columns], converted)


# The session with its topic and the candidate's token account, in one query: on the path of
# every request about a session, where the ORM spent four times more CPU composing the join
# and building its objects than this does. Names come from the models, values are parameters.
_SESSION_SQL = f"""
SELECT {_columns(InterviewSession, "session")}, {_columns(Topic, "topic")},
    {_columns(TokenAccount, "account")}
FROM {InterviewSession._meta.db_table} AS session
JOIN {Topic._meta.db_table} AS topic ON topic.id = session.topic_id
LEFT JOIN {TokenAccount._meta.db_table} AS account ON account.user_id = session.user_id
WHERE session.id = %s AND session.user_id = %s
"""  # noqa: S608


def session_get(*, user: User, session_id: uuid.UUID) -> InterviewSession:
    """The candidate's own session; another user's is DoesNotExist (a 404, never a 403)."""
    # With its topic, the candidate (`user` itself) and their token account: the question flow
    # needs them all.
    with connection.cursor() as cursor:
        cursor.execute(_SESSION_SQL, [_session_id(session_id), user.pk])
        row = cursor.fetchone()
    if row is None:
        raise InterviewSession.DoesNotExist("No such session.")
    ends = len(InterviewSession._meta.concrete_fields), len(Topic._meta.concrete_fields)
    session = _instance(InterviewSession, row[: ends[0]])
    topic = _instance(Topic, row[ends[0] : ends[0] + ends[1]])
    account_values = row[ends[0] + ends[1] :]
    account = _instance(TokenAccount, account_values) if account_values[0] is not None else None
    session.topic, session.user = topic, user
    # As select_related("user__token_account") leaves it: no account is DoesNotExist on access.
    TokenAccount.user.field.remote_field.set_cached_value(user, account)
    if account is not None:
        account.user = user
    return session


def served_question_list(*, session: InterviewSession) -> QuerySet[ServedQuestion]:
    return (
        ServedQuestion.objects.filter(session=session)
        .select_related("question", "debit", "answer__recording", "topic")
        .defer("answer__recording__audio")  # a recording's audio is never shown
        .order_by("position")
    )


def served_question_get(*, user: User, session_id: uuid.UUID, position: int) -> ServedQuestion:
    return (
        ServedQuestion.objects.select_related(
            "question", "debit", "session__user", "topic", "answer__recording"
        )
        .defer("answer__recording__audio")
        .get(session_id=session_id, session__user=user, position=position)
    )


def served_question_tree(*, session: InterviewSession) -> list[ServedQuestion]:
    """The session's questions in reading order, each followed by its follow-ups (depth first),
    each with its `label`: "3" for the third question, "3.1" for its first follow-up, "3.1.1"
    for that one's follow-up."""
    served = list(served_question_list(session=session))
    children: dict[int | None, list[ServedQuestion]] = {}
    for item in served:  # by position: siblings in the order they were asked
        children.setdefault(item.parent_id, []).append(item)
    ordered: list[ServedQuestion] = []

    def walk(items: list[ServedQuestion], prefix: str) -> None:
        for number, item in enumerate(items, start=1):
            item.label = f"{prefix}{number}"
            ordered.append(item)
            walk(children.get(item.pk, []), f"{item.label}.")

    walk(children.get(None, []), "")
    return ordered


def served_question_label_get(*, served: ServedQuestion) -> str:
    """One question's label (see served_question_tree) without loading the session: its number
    among its siblings, then its parent's, up the chain (a query a level)."""
    parts: list[str] = []
    item: ServedQuestion | None = served
    while item is not None:
        siblings = ServedQuestion.objects.filter(
            session_id=item.session_id, parent_id=item.parent_id, position__lte=item.position
        )
        parts.append(str(siblings.count()))
        item = (
            ServedQuestion.objects.only("pk", "parent_id", "position", "session_id").get(
                pk=item.parent_id
            )
            if item.parent_id is not None
            else None
        )
    return ".".join(reversed(parts))


def served_question_previous_get(*, served: ServedQuestion) -> ServedQuestion | None:
    """The question just before `served` in reading order (a new card goes after it)."""
    tree = served_question_tree(session=served.session)
    index = next(i for i, item in enumerate(tree) if item.pk == served.pk)
    return tree[index - 1] if index else None


@dataclass(frozen=True)
class SessionSummary:
    questions: int
    answered: int
    average_score: float | None


def session_summary_get(*, session: InterviewSession) -> SessionSummary:
    served = ServedQuestion.objects.filter(session=session)
    answers = Answer.objects.filter(served__session=session)
    scored = answers.exclude(score__isnull=True).aggregate(avg=Avg("score"))
    return SessionSummary(
        questions=served.count(),
        answered=answers.count(),
        average_score=round(scored["avg"], 1) if scored["avg"] is not None else None,
    )


# --- mock interviews -----------------------------------------------------------------------------


def answer_deadline_get(*, served: ServedQuestion, session: InterviewSession) -> datetime:
    """When a mock interview's answer is due: the time allowed after the question was served."""
    return served.served_at + timedelta(seconds=session.answer_seconds)


def _answer_of(served: ServedQuestion) -> Answer | None:
    try:
        return served.answer
    except Answer.DoesNotExist:
        return None


def mock_question_open(*, served: ServedQuestion, session: InterviewSession) -> bool:
    """Whether a mock interview's question still takes its answer: none stored yet, and its
    deadline (plus MOCK_GRACE_SECONDS) not passed."""
    if session.is_ended or _answer_of(served) is not None:
        return False
    deadline = answer_deadline_get(served=served, session=session)
    return timezone.now() <= deadline + timedelta(seconds=MOCK_GRACE_SECONDS)


@dataclass(frozen=True)
class MockQuestion:
    label: str
    served: ServedQuestion
    answer: Answer | None
    open: bool  # still takes its answer
    seconds_left: int  # to the deadline, 0 once passed
    # The interviewer's follow-up is offered once, on a first-level question that was answered
    # and has none yet (the candidate may ask it or take the next question).
    follow_up_offered: bool = False


@dataclass(frozen=True)
class MockState:
    """Where a mock interview stands: its questions, the one open now, what comes next."""

    questions: list[MockQuestion]
    current: MockQuestion | None
    asked: int  # questions asked (follow-ups not counted)
    length: int

    @property
    def can_ask(self) -> bool:
        return self.current is None and self.asked < self.length

    @property
    def finished(self) -> bool:
        return self.current is None and self.asked >= self.length


def mock_state_get(*, session: InterviewSession) -> MockState:
    now = timezone.now()
    questions = []
    tree = served_question_tree(session=session)
    followed_up = {item.parent_id for item in tree if item.parent_id is not None}
    for served in tree:
        deadline = answer_deadline_get(served=served, session=session)
        questions.append(
            MockQuestion(
                label=served.label,
                served=served,
                answer=_answer_of(served),
                open=mock_question_open(served=served, session=session),
                seconds_left=max(0, math.ceil((deadline - now).total_seconds())),
                follow_up_offered=(
                    served.depth == 0
                    and served.pk not in followed_up
                    and _answer_of(served) is not None
                    and not session.is_ended
                ),
            )
        )
    return MockState(
        questions=questions,
        current=next((q for q in questions if q.open), None),
        asked=sum(1 for q in questions if q.served.parent_id is None),
        length=session.length or 0,
    )


@dataclass(frozen=True)
class ReportItem:
    label: str
    served: ServedQuestion
    answer: Answer


@dataclass(frozen=True)
class SessionReport:
    """A mock interview's report as stored: each answer's score, feedback and time, and the
    overall part written when it ended (None until then)."""

    session: InterviewSession
    items: list[ReportItem]

    @property
    def overall(self) -> dict[str, Any] | None:
        report = self.session.report
        return report if isinstance(report, dict) else None

    @property
    def delivery(self) -> dict[str, Any] | None:
        """How the candidate spoke across the interview's spoken answers (approximate): their
        count, speaking time, mean words per minute, pauses of 2 s or more, filler words."""
        spoken = [
            item.answer.recording.delivery
            for item in self.items
            if item.answer.recording is not None and item.answer.recording.delivery
        ]
        if not spoken:
            return None
        speaking = sum(float(d.get("speaking_seconds", 0)) for d in spoken)
        words = sum(float(d.get("word_count", 0)) for d in spoken)
        return {
            "answers": len(spoken),
            "speaking_seconds": round(speaking),
            "words_per_minute": round(words / (speaking / 60)) if speaking else 0,
            "pauses": sum(int(d.get("pause_count", 0)) for d in spoken),
            "fillers": sum(int(d.get("filler_count", 0)) for d in spoken),
        }

    @property
    def score(self) -> float | None:
        """The mean of the answers' stored scores, to one decimal."""
        scores = [item.answer.score for item in self.items if item.answer.score is not None]
        return round(sum(scores) / len(scores), 1) if scores else None


def session_report_get(*, session: InterviewSession) -> SessionReport:
    items = [
        ReportItem(label=item.label, served=item, answer=answer)
        for item in served_question_tree(session=session)
        if (answer := _answer_of(item)) is not None
    ]
    return SessionReport(session=session, items=items)
