"""A candidate's path through Mockroom in a real browser: signup, paid questions, feedback,
receipts, the staff's view of the ledger, keyboard use, a phone screen, and privacy.

Every page these tests open is audited with axe-core (see conftest.py); `a11y.audit(page, ...)`
adds the states reached without a page load (a question, an alert, feedback) at both widths."""

import itertools
import re
import uuid
from collections.abc import Callable

import pytest
from playwright.sync_api import Locator, Page, Route, ViewportSize, expect

from accounts.models import User
from interviews.models import ServedQuestion, Topic

pytestmark = pytest.mark.browser

PASSWORD = "Quiet-Harbor-42"
SESSION_URL = re.compile(r"/interviews/[0-9a-f-]{36}/$")
PHONE = ViewportSize(width=390, height=844)
PHONE_LANDSCAPE = ViewportSize(width=844, height=390)

# Resolves once window.scrollY has not changed for 20 animation frames (a smooth scroll has
# ended), or after 5 s at most: a bounded wait for a condition, not a sleep.
SCROLL_SETTLED = """() => Promise.race([
  new Promise((resolve) => {
    let last = -1, same = 0;
    const tick = () => {
      if (window.scrollY === last) same += 1; else { same = 0; last = window.scrollY; }
      if (same >= 20) resolve(true); else requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }),
  new Promise((resolve) => setTimeout(() => resolve(false), 5000)),
])"""

_emails = itertools.count(1)


@pytest.fixture(autouse=True)
def _bank_questions(settings, live_server) -> None:
    """Questions come from the built-in bank (no network); it must be loaded."""
    settings.QUESTION_SOURCE = "bank"
    assert Topic.objects.filter(slug="reactjs", is_active=True).exists(), (
        "The ReactJS topic is missing: the question bank was not loaded after the flush."
    )


def new_email(prefix: str = "candidate") -> str:
    return f"{prefix}{next(_emails)}@example.com"


def sign_up(page: Page, base_url: str, email: str) -> None:
    page.goto(f"{base_url}/accounts/signup/")
    page.locator("[name=email]").fill(email)
    page.locator("[name=password1]").fill(PASSWORD)
    page.locator("[name=password2]").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(f"{base_url}/interviews/")


def start_session(page: Page, *, topic: str = "ReactJS", difficulty: str = "Easy") -> None:
    page.get_by_label(f"Difficulty for {topic}").select_option(label=difficulty)
    card = page.locator("li.topic-card").filter(has=page.get_by_role("heading", name=topic))
    card.get_by_role("button", name="Start").click()
    expect(page).to_have_url(SESSION_URL)
    expect(page.get_by_role("heading", level=1)).to_contain_text(topic)


def balance(page: Page) -> int:
    match = re.match(r"\d+", page.locator("#token-balance").inner_text())
    assert match, "the badge shows no balance"
    return int(match.group())


def tokens(n: int) -> str:
    return f"{n} token" if n == 1 else f"{n} tokens"


def question_button(page: Page) -> Locator:
    return page.locator("#next-question").get_by_role("button")


def set_reload_marker(page: Page) -> None:
    page.evaluate("window.__noReload = 'still here'")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__noReload") == "still here", "the page was reloaded"


def ask_question(page: Page, position: int) -> Locator:
    """Click the question button and wait for question `position` to arrive."""
    question_button(page).click()
    card = page.locator(f"#question-list > li.question-card#q-{position}")
    expect(card).to_be_visible()
    return card


def has_horizontal_scroll(page: Page) -> bool:
    return page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth + 1"
    )


