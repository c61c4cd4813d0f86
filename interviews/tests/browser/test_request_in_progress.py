"""A question request that is still being prepared (409 with Retry-After): the page says so and
asks again by itself, with the same request id, until the question arrives, charged once."""

import pytest
from playwright.sync_api import Page, Route, expect

from interviews.tests.browser.test_candidate_flow import (
    _bank_questions,  # noqa: F401  (autouse: the bank is the question source)
    assert_not_reloaded,
    new_email,
    question_button,
    set_reload_marker,
    sign_up,
    start_session,
    tokens,
)

pytestmark = pytest.mark.browser

STILL_PREPARING = (
    '<div class="alert alert-error" role="alert">Your question is still being prepared. '
    "We will check again in a moment; you will be charged once.</div>"
)


def test_a_request_still_in_progress_is_asked_again_with_the_same_id(
    live_server, page: Page, console_log
) -> None:
    sign_up(page, live_server.url, new_email())
    start_session(page)
    set_reload_marker(page)
    sent: list[str] = []

    def in_progress_once(route: Route) -> None:
        sent.append(route.request.post_data or "")
        if len(sent) == 1:  # the first answer: another attempt with this id is still running
            route.fulfill(
                status=409,
                headers={
                    "Content-Type": "text/html; charset=utf-8",
                    "Retry-After": "1",
                    "HX-Retarget": "#question-alert",
                    "HX-Reswap": "innerHTML",
                },
                body=STILL_PREPARING,
            )
        else:
            route.continue_()

    console_log.allow_status(409, "/questions/")
    page.route("**/questions/", in_progress_once)
    question_button(page).click()
    expect(page.locator("#question-alert [role=alert]")).to_contain_text("still being prepared")

    # No click: the page asks again after Retry-After, with the same request id.
    card = page.locator("#question-list > li.question-card#q-1")
    expect(card).to_be_visible()
    assert len(sent) == 2
    assert sent[1] == sent[0], "the retry did not reuse the request id"
    expect(page.locator("#token-balance")).to_have_text(tokens(9))  # charged once
    expect(page.locator("#question-alert [role=alert]")).to_have_count(0)
    assert_not_reloaded(page)
