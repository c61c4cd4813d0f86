"""A mock interview in a real browser: three questions against a short clock (a "minute" of
three seconds), one answer left to time out and submitted by the page at 0, the badge after
each question, and a report whose scores are the stored answers'."""

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from interviews.models import Answer, InterviewSession
from interviews.tests.browser.test_candidate_flow import (  # noqa: F401  # the bank fixture
    _bank_questions,
    new_email,
    sign_up,
)

pytestmark = pytest.mark.browser

SECONDS_PER_MINUTE = 3  # 3 "minutes" an answer: 9 seconds
ANSWER = (
    "A component re-renders when its state or props change, and a parent's render re-renders "
    "its children by default; memo, useMemo and useCallback let React skip that work."
)


def take_question(page: Page, position: int, label: str) -> None:
    page.locator("#next-question").get_by_role("button", name=f"{label} (1 token)").click()
    card = page.locator(f"#q-{position}")
    expect(card.get_by_role("heading", name=f"Question {position}")).to_be_visible()
    expect(card.get_by_role("timer")).to_be_visible()


def test_a_full_mock_interview_with_a_timed_out_answer(
    live_server, page: Page, settings, a11y
) -> None:
    settings.WELCOME_TOKENS = 5
    settings.MOCK_SECONDS_PER_MINUTE = SECONDS_PER_MINUTE
    base = live_server.url
    sign_up(page, base, new_email("mock"))
    badge = page.locator("#token-balance")
    expect(badge).to_have_text("5 tokens")

    card = page.locator("li.topic-card").filter(has=page.get_by_role("heading", name="ReactJS"))
    card.get_by_text("Practice or mock interview").click()  # the options open
    card.get_by_label("Mock interview", exact=True).check()
    card.get_by_label(re.compile("^Questions")).select_option("3")
    card.get_by_label(re.compile("^Minutes an answer")).select_option("3")
    card.get_by_role("button", name="Start").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("ReactJS mock interview")
    expect(badge).to_have_text("5 tokens")  # nothing paid upfront

    # 1: answered in time.
    take_question(page, 1, "First question")
    expect(badge).to_have_text("4 tokens")
    page.get_by_label("Your answer").fill(ANSWER)
    page.get_by_role("button", name="Submit answer").click()
    expect(page.locator("#q-1")).to_contain_text("Answer recorded")
    expect(page.locator("#q-1")).not_to_contain_text("What was good")  # no feedback yet
    expect(badge).to_have_text("4 tokens")

    # 2: the clock runs out; the page submits the answer as it stands.
    take_question(page, 2, "Next question")
    expect(badge).to_have_text("3 tokens")
    page.get_by_label("Your answer").fill("Half an answer about keys")
    announce = page.locator("#q-2 [data-countdown-announce]")
    expect(announce).to_have_text("One minute left", timeout=15_000)
    assert page.evaluate("document.activeElement.id") == "mock-answer-2"  # focus stayed
    expect(page.locator("#q-2")).to_contain_text("Time ran out", timeout=15_000)
    expect(badge).to_have_text("3 tokens")

    # 3: answered; the last answer ends the interview and opens its report.
    take_question(page, 3, "Next question")
    expect(badge).to_have_text("2 tokens")
    page.get_by_label("Your answer").fill(ANSWER)
    page.get_by_role("button", name="Submit answer").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Mock interview report: ReactJS")
    expect(badge).to_have_text("2 tokens")

    session = InterviewSession.objects.get(user__email__startswith="mock")
    answers = list(Answer.objects.filter(served__session=session).order_by("served__position"))
    assert [a.timed_out for a in answers] == [False, True, False]
    assert answers[1].text == "Half an answer about keys"
    stored = [a.score or 0 for a in answers]
    shown = [int(s) for s in page.locator("[data-score] strong").all_inner_texts()]
    assert shown == stored
    mean = round(sum(stored) / 3, 1)
    expect(page.locator("#overall-score strong")).to_have_text(str(mean))
    expect(page.locator("#report-q-2 [data-time-used]")).to_contain_text("(time ran out)")
    a11y.audit(page, "mock interview report")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download as Markdown").click()
    assert download.value.suggested_filename.endswith("-report.md")
    call_command("ledger_verify")