def test_tokens_buy_questions_until_refused(
    live_server, page: Page, settings, console_log, tmp_path, a11y
) -> None:
    settings.WELCOME_TOKENS = 3
    base = live_server.url
    sign_up(page, base, new_email())

    badge = page.locator("#token-balance")
    expect(badge).to_have_text("3 tokens")
    expect(badge).to_have_attribute("aria-live", "polite")
    expect(page.get_by_role("status").filter(has_text="You have 3 tokens")).to_be_visible()
    react = page.locator("li.topic-card").filter(has=page.get_by_role("heading", name="ReactJS"))
    expect(react).to_contain_text(re.compile(r"0 of \d+ seen"))
    a11y.audit(page, "first dashboard: welcome message, no past sessions")

    start_session(page, difficulty="Easy")
    expect(page.locator("h1 .pill")).to_have_text("Easy")
    expect(question_button(page)).to_have_text("First question (1 token)")
    a11y.audit(page, "empty session")
    set_reload_marker(page)

    for position, before in enumerate([3, 2, 1], start=1):
        card = ask_question(page, position)
        after = before - 1
        expect(badge).to_have_text(tokens(after))
        assert balance(page) == after
        expect(card.locator(".receipt")).to_have_text(f"1 token · {before} -> {after}")
        expect(card.locator(".pill")).to_have_text("Easy")
        expect(page.locator("#question-list > li.question-card")).to_have_count(position)
        heading = card.get_by_role("heading", name=f"Question {position}")
        expect(heading).to_be_focused()
        assert page.evaluate(
            f"document.activeElement === document.querySelector('#q-{position} h2')"
        )
        assert_not_reloaded(page)
    # Before the click: the page says there are no tokens left, and who grants more.
    hint = page.locator("#token-hint")
    expect(hint).to_contain_text("You have 0 tokens")
    expect(hint).to_contain_text("Mockroom team")
    a11y.audit(page, "session with three questions, 0 tokens left")

    # Out of tokens: a 402 with a message in the page, no charge, no card.
    console_log.allow_status(402, "/questions/")
    question_button(page).click()
    alert = page.locator("#question-alert").get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("You were not charged")
    expect(badge).to_have_text("0 tokens")
    expect(page.locator("#question-list > li.question-card")).to_have_count(3)
    expect(question_button(page)).to_be_enabled()
    assert_not_reloaded(page)
    a11y.audit(page, "session with the out-of-tokens alert")
    page.screenshot(path=tmp_path / "session-page.png", full_page=True)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Receipts").click()
    expect(page).to_have_url(f"{base}/tokens/")
    rows = page.locator("table.ledger-table tbody tr")
    expect(rows).to_have_count(4)
    # Newest first: three receipts (balance 0, 1, 2), then the welcome grant.
    for index, balance_after in enumerate([0, 1, 2]):
        row = rows.nth(index)
        expect(row).to_have_class(re.compile(r"\bentry-debit\b"))
        expect(row.locator("td").nth(1)).to_contain_text("Receipt")
        expect(row.get_by_role("link", name="see the question")).to_be_visible()
        expect(row.locator("td").nth(2)).to_have_text("-1")
        expect(row.locator("td").nth(3)).to_have_text(str(balance_after))
    grant = rows.nth(3)
    expect(grant).to_have_class(re.compile(r"\bentry-grant\b"))
    expect(grant.locator("td").nth(1)).to_contain_text("Welcome tokens")
    expect(grant.locator("td").nth(2)).to_have_text("+3")
    expect(grant.locator("td").nth(3)).to_have_text("3")
    a11y.audit(page, "receipts")


def test_question_button_says_next_after_the_first_question(live_server, page: Page) -> None:
    sign_up(page, live_server.url, new_email())
    start_session(page)
    expect(question_button(page)).to_have_text("First question (1 token)")
    ask_question(page, 1)
    expect(question_button(page)).to_have_text("Next question (1 token)", timeout=2_000)


def test_question_button_is_disabled_while_generating(live_server, page: Page) -> None:
    sign_up(page, live_server.url, new_email())
    start_session(page)
    held = []

    def hold(route: Route) -> None:
        held.append(route)  # answered below, once the in-flight state has been checked

    page.route("**/questions/", hold)
    generating = page.locator("#generating")
    expect(generating).to_be_hidden()

    question_button(page).click()
    expect(question_button(page)).to_be_disabled()
    expect(generating).to_be_visible()
    expect(generating).to_have_text("Generating...")
    assert len(held) == 1, "the request was not sent exactly once"
    held[0].continue_()

    expect(page.locator("#q-1")).to_be_visible()
    expect(question_button(page)).to_be_enabled()
    expect(generating).to_be_hidden()


def test_feedback_arrives_in_place_and_short_answers_are_refused(
    live_server, page: Page, console_log, a11y
) -> None:
    sign_up(page, live_server.url, new_email())
    start_session(page)
    set_reload_marker(page)
    card = ask_question(page, 1)

    session_id = uuid.UUID(page.url.rstrip("/").rsplit("/", 1)[-1])
    question = ServedQuestion.objects.get(session_id=session_id, position=1).question
    # Cover the first key point and miss the others: both lists of the feedback appear.
    answer = f"{question.key_points[0]}. I would explain this with an example from a project."
    card.get_by_label("Your answer").fill(answer)
    card.get_by_role("button", name="Get feedback (free)").click()

    feedback = card.get_by_role("region", name="Feedback on question 1")
    expect(feedback).to_be_visible()
    expect(feedback.locator(".score")).to_have_text(re.compile(r"^\d+ / 10$"))
    expect(feedback.get_by_role("heading", name="What was good")).to_be_visible()
    expect(feedback.get_by_role("heading", name="What was missing")).to_be_visible()
    expect(feedback.get_by_role("heading", name="A model outline")).to_be_visible()
    assert_not_reloaded(page)
    a11y.audit(page, "question with feedback")

    # Too short: a 422 with the error in the card; the answer and the feedback stay.
    console_log.allow_status(422, "/answer/")
    card.get_by_label("Improve your answer").fill("short")
    card.get_by_role("button", name="Get feedback (free)").click()
    error = card.locator(".field-errors[role=alert]")
    expect(error).to_be_visible()
    expect(error).to_contain_text("too short")
    expect(card.get_by_label("Improve your answer")).to_have_value("short")
    expect(feedback.locator(".score")).to_have_text(re.compile(r"^\d+ / 10$"))
    expect(page.locator("#question-list > li.question-card")).to_have_count(1)
    assert_not_reloaded(page)
    a11y.audit(page, "question with feedback and a refused answer")

    page.get_by_role("button", name="End session").click()
    summary = page.get_by_role("region", name="Session summary")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text("Answered")
    expect(summary.locator("dd").nth(0)).to_have_text("1")
    expect(summary.locator("dd").nth(1)).to_have_text("1")
    expect(summary.locator("dd").nth(2)).to_have_text(re.compile(r"^\d+(\.\d+)? / 10$"))
    expect(page.locator("#next-question")).to_have_count(0)


