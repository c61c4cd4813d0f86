"""Playwright fixtures for the browser tests: Debian's Chromium, one context per page.

Every page records its console errors and uncaught exceptions; a test that produced any
fails (the product promises a clean console).
"""

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

# Playwright's sync API runs an event loop in the test thread; without this Django refuses
# the ORM calls the tests make (creating a staff user, checking the question bank).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

# Every wait is bounded: auto-waiting assertions and actions give up after 10 s.
TIMEOUT_MS = 10_000
expect.set_options(timeout=TIMEOUT_MS)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if not path:
        pytest.fail(
            "Browser tests need Chromium: set CHROMIUM_PATH or install Debian's chromium "
            "(`playwright install` cannot download browsers here)."
        )
    return path


@dataclass
class ConsoleLog:
    """Console errors and uncaught page exceptions of every page a test opened.

    Chromium logs "Failed to load resource: ... status of 402" for every non-2xx response,
    including the refusals the product sends on purpose (402 out of tokens, 422 invalid
    answer, 404 someone else's session). A test that provokes one declares it with
    allow_status(); anything else fails the test.
    """

    errors: list[str] = field(default_factory=list)
    allowed: list[tuple[int, str]] = field(default_factory=list)
    reported: int = 0

    def watch(self, page: Page) -> Page:
        page.on("console", lambda msg: self._console(page, msg))
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror on {page.url}: {exc}"))
        return page

    def allow_status(self, status: int, path: str) -> None:
        """Expect Chromium's network error for a `status` response from a URL containing path."""
        self.allowed.append((status, path))

    def _console(self, page: Page, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        url = msg.location.get("url") or page.url
        for status, path in self.allowed:
            expected = f"Failed to load resource: the server responded with a status of {status} "
            if msg.text.startswith(expected) and path in url:
                return
        self.errors.append(f"console error on {url}: {msg.text}")

    def unreported(self) -> list[str]:
        new = self.errors[self.reported :]
        self.reported = len(self.errors)
        return new


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


@pytest.fixture
def console_log() -> ConsoleLog:
    return ConsoleLog()


@pytest.fixture
def new_page(browser: Browser, console_log: ConsoleLog) -> Iterator[Callable[..., Page]]:
    """new_page(viewport=...) -> a page in a fresh context (its own cookies), watched."""
    contexts = []

    def make(*, viewport: dict | None = None) -> Page:
        context = browser.new_context(viewport=viewport or DESKTOP)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return console_log.watch(context.new_page())

    yield make
    for context in contexts:
        context.close()
    late = console_log.unreported()
    if late:
        pytest.fail("Browser console errors:\n" + "\n".join(late), pytrace=False)


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    return new_page()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Fail the test itself (so xfail markers apply) when its pages logged errors."""
    log = getattr(item, "funcargs", {}).get("console_log")
    try:
        result = yield
    except BaseException:
        if log is not None and (errors := log.unreported()):
            item.add_report_section("call", "browser console", "\n".join(errors))
        raise
    if log is not None and (errors := log.unreported()):
        pytest.fail("Browser console errors:\n" + "\n".join(errors), pytrace=False)
    return result
