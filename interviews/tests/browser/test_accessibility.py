"""Accessibility that axe-core cannot check by itself: the keyboard walk (every action reachable
by Tab, in order, with a visible focus ring that nothing hides), what screen readers are told
(live regions, where focus goes), nothing said by colour alone, and the 0-token hint.

axe-core audits every page here too (conftest.py); the public pages are audited explicitly at
desktop and phone widths, including a form with its errors."""

import itertools
import re
import uuid

import pytest
from playwright.sync_api import Locator, Page, expect

from interviews.models import ServedQuestion
from interviews.tests.browser.test_candidate_flow import (
    PASSWORD,
    SESSION_URL,
    question_button,
    sign_up,
    start_session,
)

pytestmark = pytest.mark.browser

_emails = itertools.count(1)


@pytest.fixture(autouse=True)
def _bank_questions(settings, live_server) -> None:
    settings.QUESTION_SOURCE = "bank"


def new_email() -> str:
    return f"a11y{next(_emails)}@example.com"


# What the focused element looks like: a focus ring (an outline at least 2px wide, not
# transparent), whether any of it is on screen, and whether the sticky header covers it.
FOCUS_STATE = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  const visible = box.bottom > 0 && box.top < window.innerHeight;
  const x = box.left + Math.min(box.width / 2, 10);
  const y = Math.max(box.top, 0) + Math.min(box.height / 2, 8);
  const hit = visible ? document.elementFromPoint(x, y) : null;
  const header = document.querySelector(".site-header");
  return {
    tag: el.tagName.toLowerCase(),
    text: (el.innerText || el.value || el.getAttribute("aria-label") || el.id || "")
      .trim().slice(0, 60),
    ring: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2
      && style.outlineColor !== "rgba(0, 0, 0, 0)",
    offscreen: !visible,
    obscured: Boolean(hit && header && header.contains(hit) && !header.contains(el)),
  };
}"""

# Every element a keyboard user should reach by Tab, in document order.
TABBABLE = """() => Array.from(document.querySelectorAll(
  'a[href], button:not([disabled]), select, textarea, input:not([type=hidden]), summary, [tabindex]'
)).filter((el) => el.tabIndex >= 0 && el.getClientRects().length > 0
  && getComputedStyle(el).visibility !== 'hidden')
  .map((el) => el.tagName.toLowerCase() + ':'
    + (el.innerText || el.value || el.getAttribute('aria-label') || el.id || '')
      .trim().slice(0, 60))"""


def tab_walk(page: Page) -> list[dict]:
    """From the skip link (the page's first stop), Tab until focus leaves the page or comes back
    round; every stop must show a visible focus ring that nothing covers."""
    page.evaluate("window.scrollTo(0, 0)")
    page.locator(".skip-link").focus()
    stops: list[dict] = []
    for _ in range(80):
        state = page.evaluate(FOCUS_STATE)
        if state is None or (
            stops and (state["tag"], state["text"]) == (stops[0]["tag"], stops[0]["text"])
        ):
            break
        assert state["ring"], f"no visible focus ring on {state['tag']} {state['text']!r}"
        assert not state["offscreen"], f"{state['tag']} {state['text']!r} focused off screen"
        assert not state["obscured"], f"{state['tag']} {state['text']!r} is under the header"
        stops.append(state)
        page.keyboard.press("Tab")
    return stops


def assert_every_action_reachable_in_order(page: Page, where: str) -> None:
    stops = [f"{s['tag']}:{s['text']}" for s in tab_walk(page)]
    expected = page.evaluate(TABBABLE)
    # The skip link is first; after it, Tab follows the page's own order (no positive
    # tabindex), and reaches every action on it.
    assert stops == expected, f"{where}: Tab order\n{stops}\ndiffers from the page's\n{expected}"
    assert page.locator("[tabindex]:not([tabindex='-1']):not([tabindex='0'])").count() == 0


def press_tab_until(page: Page, target: Locator, limit: int = 60) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            state = page.evaluate(FOCUS_STATE)
            assert state["ring"], f"no visible focus ring on {state}"
            return
    pytest.fail(f"Tab never reached {target}")


def test_public_pages_pass_the_audit(live_server, page: Page, a11y, console_log) -> None:
    base = live_server.url
    page.goto(f"{base}/")
    expect(page.get_by_role("link", name="Sign up")).to_be_visible()
    a11y.audit(page, "home")
    page.goto(f"{base}/accounts/login/")
    a11y.audit(page, "log in")
    console_log.allow_status(400, "/accounts/login/")
    page.get_by_role("button", name="Log in").click()
    a11y.audit(page, "log in with an error")
    page.goto(f"{base}/accounts/signup/")
    console_log.allow_status(400, "/accounts/signup/")
    page.locator("[name=email]").fill("not-an-email")
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator(".field-errors[role=alert]").first).to_be_visible()
    a11y.audit(page, "sign up with errors")
    page.goto(f"{base}/accounts/password/reset/")
    a11y.audit(page, "password reset")


def test_signed_in_pages_pass_the_audit(live_server, page: Page, a11y) -> None:
    base = live_server.url
    sign_up(page, base, new_email())
    for path, label in [
        ("/tokens/what-costs-a-token/", "what costs a token"),
        ("/progress/", "progress, before any answer"),
        ("/accounts/profile/", "profile"),
        ("/accounts/email/", "change email"),
        ("/accounts/password/change/", "change password"),
        ("/accounts/2fa/", "two-factor authentication"),
        ("/accounts/delete/", "delete account"),
        ("/tokens/", "receipts with the welcome grant"),
    ]:
        page.goto(f"{base}{path}")
        a11y.audit(page, label)


def test_keyboard_walk_signup_session_question_answer_feedback(
    live_server, page: Page, settings
) -> None:
    """From the home page to feedback without the mouse."""
    settings.WELCOME_TOKENS = 3
    base = live_server.url
    page.goto(f"{base}/")
    assert_every_action_reachable_in_order(page, "home")

    page.keyboard.press("Tab")  # the skip link comes first, and works
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()

    page.goto(f"{base}/accounts/signup/")
    email = page.locator("[name=email]")
    press_tab_until(page, email)
    page.keyboard.type(new_email())
    page.keyboard.press("Tab")
    expect(page.locator("[name=password1]")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    expect(page.locator("[name=password2]")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign up")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{base}/interviews/")
    assert_every_action_reachable_in_order(page, "dashboard")

    difficulty = page.get_by_label("Difficulty for ReactJS")
    press_tab_until(page, difficulty)
    page.keyboard.press("Tab")
    card = page.locator("li.topic-card").filter(has=page.get_by_role("heading", name="ReactJS"))
    # The mode's options (practice by default, or a mock interview), closed, then Start.
    expect(card.locator("summary")).to_be_focused()
    page.keyboard.press("Tab")
    expect(card.get_by_role("button", name="Start")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(SESSION_URL)
    assert_every_action_reachable_in_order(page, "empty session")

    press_tab_until(page, question_button(page))
    page.keyboard.press("Enter")
    question = page.locator("#q-1")
    expect(question.get_by_role("heading", name="Question 1")).to_be_focused()
    assert_every_action_reachable_in_order(page, "session with a question")

    answer_box = question.get_by_label("Your answer")
    press_tab_until(page, answer_box)
    session_id = uuid.UUID(page.url.rstrip("/").rsplit("/", 1)[-1])
    served = ServedQuestion.objects.get(session_id=session_id, position=1).question
    page.keyboard.type(f"{served.key_points[0]}. I would explain this with an example.")
    page.keyboard.press("Tab")
    expect(question.get_by_role("button", name="Get feedback (free)")).to_be_focused()
    page.keyboard.press("Enter")
    feedback = question.get_by_role("region", name="Feedback on question 1")
    expect(feedback).to_be_visible()
    # The form that had focus was replaced: focus goes to the feedback, not to the page's top.
    expect(feedback).to_be_focused()
    assert_every_action_reachable_in_order(page, "question with feedback")
    press_tab_until(page, page.get_by_role("button", name="End session"), limit=80)
    page.keyboard.press("Enter")
    expect(page.get_by_role("region", name="Session summary")).to_be_visible()


def test_screen_readers_hear_the_badge_alerts_and_the_zero_token_hint(
    live_server, page: Page, settings, console_log
) -> None:
    settings.WELCOME_TOKENS = 1
    sign_up(page, live_server.url, new_email())
    expect(page.get_by_role("status").filter(has_text="You have 1 token")).to_be_visible()
    badge = page.locator("#token-balance")
    expect(badge).to_have_attribute("aria-live", "polite")
    expect(badge).to_have_attribute("aria-atomic", "true")
    start_session(page)

    hint = page.locator("#token-hint")
    expect(hint).to_have_attribute("role", "status")  # a live region, there before it fills
    expect(hint).to_have_text("")
    question_button(page).click()
    expect(page.locator("#q-1 h2")).to_be_focused()
    expect(badge).to_have_text("0 tokens")
    # The page says so before the next click, next to the button, and who grants tokens.
    expect(hint).to_contain_text("You have 0 tokens")
    expect(hint).to_contain_text("ask the Mockroom team")
    expect(question_button(page)).to_have_attribute("aria-describedby", "token-hint")
    expect(question_button(page)).to_be_enabled()

    page.reload()
    expect(page.locator("#token-hint")).to_contain_text("You have 0 tokens")
    expect(question_button(page)).to_be_enabled()

    # The refusal still happens (no charge) and focus moves to its alert.
    console_log.allow_status(402, "/questions/")
    question_button(page).click()
    alert = page.locator("#question-alert").get_by_role("alert")
    expect(alert).to_contain_text("You were not charged")
    expect(alert).to_be_focused()
    expect(badge).to_have_text("0 tokens")


def test_a_refused_answer_takes_focus_to_its_error(live_server, page: Page, console_log) -> None:
    sign_up(page, live_server.url, new_email())
    start_session(page)
    question_button(page).click()
    card = page.locator("#q-1")
    expect(card).to_be_visible()
    console_log.allow_status(422, "/answer/")
    card.get_by_label("Your answer").fill("short")
    card.get_by_role("button", name="Get feedback (free)").click()
    error = card.locator(".field-errors[role=alert]")
    expect(error).to_contain_text("too short")
    expect(error).to_be_focused()


def test_nothing_is_said_by_colour_alone(live_server, page: Page) -> None:
    """Difficulty, charges, scores and feedback lists carry their meaning in text."""
    sign_up(page, live_server.url, new_email())
    start_session(page, difficulty="Hard")
    expect(page.locator("h1 .pill")).to_have_text("Hard")
    question_button(page).click()
    card = page.locator("#q-1")
    expect(card.locator(".pill")).to_have_text("Hard")
    expect(card.locator(".receipt")).to_have_text(re.compile(r"^1 token · \d+ -> \d+$"))

    session_id = uuid.UUID(page.url.rstrip("/").rsplit("/", 1)[-1])
    served = ServedQuestion.objects.get(session_id=session_id, position=1).question
    card.get_by_label("Your answer").fill(f"{served.key_points[0]}. And an example from work.")
    card.get_by_role("button", name="Get feedback (free)").click()
    feedback = card.get_by_role("region", name="Feedback on question 1")
    expect(feedback.locator(".score")).to_have_text(re.compile(r"^\d+ / 10$"))
    # The green and red lists are named by headings, not only by their colour and markers.
    for heading, items in [("What was good", "ul.good"), ("What was missing", "ul.missing")]:
        expect(feedback.get_by_role("heading", name=heading)).to_be_visible()
        expect(feedback.locator(f"h3:has-text('{heading}') + {items}")).to_have_count(1)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Receipts").click()
    rows = page.locator("table.ledger-table tbody tr")
    debit, grant = rows.nth(0), rows.nth(1)
    expect(debit.locator("td").nth(1)).to_contain_text("Receipt")
    expect(debit.locator("td").nth(2)).to_have_text("-1")  # a sign, not only red
    expect(grant.locator("td").nth(2)).to_have_text(re.compile(r"^\+\d+$"))