def admin_log_in(page: Page, base_url: str, email: str, password: str) -> None:
    """The admin's login is the site's: /admin/login/ leads there and back."""
    page.goto(f"{base_url}/admin/login/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    page.locator("[name=login]").fill(email)
    page.locator("[name=password]").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base_url}/admin/")


def test_staff_sees_the_candidate_ledger_in_the_admin(
    live_server, page: Page, new_page: Callable[..., Page], settings, console_log, a11y
) -> None:
    settings.WELCOME_TOKENS = 3
    base = live_server.url
    email = new_email()
    sign_up(page, base, email)
    start_session(page)
    card = ask_question(page, 1)
    expect(card.locator(".receipt")).to_have_text("1 token · 3 -> 2")

    User.objects.create_superuser(email="staff@example.com", password="Staff-Lantern-77")
    staff = new_page()
    # Known app bug, see test_admin_pages_give_the_browser_an_icon: the admin has no favicon link,
    # so Chromium asks for /favicon.ico and gets a 404.
    console_log.allow_status(404, "/favicon.ico")
    admin_log_in(staff, base, "staff@example.com", "Staff-Lantern-77")

    staff.goto(f"{base}/admin/ledger/ledgerentry/")
    rows = staff.locator("#result_list tbody tr").filter(has_text=email)
    expect(rows).to_have_count(3)
    # Newest first: the debit, the hold it settled, the welcome grant.
    for index, (kind, balance_after) in enumerate([("Debit", 2), ("Hold", 3), ("Grant", 3)]):
        row = rows.nth(index)
        expect(row.locator(".field-account_email")).to_have_text(email)
        expect(row.locator(".field-kind")).to_have_text(kind)
        expect(row.locator(".field-balance_after")).to_have_text(str(balance_after))
    a11y.audit(staff, "admin: the ledger list")

    staff.locator("#changelist-filter").get_by_role("link", name="Debit", exact=True).click()
    expect(staff).to_have_url(re.compile(r"[?&]kind__exact=debit\b"))
    debits = staff.locator("#result_list tbody tr")
    expect(debits).to_have_count(1)
    expect(debits.locator(".field-kind")).to_have_text("Debit")
    expect(debits.locator(".field-account_email")).to_have_text(email)
    expect(debits.locator(".field-balance_delta")).to_have_text("-1")
    a11y.audit(staff, "admin: the ledger list filtered to debits")

    staff.goto(f"{base}/admin/ledger/tokenaccount/")
    account = staff.locator("#result_list tbody tr").filter(has_text=email)
    expect(account).to_have_count(1)
    expect(account.locator(".field-balance")).to_have_text("2")
    expect(account.locator(".field-held")).to_have_text("0")

    # The candidate's own page was not touched by the staff's context.
    page.reload()
    expect(page.locator("#token-balance")).to_have_text("2 tokens")


def test_admin_pages_give_the_browser_an_icon(live_server, page: Page) -> None:
    # Chromium fetches /favicon.ico at most once per browser and host, and outside the page's
    # network events, so the console error itself shows only in whichever test comes first.
    # This checks its cause on every admin page instead.
    base = live_server.url
    User.objects.create_superuser(email="staff@example.com", password="Staff-Lantern-77")
    admin_log_in(page, base, "staff@example.com", "Staff-Lantern-77")
    for path in ["/admin/", "/admin/ledger/ledgerentry/", "/admin/ledger/tokenaccount/"]:
        page.goto(f"{base}{path}")
        if page.locator("link[rel~=icon]").count():
            continue
        favicon = page.request.get(f"{base}/favicon.ico")
        assert favicon.ok, f"{path} names no icon and /favicon.ico answers {favicon.status}"


