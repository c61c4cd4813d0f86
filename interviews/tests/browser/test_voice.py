"""A spoken answer in Debian's Chromium with a fake microphone playing a technical answer spoken
by espeak-ng (made at test time, with a pause and filler words): record, the draft lands in the
answer box, the candidate corrects it and submits, the feedback shows how they spoke, and no
token is spent. The microphone-denied path leaves the typed text alone. axe audits every state
and the console must stay free of CSP violations (the fixtures fail the test otherwise)."""

import re
import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from interviews.models import Answer, Recording
from interviews.speech.engines import engine_reset
from interviews.tests.browser.conftest import (
    AXE_PATH,
    CHROMIUM_ARGS,
    DESKTOP,
    TIMEOUT_MS,
    chromium_path,
)
from interviews.tests.browser.test_candidate_flow import (
    ask_question,
    new_email,
    sign_up,
    start_session,
)
from interviews.tests.fake_openai import transcript
from ledger.selectors import account_problem_list

pytestmark = pytest.mark.browser

SPOKEN = "Um, so Reddis keeps the data in memory, uh, and writes an append only file."


@pytest.fixture(scope="module")
def spoken_wav(tmp_path_factory) -> Path:
    """A spoken technical answer: words, a 2.5 s pause, words (espeak-ng, 16 kHz mono)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (make test installs it when root)")
    folder = tmp_path_factory.mktemp("voice")
    parts = []
    for n, text in enumerate(
        ["Um, so, Redis keeps the data in memory.", "Uh, and it writes an append only file."]
    ):
        path = folder / f"part{n}.wav"
        subprocess.run([espeak, "-w", str(path), text], check=True)
        parts.append(path)
    frames, params = [], None
    for n, path in enumerate(parts):
        with wave.open(str(path)) as reader:
            params = reader.getparams()
            frames.append(reader.readframes(reader.getnframes()))
        if n == 0:  # the pause
            assert params is not None
            frames.append(b"\0" * params.sampwidth * int(params.framerate * 2.5))
    answer = folder / "answer.wav"
    with wave.open(str(answer), "wb") as writer:
        assert params is not None
        writer.setparams(params)
        writer.writeframes(b"".join(frames))
    return answer


def _launch(playwright: Playwright, *args: str) -> Browser:
    return playwright.chromium.launch(
        executable_path=chromium_path(), args=[*CHROMIUM_ARGS, *args], headless=True
    )


@pytest.fixture(scope="module")
def browser(playwright: Playwright, spoken_wav: Path) -> Iterator[Browser]:
    """Chromium whose microphone plays the spoken answer once (permission granted)."""
    browser = _launch(
        playwright,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={spoken_wav}%noloop",
    )
    yield browser
    browser.close()


@pytest.fixture(autouse=True)
def _voice(settings, live_server, fake_transcriber) -> Iterator[None]:
    """Bank questions; transcription by the fake OpenAI-compatible server; the task run at once
    (an immediate backend stands in for `make worker`)."""
    settings.QUESTION_SOURCE = "bank"
    settings.PREFETCH = False
    settings.TASKS = {
        "default": {
            "BACKEND": "django.tasks.backends.immediate.ImmediateBackend",
            "QUEUES": ["default", "prefetch", "speech"],
        }
    }
    engine_reset()
    yield
    engine_reset()


def test_record_correct_and_submit_a_spoken_answer(
    live_server, page: Page, settings, fake_transcriber, a11y
) -> None:
    fake_transcriber.enqueue(transcript(SPOKEN))
    page.context.grant_permissions(["microphone"], origin=live_server.url)
    sign_up(page, live_server.url, new_email("voice"))
    start_session(page, topic="Python")
    card = ask_question(page, 1)
    balance = page.locator("#token-balance").inner_text()
    recorder = card.locator("[data-recorder]")
    expect(recorder.get_by_text("then deleted")).to_be_visible()  # the privacy note
    button = recorder.locator("[data-record]")
    expect(button).to_be_visible()
    a11y.audit(page, "a question with the recorder")
    button.click()
    expect(button).to_have_attribute("aria-pressed", "true")
    page.wait_for_timeout(6500)  # the fake microphone plays the answer
    button.click()
    expect(button).to_have_attribute("aria-pressed", "false")
    expect(recorder.locator("[data-status]")).to_have_text(
        "Your transcript is in the answer box: correct it, then submit.", timeout=30_000
    )
    textarea = card.locator("textarea[name=text]")
    expect(textarea).to_have_value(re.compile("Reddis keeps the data"))
    # Audited from the top: focus scrolled the page, and the sticky header would be measured
    # as covering the buttons under it (axe's target-size), which no one sees once it moves.
    page.evaluate("window.scrollTo(0, 0)")
    a11y.audit(page, "the transcript in the answer box")

    # The candidate corrects the mis-heard term, then submits as usual.
    textarea.fill(textarea.input_value().replace("Reddis", "Redis"))
    card.get_by_role("button", name="Get feedback (free)").click()
    feedback = page.locator("#q-1").get_by_role("region", name="How you spoke")
    expect(feedback).to_be_visible()
    expect(feedback).to_contain_text("Pauses of 2 s or more")
    expect(feedback).to_contain_text("approximate")
    expect(page.locator("#token-balance")).to_have_text(balance)  # no token spent
    page.evaluate("window.scrollTo(0, 0)")
    a11y.audit(page, "feedback with how the candidate spoke")

    recording = Recording.objects.get()
    assert recording.audio is None
    assert (recording.delivery or {})["pause_count"] >= 1
    answer = Answer.objects.get()
    assert answer.recording_id == recording.pk
    assert (answer.transcript_changed or 0) > 0
    assert account_problem_list() == []


def test_a_blocked_microphone_says_so_and_leaves_the_typed_text(
    live_server, playwright: Playwright, console_log, a11y
) -> None:
    browser = _launch(playwright, "--deny-permission-prompts")
    try:
        context = browser.new_context(viewport=DESKTOP)
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(path=AXE_PATH)
        page = a11y.watch(console_log.watch(context.new_page()))
        sign_up(page, live_server.url, new_email("nomic"))
        start_session(page, topic="Python")
        card = ask_question(page, 1)
        textarea = card.locator("textarea[name=text]")
        textarea.fill("My typed answer so far.")
        recorder = card.locator("[data-recorder]")
        recorder.locator("[data-record]").click()
        expect(recorder.locator("[data-status]")).to_contain_text(
            "Your microphone is blocked or missing"
        )
        expect(textarea).to_have_value("My typed answer so far.")
        expect(recorder.locator("[data-record]")).to_have_attribute("aria-pressed", "false")
        page.evaluate("window.scrollTo(0, 0)")  # as above: the sticky header and target-size
        a11y.audit(page, "the microphone refused")
        context.close()
    finally:
        browser.close()
