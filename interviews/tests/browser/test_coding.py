"""A coding session in Debian's Chromium: the problem arrives (badge -1) with the editor over its
textarea; typing reaches the form; Tab indents and Escape then Tab leaves; the examples run; the
reference passes every hidden test, the starter fails with a clear report; an infinite loop is
stopped and the page stays usable; with JavaScript off the textarea still submits. Every page
is audited by axe and logs no CSP violation (the fixtures fail the test otherwise)."""

import pytest
from playwright.sync_api import Locator, Page, expect

from interviews.models import ServedQuestion
from interviews.tests.browser.test_candidate_flow import SESSION_URL, new_email, sign_up

# The real sandbox runs the code: skipped where it cannot, a failure with CI=true.
from interviews.tests.test_execution import sandbox  # noqa: F401
from ledger.selectors import account_problem_list

pytestmark = pytest.mark.browser

TOPIC = "Data structures and algorithms"


@pytest.fixture(autouse=True)
def _bank_problems(settings, live_server, sandbox) -> None:  # noqa: F811
    settings.QUESTION_SOURCE = "bank"
    settings.PREFETCH = False


def start_coding(page: Page) -> None:
    card = page.locator("li.topic-card").filter(has=page.get_by_role("heading", name=TOPIC))
    card.get_by_label(f"Difficulty for coding in {TOPIC}").select_option(label="Easy")
    card.get_by_role("button", name=f"Start coding in {TOPIC}").click()
    expect(page).to_have_url(SESSION_URL)


def first_problem(page: Page) -> Locator:
    page.locator("#next-question").get_by_role("button").click()
    card = page.locator("#question-list > li.question-card#q-1")
    expect(card).to_be_visible()
    return card


def set_code(page: Page, card: Locator, code: str) -> None:
    """Replace the editor's text, as a paste would (typing would add CodeMirror's indents)."""
    card.locator("textarea[data-code-language]").evaluate(
        """(textarea, code) => {
            const view = window.MockroomCodeEditor.viewOf(textarea);
            view.dispatch({changes: {from: 0, to: view.state.doc.length, insert: code}});
        }""",
        code,
    )


def test_a_coding_problem_in_the_editor_run_and_submitted(
    live_server, page: Page, settings, a11y
) -> None:
    settings.WELCOME_TOKENS = 3
    sign_up(page, live_server.url, new_email("coder"))
    start_coding(page)
    card = first_problem(page)
    expect(page.locator("#token-balance")).to_have_text("2 tokens")
    problem = ServedQuestion.objects.get().question.problem or {}

    # The editor over the textarea, which stays the form field (hidden, kept in sync).
    textarea = card.locator("textarea[data-code-language=python]")
    editor = card.locator(".code-editor .cm-content")
    expect(editor).to_be_visible()
    expect(textarea).to_be_hidden()
    expect(card.get_by_text("To leave the editor, press Escape then Tab.")).to_be_visible()
    editor.click()
    page.keyboard.press("Control+End")
    page.keyboard.press("Enter")
    page.keyboard.type("# typed")
    assert "# typed" in textarea.input_value()
    page.keyboard.press("Home")
    page.keyboard.press("Tab")
    assert "    # typed" in textarea.input_value() or "\t# typed" in textarea.input_value()
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    assert not page.evaluate("document.activeElement.closest('.code-editor') !== null"), (
        "Escape then Tab did not leave the editor"
    )
    a11y.audit(page, "a coding problem with its editor")
    # Long code (more lines than the editor shows, a line wider than the card) scrolls inside
    # the editor: the page keeps its width, and the scroller's content is focusable (axe).
    set_code(page, card, "".join(f"x{n} = {n}\n" for n in range(60)) + "# " + "y" * 200 + "\n")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    a11y.audit(page, "a coding problem with long code in its editor")

    # The examples run in the sandbox, free.
    set_code(page, card, problem["reference"])
    card.get_by_role("button", name="Run the examples (free)").click()
    examples = len(problem["examples"])
    expect(card.locator(".code-run")).to_contain_text(f"{examples} of {examples} examples passed")

    # An infinite loop is stopped within the limit and the page stays usable.
    set_code(page, card, f"def {problem['entry_point']}(*args):\n    while True:\n        pass\n")
    card.get_by_role("button", name="Run the examples (free)").click()
    expect(card.locator(".code-run")).to_contain_text("Time limit exceeded", timeout=15_000)

    # The starter fails with a clear report; the reference then passes every hidden test.
    set_code(page, card, problem["starter"])
    card.get_by_role("button", name="Submit against the hidden tests (free)").click()
    report = card.locator(".code-report")
    expect(report).to_contain_text("First failing test")
    tests = len(problem["tests"])
    card = page.locator("#q-1")
    card.locator(".code-editor .cm-content").fill(problem["reference"])  # as a paste would
    assert card.locator("textarea[data-code-language]").input_value() == problem["reference"]
    card.get_by_role("button", name="Submit against the hidden tests (free)").click()
    expect(card.locator(".code-report")).to_contain_text(f"{tests} of {tests} hidden tests passed")
    expect(page.locator("#token-balance")).to_have_text("2 tokens")  # runs and submissions free
    a11y.audit(page, "a coding problem graded by its hidden tests")
    assert account_problem_list() == []


def test_without_javascript_the_textarea_submits(live_server, browser, settings) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        sign_up(page, live_server.url, new_email("nojs"))
        start_coding(page)
        page.locator("#next-question").get_by_role("button").click()
        card = page.locator("#q-1")
        textarea = card.locator("textarea[data-code-language=python]")
        expect(textarea).to_be_visible()
        problem = ServedQuestion.objects.get().question.problem or {}
        textarea.fill(problem["reference"])
        card.get_by_role("button", name="Run the examples (free)").click()
        examples = len(problem["examples"])
        expect(page.locator("#q-1 .code-run")).to_contain_text(
            f"{examples} of {examples} examples passed"
        )
        page.locator("#q-1 textarea[data-code-language=python]").fill(problem["reference"])
        page.locator("#q-1").get_by_role(
            "button", name="Submit against the hidden tests (free)"
        ).click()
        tests = len(problem["tests"])
        expect(page.locator("#q-1 .code-report")).to_contain_text(
            f"{tests} of {tests} hidden tests passed"
        )
    finally:
        context.close()
