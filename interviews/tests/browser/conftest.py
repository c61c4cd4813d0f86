"""Playwright fixtures for the browser tests: Debian's Chromium, one context per page.

Every page records its console errors and uncaught exceptions; a test that produced any
fails (the product promises a clean console).

Every page is also audited for accessibility with axe-core (vendored, see vendor/README.md)
against the WCAG 2.0, 2.1 and 2.2 A and AA rules: each time a page loads (at its own width),
whenever a test calls `a11y.audit(page, label)` (a state reached without a page load: an alert,
feedback, a new question; at desktop and phone widths), and at the end of every test for each
page still open (at both widths). Any violation fails the test with the rule, the element and
the page. New pages and states are covered by default: a test that visits them audits them.
"""

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Error,
    Page,
    Playwright,
    ViewportSize,
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
DESKTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=390, height=844)
AUDIT_VIEWPORTS = (DESKTOP, PHONE)

# axe-core, injected into every document by the test's browser context (an init script runs
# outside the page's CSP: the app's policy stays strict and is still enforced in the tests).
AXE_PATH = Path(__file__).parent / "vendor" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
AXE_RUN = """async (tags) => {
  // One run at a time per document: a page's load audit may overlap a test's own audit.
  const run = async () => {
    await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
    const result = await axe.run(document, {
      runOnly: {type: "tag", values: tags}, resultTypes: ["violations"],
    });
    return {width: window.innerWidth, violations: result.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => ({
        target: n.target.join(" "), summary: (n.failureSummary || "").replace(/\\s+/g, " "),
      })),
    }))};
  };
  const queued = (window.__axeQueue || Promise.resolve()).then(run, run);
  window.__axeQueue = queued.catch(() => null);
  return queued;
}"""


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


@dataclass
class A11yAudit:
    """axe-core's WCAG A/AA violations on every page a test opened.

    watch() audits a page at each load (at its current width); audit() audits the page as it
    is now, at desktop and phone widths (then restores its size); finish() audits every page
    still open. Violations are collected and fail the test at its end, one line per element.
    """

    violations: list[str] = field(default_factory=list)
    pages: list[Page] = field(default_factory=list)
    runs: int = 0
    reported: int = 0
    _seen: set[tuple[str, ...]] = field(default_factory=set)

    def watch(self, page: Page) -> Page:
        self.pages.append(page)
        page.on("load", lambda _page: self._on_load(page))
        return page

    def _on_load(self, page: Page) -> None:
        try:
            self._run(page, f"loaded {page.url}")
        except Error as exc:
            # The test moved on (another navigation, or the page closed) while axe ran: the
            # next document gets its own audit, and every open page one more at the end.
            if not _navigated_away(exc):
                self.violations.append(f"axe could not audit {page.url}: {exc}")

    def audit(self, page: Page, label: str, *, viewports=AUDIT_VIEWPORTS) -> None:
        """Audit `page` in its current state at each viewport (desktop and phone by default)."""
        original = page.viewport_size
        try:
            for viewport in viewports:
                if page.viewport_size != viewport:
                    page.set_viewport_size(viewport)
                self._run(page, label)
        finally:
            if original and page.viewport_size != original:
                page.set_viewport_size(original)

    def finish(self) -> None:
        for page in self.pages:
            if not page.is_closed():
                self.audit(page, f"end of test {page.url}")

    def _run(self, page: Page, label: str) -> None:
        self.runs += 1
        result = page.evaluate(AXE_RUN, WCAG_TAGS)
        width = result["width"]
        for violation in result["violations"]:
            for node in violation["nodes"]:
                key = (page.url, str(width), violation["id"], node["target"])
                if key in self._seen:
                    continue
                self._seen.add(key)
                self.violations.append(
                    f"{violation['id']} ({violation['impact']}) on {page.url} at {width}px "
                    f"[{label}]: {violation['help']}\n    element: {node['target']}\n"
                    f"    {node['summary']}"
                )

    def unreported(self) -> list[str]:
        new = self.violations[self.reported :]
        self.reported = len(self.violations)
        return new


def _navigated_away(exc: Error) -> bool:
    text = str(exc)
    return any(
        reason in text
        for reason in (
            "Execution context was destroyed",
            "Target page, context or browser has been closed",
            "Cannot find context",
            "navigat",
        )
    )


# Module scope, not session: while sync Playwright runs, its event loop counts as running in
# this thread, so later non-browser tests that call async_to_sync (the model client) would
# fail. A module's tests share one Chromium; it stops before the next test module.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    # Playwright's sync API runs an event loop in the test thread; while it does, Django would
    # refuse the ORM calls the tests make (creating a staff user, checking the question bank).
    # Only for these modules: elsewhere the check stays on and catches database access from
    # async code.
    unsafe = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            yield p
    finally:
        if unsafe is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = unsafe


@pytest.fixture(scope="module")
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
def a11y() -> A11yAudit:
    return A11yAudit()


@pytest.fixture
def new_page(
    browser: Browser, console_log: ConsoleLog, a11y: A11yAudit
) -> Iterator[Callable[..., Page]]:
    """new_page(viewport=...) -> a page in a fresh context (its own cookies), watched."""
    contexts = []

    def make(*, viewport: ViewportSize | None = None) -> Page:
        context = browser.new_context(viewport=viewport or DESKTOP)
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(path=AXE_PATH)
        contexts.append(context)
        return a11y.watch(console_log.watch(context.new_page()))

    yield make
    for context in contexts:
        context.close()
    late = console_log.unreported()
    if late:
        pytest.fail("Browser console errors:\n" + "\n".join(late), pytrace=False)
    late = a11y.unreported()
    if late:
        pytest.fail(_a11y_report(late), pytrace=False)


def _a11y_report(violations: list[str]) -> str:
    head = f"Accessibility (axe-core, WCAG A/AA): {len(violations)} violation(s):"
    return "\n".join([head, *violations])


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    return new_page()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Fail the test itself (so xfail markers apply) when its pages logged errors or, audited
    once more at its end, have accessibility violations."""
    log = getattr(item, "funcargs", {}).get("console_log")
    a11y = getattr(item, "funcargs", {}).get("a11y")
    try:
        result = yield
    except BaseException:
        if log is not None and (errors := log.unreported()):
            item.add_report_section("call", "browser console", "\n".join(errors))
        if a11y is not None and (violations := a11y.unreported()):
            item.add_report_section("call", "accessibility", "\n".join(violations))
        raise
    if a11y is not None:
        a11y.finish()
    if log is not None and (errors := log.unreported()):
        pytest.fail("Browser console errors:\n" + "\n".join(errors), pytrace=False)
    if a11y is not None and (violations := a11y.unreported()):
        pytest.fail(_a11y_report(violations), pytrace=False)
    return result
