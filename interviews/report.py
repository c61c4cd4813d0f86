"""A mock interview's report: the overall part (score, strengths, gaps), and its Markdown.

The overall score is always the mean of the answers' scores as stored, so the report's numbers
are the answers'. Strengths and gaps across the session come from one model call when the
model is configured (a strict schema, ReportSpec), else from the answers' own feedback (the
bank's rubric offline); a failed call falls back to the latter, so a report is never missing.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

from interviews.feedback import feedback_calls_model
from interviews.selectors import ReportItem, SessionReport
from interviews.spec import FEEDBACK_ITEMS_MAX

logger = logging.getLogger(__name__)

SOURCE_RUBRIC: Final[str] = "rubric"
SOURCE_MODEL: Final[str] = "openai"


def _collected(items: list[ReportItem], *, field: str, best_first: bool) -> list[str]:
    """Up to FEEDBACK_ITEMS_MAX distinct points of the answers' `field`, each naming its question:
    strengths from the best answers first, gaps from the weakest first."""
    ordered = sorted(items, key=lambda item: item.answer.score or 0, reverse=best_first)
    seen: set[str] = set()
    points: list[str] = []
    for item in ordered:
        for point in getattr(item.answer, field) or []:
            text = str(point).strip()
            if text and text.casefold() not in seen:
                seen.add(text.casefold())
                points.append(f"Question {item.label}: {text}")
    return points[:FEEDBACK_ITEMS_MAX]


def report_overall_rubric(*, report: SessionReport) -> dict[str, object]:
    return {
        "score": report.score,
        "strengths": _collected(report.items, field="strengths", best_first=True),
        "gaps": _collected(report.items, field="gaps", best_first=False),
        "source": SOURCE_RUBRIC,
    }


async def areport_overall(*, report: SessionReport, user_id: int) -> dict[str, object]:
    """The overall part of the report, as stored on the session."""
    overall = report_overall_rubric(report=report)
    if not feedback_calls_model() or not report.items:
        return overall
    from interviews.llm import LLMError
    from interviews.llm.report import ReportAnswer, agenerate_report
    from interviews.services import model_call_slot
    from interviews.spend import BudgetSpent, amodel_call_take

    try:
        async with model_call_slot(user_id=user_id, calls_model=True):
            await amodel_call_take()
            generated = await agenerate_report(
                topic=report.session.topic.name,
                answers=[
                    ReportAnswer(
                        question=item.served.question.text,
                        score=item.answer.score or 0,
                        strengths=list(item.answer.strengths or []),
                        gaps=list(item.answer.gaps or []),
                    )
                    for item in report.items
                ],
            )
    except (LLMError, BudgetSpent) as exc:
        logger.warning("report of session %s: the rubric's summary (%s)", report.session.pk, exc)
        return overall
    return {
        **overall,
        "strengths": list(generated.strengths),
        "gaps": list(generated.gaps),
        "source": SOURCE_MODEL,
    }


# --- Markdown ------------------------------------------------------------------------------------

# Every ASCII punctuation character may be backslash-escaped in CommonMark; these are the ones
# that can start or end Markdown structure (emphasis, links, headings, lists, tables, HTML).
_MARKDOWN_SPECIAL: Final[re.Pattern[str]] = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&=:\"'])")
_CONTROL: Final[re.Pattern[str]] = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def markdown_escape(text: str) -> str:
    """One line of untrusted text (a question, the candidate's words, the model's) as literal
    Markdown: line breaks become spaces, and nothing in it can open a structure."""
    flat = " ".join(_CONTROL.sub("", text).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", flat)


def markdown_quote(text: str) -> str:
    """Untrusted text of several lines as a block quote, each line escaped."""
    lines = _CONTROL.sub("", text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(f"> {markdown_escape(line)}" if line.strip() else ">" for line in lines)


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds // 60}:{seconds % 60:02d}"


def report_markdown(*, report: SessionReport) -> str:
    """The report as a Markdown document (the download)."""
    session = report.session
    overall = report.overall or {}
    score = overall.get("score")
    lines = [
        f"# Mock interview report: {markdown_escape(session.topic.name)}",
        "",
        f"- Difficulty: {session.get_difficulty_display()}",
        f"- Started: {session.started_at:%Y-%m-%d %H:%M} UTC",
        f"- Questions: {len(report.items)}; {session.minutes} minutes an answer",
        f"- Overall score: {score if score is not None else '-'} / 10",
        "",
        *_delivery_lines(report.delivery, heading="## How you spoke (approximate)"),
        "## Strengths",
        "",
        *[f"- {markdown_escape(str(point))}" for point in overall.get("strengths") or []],
        "",
        "## Gaps",
        "",
        *[f"- {markdown_escape(str(point))}" for point in overall.get("gaps") or []],
        "",
    ]
    for item in report.items:
        answer = item.answer
        used = _duration(answer.seconds_used)
        lines += [
            f"## Question {item.label}: {answer.score if answer.score is not None else '-'} / 10",
            "",
            markdown_quote(item.served.question.text),
            "",
            f"Time used: {used}{' (time ran out)' if answer.timed_out else ''}",
            "",
            "### Your answer",
            "",
            markdown_quote(answer.text) if answer.text.strip() else "_No answer._",
            "",
            *_delivery_lines(
                answer.recording.delivery if answer.recording is not None else None,
                heading="### How you spoke (approximate)",
            ),
            "### What was good",
            "",
            *([f"- {markdown_escape(str(p))}" for p in answer.strengths] or ["- (none)"]),
            "",
            "### What was missing",
            "",
            *([f"- {markdown_escape(str(p))}" for p in answer.gaps] or ["- (none)"]),
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _delivery_lines(delivery: dict[str, Any] | None, *, heading: str) -> list[str]:
    """How the candidate spoke, as Markdown lines; none for a typed answer."""
    if not delivery:
        return []
    lines = [heading, ""]
    if "speaking_seconds" in delivery:
        lines.append(f"- Speaking time: {float(delivery['speaking_seconds']):.0f} s")
    if delivery.get("time_to_first_word_seconds") is not None:
        first = float(delivery["time_to_first_word_seconds"])
        lines.append(f"- Time to first word: {first:.1f} s")
    if "pause_count" in delivery:
        lines.append(f"- Pauses of 2 s or more: {delivery['pause_count']}")
    if delivery.get("words_per_minute") is not None:
        lines.append(f"- Words per minute: {float(delivery['words_per_minute']):.0f}")
    if "filler_count" in delivery:
        lines.append(f"- Filler words: {delivery['filler_count']}")
    return [*lines, ""]
