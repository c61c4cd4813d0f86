"""Follow-up questions in a real browser: asked on an answered question, nested under it as
"Question 1.1", with its own answer and feedback, followed up in turn; a double click is
charged once, and at 0 tokens the refusal shows beside the button with the balance unchanged."""

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from interviews.models import ServedQuestion
from interviews.tests.browser.test_candidate_flow import (
    ask_question,
    assert_not_reloaded,
    balance,
    new_email,
    set_reload_marker,
    sign_up,
    start_session,
)

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _bank_questions(settings, live_server) -> None:
    settings.QUESTION_SOURCE = "bank"


def answer(card: Locator, text: str, label: str) -> Locator:
    """Answer the card's question; returns its feedback region once it is shown."""
    card.get_by_label("Your answer").fill(text)
    card.get_by_role("button", name="Get feedback (free)").click()
    feedback = card.get_by_role("region", name=f"Feedback on question {label}")
    expect(feedback).to_be_visible()
    return feedback


def test_a_follow_up_chain_nested_under_its_question(
    live_server, page: Page, settings, console_log, a11y
) -> None:
    settings.WELCOME_TOKENS = 3
    base = live_server.url
    sign_up(page, base, new_email("follow"))
    start_session(page)
    set_reload_marker(page)
    first = ask_question(page, 1)
    expect(page.locator("#token-balance")).to_have_text("2 tokens")
    served = ServedQuestion.objects.get()
    answer(first, f"{served.question.key_points[0]}. That is my whole answer.", "1")

    # Follow-up: a token, a nested card right under its question, the badge in the same response.
    first.get_by_role("button", name="Follow-up (1 token)").click()
    follow_up = page.locator("#question-list > li.follow-up-card").first
    expect(follow_up).to_be_visible()
    expect(follow_up.get_by_role("heading", level=2)).to_contain_text("Question 1.1")
    expect(page.locator("#token-balance")).to_have_text("1 token")
    cards = page.locator("#question-list > li.question-card")
    expect(cards).to_have_count(2)
    expect(cards.nth(1)).to_have_class(re.compile(r"\bfollow-up-card\b"))
    expect(follow_up.locator(".receipt")).to_have_text("1 token · 2 -> 1")
    a11y.audit(page, "a follow-up nested under its question")

    # The next question goes after the chain; the follow-up has its own answer and feedback,
    # and can itself be followed up.
    ask_question(page, 3)
    expect(page.locator("#token-balance")).to_have_text("0 tokens")
    answer(follow_up, "An answer to the follow-up question, in a few words.", "1.1")

    # At 0 tokens: the refusal beside the button, nothing charged, the balance unchanged.
    console_log.allow_status(402, "/follow-up/")
    follow_up.get_by_role("button", name="Follow-up (1 token)").click()
    alert = follow_up.get_by_role("alert")
    expect(alert).to_contain_text("You need 1 token for a follow-up and have 0")
    expect(alert).to_contain_text("not charged")
    expect(page.locator("#token-balance")).to_have_text("0 tokens")
    assert balance(page) == 0
    expect(cards).to_have_count(3)
    assert_not_reloaded(page)
    a11y.audit(page, "a refused follow-up at 0 tokens")

    # After a reload the questions read in order, the follow-up nested under its question.
    page.reload()
    headings = page.locator("#question-list > li.question-card h2")
    expect(headings).to_have_count(3)
    expect(headings.nth(0)).to_have_text("Question 1")
    expect(headings.nth(1)).to_contain_text("Question 1.1")
    expect(headings.nth(2)).to_have_text("Question 2")

    # The progress page counts both answers, with the chart and its table.
    page.get_by_role("link", name="Progress").click()
    topic = page.get_by_role("region", name="ReactJS")
    expect(
        topic.get_by_role("img", name=re.compile("ReactJS: average score per day"))
    ).to_be_visible()
    expect(topic.locator(".progress-facts dd").first).to_have_text("2")
    a11y.audit(page, "progress with answers")


def test_a_double_click_on_follow_up_is_charged_once(live_server, page: Page, settings) -> None:
    settings.WELCOME_TOKENS = 3
    base = live_server.url
    sign_up(page, base, new_email("double"))
    start_session(page)
    first = ask_question(page, 1)
    answer(first, "An answer long enough to be graded by the rubric.", "1")
    first.get_by_role("button", name="Follow-up (1 token)").dblclick()
    expect(page.locator("#question-list > li.follow-up-card")).to_have_count(1)
    expect(page.locator("#token-balance")).to_have_text("1 token")
    page.reload()
    expect(page.locator("#question-list > li.follow-up-card")).to_have_count(1)
    assert ServedQuestion.objects.exclude(parent=None).count() == 1