def test_question_button_works_from_the_keyboard(live_server, page: Page, settings) -> None:
    settings.WELCOME_TOKENS = 10
    sign_up(page, live_server.url, new_email())
    start_session(page)
    button = question_button(page)
    for _ in range(40):
        page.keyboard.press("Tab")
        if button.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the question button")
    expect(button).to_be_focused()

    page.keyboard.press("Enter")
    card = page.locator("#q-1")
    expect(card).to_be_visible()
    expect(page.locator("#token-balance")).to_have_text("9 tokens")
    expect(card.get_by_role("heading", name="Question 1")).to_be_focused()


def test_phone_screen_has_no_horizontal_scroll(live_server, new_page: Callable[..., Page]) -> None:
    page = new_page(viewport=PHONE)
    sign_up(page, live_server.url, new_email())
    assert not has_horizontal_scroll(page), "the first dashboard scrolls sideways on a phone"

    start_session(page)
    assert not has_horizontal_scroll(page), "the empty session page scrolls sideways"
    card = ask_question(page, 1)
    expect(card.locator(".receipt")).to_be_visible()
    assert not has_horizontal_scroll(page), "the session page with a question scrolls sideways"


def test_phone_dashboard_with_past_sessions_has_no_horizontal_scroll(
    live_server, new_page: Callable[..., Page]
) -> None:
    page = new_page(viewport=PHONE)
    sign_up(page, live_server.url, new_email())
    start_session(page)
    page.get_by_role("link", name="Interviews", exact=True).first.click()
    expect(page.get_by_role("table", name="Your past sessions")).to_be_visible()
    assert not has_horizontal_scroll(page), "the dashboard scrolls sideways on a phone"


def test_new_question_heading_is_not_hidden_under_the_sticky_header(
    live_server, new_page: Callable[..., Page]
) -> None:
    page = new_page(viewport=PHONE_LANDSCAPE)
    sign_up(page, live_server.url, new_email())
    start_session(page)
    card = ask_question(page, 1)
    heading = card.get_by_role("heading", name="Question 1")
    expect(heading).to_be_focused()
    assert page.evaluate(SCROLL_SETTLED), "the page kept scrolling for 5 s"
    header, heading_box = page.locator(".site-header").bounding_box(), heading.bounding_box()
    assert header, "the header is not shown"
    assert heading_box, "the heading is not shown"
    header_bottom = header["y"] + header["height"]
    heading_top = heading_box["y"]
    assert heading_top >= header_bottom, (
        f"the focused heading (top {heading_top:.0f}px) is under the sticky header "
        f"(bottom {header_bottom:.0f}px)"
    )


def test_another_candidates_session_is_not_found(
    live_server, page: Page, new_page: Callable[..., Page], console_log
) -> None:
    base = live_server.url
    sign_up(page, base, new_email("owner"))
    start_session(page)
    session_url = page.url

    intruder = new_page()
    sign_up(intruder, base, new_email("intruder"))
    console_log.allow_status(404, "/interviews/")
    response = intruder.goto(session_url)
    assert response is not None
    assert response.status == 404
    expect(intruder.get_by_role("heading", name="Not found")).to_be_visible()
    expect(intruder.locator("#next-question")).to_have_count(0)
    expect(intruder.get_by_text("ReactJS")).to_have_count(0)


def test_a_lost_response_is_retried_with_the_same_request_id_and_charged_once(
    live_server, page: Page, console_log
) -> None:
    """The server charged the question but its answer never reached the page: the next click
    resends the same request id and gets that question, not a second charge."""
    sign_up(page, live_server.url, new_email())
    start_session(page)
    set_reload_marker(page)
    sent: list[str] = []

    def lose_the_answer(route: Route) -> None:
        sent.append(route.request.post_data or "")
        route.fetch()  # the server does the work and charges...
        route.abort("connectionreset")  # ...and the answer is lost on the way back

    page.route("**/questions/", lose_the_answer)
    question_button(page).click()
    expect(page.locator("#question-alert [role=alert]")).to_contain_text("never charged twice")
    expect(page.locator("#q-1")).to_have_count(0)
    page.unroute("**/questions/")
    # What the lost request did to the console (the network error) is the point of the test.
    console_log.errors.clear()

    with page.expect_request("**/questions/") as retry:
        card = ask_question(page, 1)
    assert retry.value.post_data == sent[0], "the retry did not reuse the request id"
    expect(page.locator("#token-balance")).to_have_text(tokens(9))  # charged once
    expect(page.locator("#question-list > li.question-card")).to_have_count(1)
    expect(card.locator(".receipt")).to_contain_text("10 -> 9")
    assert_not_reloaded(page)

    card = ask_question(page, 2)  # the next click is a new request again
    expect(page.locator("#token-balance")).to_have_text(tokens(8))
