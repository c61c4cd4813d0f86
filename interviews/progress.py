"""What a candidate's answers say about their progress, per topic: the score trend, answers
given, average and best score, time spent, and the key points missed most often.

A handful of aggregate queries whatever the number of answers: nothing here loads every answer
into Python. The missed key points are counted by the database from each answer's `missed`
list (a JSON array), with PostgreSQL's or SQLite's JSON functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import (
    Avg,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    FloatField,
    Max,
    QuerySet,
    Sum,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Least, TruncDate

from interviews.models import Answer, ServedQuestion, Topic

if TYPE_CHECKING:
    from accounts.models import User

# An answer's time is from its question arriving to the answer, at most this long (a question
# left open overnight is not an evening of practice).
ANSWER_TIME_CAP = timedelta(minutes=30)
# The chart shows the latest days with answers, at most this many.
TREND_POINTS_MAX = 30
# The key points missed most often, per topic.
MISSED_TOP = 5

# The chart's drawing box (SVG user units).
CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 320, 120, 12


@dataclass(frozen=True)
class TrendPoint:
    day: date
    average: float
    answers: int
    x: float  # where it is drawn
    y: float


@dataclass(frozen=True)
class MissedPoint:
    text: str
    times: int


@dataclass(frozen=True)
class SpokenDay:
    """How the candidate spoke on one day in a topic (approximate): the spoken answers' mean
    words per minute, and their pauses of 2 s or more and filler words per answer."""

    day: date
    answers: int
    words_per_minute: float
    pauses: float
    fillers: float


@dataclass
class TopicProgress:
    topic: Topic
    answers: int
    average: float
    best: int
    time_spent: timedelta
    trend: list[TrendPoint] = field(default_factory=list)
    missed: list[MissedPoint] = field(default_factory=list)
    spoken: list[SpokenDay] = field(default_factory=list)

    @property
    def time_spent_text(self) -> str:
        minutes = round(self.time_spent.total_seconds() / 60)
        if minutes < 60:
            return f"{minutes} min"
        return f"{minutes // 60} h {minutes % 60:02d} min"

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.trend)

    @property
    def trend_summary(self) -> str:
        """The chart in one sentence, for screen readers (the table has the details)."""
        if not self.trend:
            return "No scores yet."
        first, last = self.trend[0], self.trend[-1]
        if len(self.trend) == 1:
            return f"One day of answers, averaging {last.average:.1f} out of 10."
        change = last.average - first.average
        direction = "up" if change > 0.05 else "down" if change < -0.05 else "level"
        return (
            f"{len(self.trend)} days of answers: from {first.average:.1f} on "
            f"{first.day:%-d %b} to {last.average:.1f} on {last.day:%-d %b} out of 10 "
            f"({direction})."
        )


def _trend_points(rows: list[tuple[date, float, int]]) -> list[TrendPoint]:
    rows = rows[-TREND_POINTS_MAX:]
    inner_w, inner_h = CHART_WIDTH - 2 * CHART_PAD, CHART_HEIGHT - 2 * CHART_PAD
    step = inner_w / (len(rows) - 1) if len(rows) > 1 else 0.0
    return [
        TrendPoint(
            day=day,
            average=round(average, 1),
            answers=answers,
            x=CHART_PAD + (index * step if len(rows) > 1 else inner_w / 2),
            y=CHART_PAD + inner_h * (1 - average / 10),
        )
        for index, (day, average, answers) in enumerate(rows)
    ]


_MISSED_SQL = {
    "postgresql": """
        SELECT topic_id, point, times FROM (
            SELECT s.topic_id, point, COUNT(*) AS times,
                   ROW_NUMBER() OVER (PARTITION BY s.topic_id ORDER BY COUNT(*) DESC, point) AS n
            FROM {answer} a
            JOIN {served} s ON s.id = a.served_id
            CROSS JOIN LATERAL jsonb_array_elements_text(a.missed) AS point
            WHERE s.user_id = %s AND jsonb_typeof(a.missed) = 'array'
            GROUP BY s.topic_id, point
        ) ranked WHERE n <= %s ORDER BY topic_id, times DESC, point
    """,
    "sqlite": """
        SELECT topic_id, point, times FROM (
            SELECT s.topic_id, j.value AS point, COUNT(*) AS times,
                   ROW_NUMBER() OVER (PARTITION BY s.topic_id ORDER BY COUNT(*) DESC, j.value) AS n
            FROM {answer} a
            JOIN {served} s ON s.id = a.served_id, json_each(a.missed) j
            WHERE s.user_id = %s
            GROUP BY s.topic_id, j.value
        ) ranked WHERE n <= %s ORDER BY topic_id, times DESC, point
    """,
}


def _missed_by_topic(user: User) -> dict[int, list[MissedPoint]]:
    sql = _MISSED_SQL[connection.vendor].format(
        answer=Answer._meta.db_table, served=ServedQuestion._meta.db_table
    )
    missed: dict[int, list[MissedPoint]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [user.pk, MISSED_TOP])
        for topic_id, point, times in cursor.fetchall():
            missed.setdefault(topic_id, []).append(MissedPoint(text=str(point), times=times))
    return missed


def weak_spot_list(*, user: User, topic: Topic) -> list[str]:
    """The key points the candidate missed most often in `topic` (at most MISSED_TOP)."""
    return [point.text for point in _missed_by_topic(user).get(topic.pk, [])]


def progress_list(*, user: User) -> list[TopicProgress]:
    """The candidate's progress in every topic they have answered in, most answered first.
    Four queries, whatever the number of answers."""
    answers = Answer.objects.filter(served__user=user, score__isnull=False)
    spent = Least(
        ExpressionWrapper(F("created_at") - F("served__served_at"), output_field=DurationField()),
        ANSWER_TIME_CAP,
        output_field=DurationField(),
    )
    totals = {
        row["served__topic"]: row
        for row in answers.values("served__topic").annotate(
            answers=Count("pk"), average=Avg("score"), best=Max("score"), spent=Sum(spent)
        )
    }
    if not totals:
        return []
    topics = Topic.objects.in_bulk(list(totals))
    trends: dict[int, list[tuple[date, float, int]]] = {}
    daily = (
        answers.annotate(day=TruncDate("created_at"))
        .values("served__topic", "day")
        .annotate(average=Avg("score"), answers=Count("pk"))
        .order_by("served__topic", "day")
    )
    for row in daily:
        trends.setdefault(row["served__topic"], []).append(
            (row["day"], float(row["average"]), row["answers"])
        )
    missed = _missed_by_topic(user)
    spoken = _spoken_by_topic(answers)
    progress = [
        TopicProgress(
            topic=topics[topic_id],
            answers=row["answers"],
            average=round(float(row["average"]), 1),
            best=row["best"],
            time_spent=row["spent"] or timedelta(),
            trend=_trend_points(trends.get(topic_id, [])),
            missed=missed.get(topic_id, []),
            spoken=spoken.get(topic_id, []),
        )
        for topic_id, row in totals.items()
    ]
    return sorted(progress, key=lambda p: (-p.answers, p.topic.order, p.topic.name))


def _spoken_by_topic(answers: QuerySet[Answer]) -> dict[int, list[SpokenDay]]:
    """Per topic and day, how the candidate spoke in their spoken answers: one aggregate query
    over the recordings' delivery numbers (JSON), whatever the number of answers."""

    def number(key: str) -> Cast:
        return Cast(KeyTextTransform(key, "recording__delivery"), FloatField())

    rows = (
        answers.filter(recording__delivery__isnull=False)
        .annotate(day=TruncDate("created_at"))
        .values("served__topic", "day")
        .annotate(
            spoken=Count("pk"),
            wpm=Avg(number("words_per_minute")),
            pauses=Avg(number("pause_count")),
            fillers=Avg(number("filler_count")),
        )
        .order_by("served__topic", "day")
    )
    spoken: dict[int, list[SpokenDay]] = {}
    for row in rows:
        spoken.setdefault(row["served__topic"], []).append(
            SpokenDay(
                day=row["day"],
                answers=row["spoken"],
                words_per_minute=round(row["wpm"] or 0),
                pauses=round(row["pauses"] or 0, 1),
                fillers=round(row["fillers"] or 0, 1),
            )
        )
    return spoken
