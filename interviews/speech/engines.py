"""Speech to text: one interface, several engines (like Django's cache and mail backends).

    from interviews.speech.engines import engine_get, transcription_prompt

    engine = engine_get()                 # the engine TRANSCRIBE_BACKEND names
    if engine.available:                  # else engine.reason says why, for the page
        transcript = await engine.atranscribe(
            wav=wav,                      # 16 kHz mono WAV (interviews.speech.audio)
            prompt=transcription_prompt(question_text=question.text, topic=topic.name),
        )
        transcript.text, transcript.engine, transcript.model, transcript.seconds

Engines, picked by the TRANSCRIBE_BACKEND setting:

- `openai`: `OpenAITranscriptionEngine`, the transcriptions endpoint of OpenAI or of any
  OpenAI-compatible server at TRANSCRIBE_BASE_URL (interviews.llm.transcription makes the call).
- `local`: `LocalTranscriptionEngine`, faster-whisper on this server's CPU (an optional install:
  `make voice`), WHISPER_MODEL loaded once per process, run on a thread.
- `off`: `DisabledTranscriptionEngine`, which transcribes nothing and says so.

Unset, it is `openai` when an API key (TRANSCRIBE_API_KEY or OPENAI_API_KEY) or a
TRANSCRIBE_BASE_URL is set, else `local`. A dotted path names an engine class of your own.

Every failure is a `TranscriptionFailed` whose `message` is the one sentence the page shows; its
`reason` (a Reason word, or "off") and `detail` are for the logs. The prompt carries a filler-style
opener and the technical terms of the question and its topic, never the question's key points:
the grader must not be fed the answer.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import io
import logging
import math
import os
import re
import threading
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils.module_loading import import_string

from interviews.exceptions import Reason
from interviews.llm import transcription
from interviews.llm.errors import LLMError

__all__ = [
    "ENGINES",
    "NEEDS_MAKE_VOICE",
    "OFF",
    "PROMPT_MAX_TOKENS",
    "PROMPT_OPENER",
    "TRANSCRIPTION_FAILED",
    "DisabledTranscriptionEngine",
    "LocalTranscriptionEngine",
    "OpenAITranscriptionEngine",
    "Transcript",
    "TranscriptionEngine",
    "TranscriptionFailed",
    "backend",
    "engine_get",
    "engine_reset",
    "transcription_prompt",
]

logger = logging.getLogger(__name__)

# TRANSCRIBE_BACKEND's values and the engine each names.
ENGINES: Final[dict[str, str]] = {
    "openai": "interviews.speech.engines.OpenAITranscriptionEngine",
    "local": "interviews.speech.engines.LocalTranscriptionEngine",
    "off": "interviews.speech.engines.DisabledTranscriptionEngine",
}

#: The one message a failed transcription shows, whatever went wrong.
TRANSCRIPTION_FAILED: Final[str] = (
    "We could not transcribe your recording: your typed text is untouched, and nothing was "
    "charged. Record again, or type your answer."
)
#: TranscriptionFailed's reason when the engine does not transcribe (turned off, not installed,
#: its model cannot be loaded); the transport's failures carry a Reason.
OFF: Final[str] = "off"
#: The local engine's reason when faster-whisper cannot be imported.
NEEDS_MAKE_VOICE: Final[str] = "local transcription needs `make voice`"


@dataclass(frozen=True, slots=True)
class Transcript:
    """What an engine heard: the raw text, the engine and model that wrote it, and how many
    seconds the transcription took."""

    text: str
    engine: str
    model: str
    seconds: float


class TranscriptionFailed(Exception):
    """No transcript: the candidate's typed text is untouched and nothing was charged.

    `reason`: one word for the logs, a Reason (timeout, connection, server_error, rate_limited,
    auth, bad_request, malformed, empty) or OFF (the engine does not transcribe: turned off, not
    installed, or its model cannot be loaded).
    `detail` explains it for the logs and never holds credentials, the prompt or the transcript.
    `message` is what the page says.
    """

    reason: Reason | str
    detail: str

    def __init__(self, reason: Reason | str, detail: str = "") -> None:
        self.reason = Reason(reason) if reason in Reason else reason
        self.detail = detail
        super().__init__(f"{self.reason}: {detail}" if detail else str(self.reason))

    @property
    def message(self) -> str:
        return TRANSCRIPTION_FAILED


class TranscriptionEngine:
    """The interface every engine implements."""

    # TRANSCRIBE_BACKEND's name for the engine (Transcript.engine).
    name: ClassVar[str] = ""
    # Whether a transcription is a model call, counted in the daily model budget.
    calls_model: ClassVar[bool] = False

    @property
    def available(self) -> bool:
        """Whether this engine transcribes at all (the page offers recording only then)."""
        raise NotImplementedError

    @property
    def reason(self) -> str:
        """Why it does not (empty when it does), for the page."""
        raise NotImplementedError

    @property
    def provider(self) -> str:
        """Who hears the recording, for the privacy note: "OpenAI", a self-hosted server's
        host, "this server"; empty when nobody does."""
        raise NotImplementedError

    @property
    def model(self) -> str:
        """The model that transcribes (Transcript.model)."""
        raise NotImplementedError

    async def atranscribe(self, *, wav: bytes, prompt: str) -> Transcript:
        """The transcript of `wav` (a WAV file, 16 kHz mono from interviews.speech.audio),
        guided by `prompt` (transcription_prompt's). Never blocks the event loop. Raises
        TranscriptionFailed; a transcript is never empty."""
        raise NotImplementedError

    def transcribe(self, *, wav: bytes, prompt: str) -> Transcript:
        """`atranscribe` for synchronous callers (a worker's task, a management command)."""
        return async_to_sync(self.atranscribe)(wav=wav, prompt=prompt)

    def _transcript(self, text: str, *, started: float) -> Transcript:
        text = text.strip()
        if not text:
            raise TranscriptionFailed(Reason.EMPTY, f"{self.name}: no words in the transcript")
        return Transcript(
            text=text,
            engine=self.name,
            model=self.model[:100],
            seconds=round(time.monotonic() - started, 3),
        )


class DisabledTranscriptionEngine(TranscriptionEngine):
    """Transcribes nothing, and says so: every call fails with the reason (no record button)."""

    name = "off"

    def __init__(self, reason: str = "voice answers are off") -> None:
        self._reason = reason

    @property
    def available(self) -> bool:
        return False

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def provider(self) -> str:
        return ""

    @property
    def model(self) -> str:
        return ""

    async def atranscribe(self, *, wav: bytes, prompt: str) -> Transcript:
        raise TranscriptionFailed(OFF, self._reason)


class OpenAITranscriptionEngine(TranscriptionEngine):
    """`audio.transcriptions` of OpenAI (TRANSCRIBE_MODEL, default gpt-transcribe) or of an
    OpenAI-compatible server at TRANSCRIBE_BASE_URL. Each transcription is a model call."""

    name = "openai"
    calls_model = True

    @property
    def available(self) -> bool:
        return not self.reason

    @property
    def reason(self) -> str:
        if transcription.api_key() or transcription.base_url():
            return ""
        return "voice answers need TRANSCRIBE_API_KEY (or OPENAI_API_KEY) or TRANSCRIBE_BASE_URL"

    @property
    def provider(self) -> str:
        return transcription.provider()

    @property
    def model(self) -> str:
        return str(settings.TRANSCRIBE_MODEL)

    async def atranscribe(self, *, wav: bytes, prompt: str) -> Transcript:
        started = time.monotonic()
        try:
            text = await transcription.atranscribe(
                wav=wav, model=self.model, prompt=prompt, language=_language()
            )
        except LLMError as exc:
            raise TranscriptionFailed(
                exc.reason, f"{exc.detail or '-'} ({self.provider}, model {self.model})"
            ) from exc
        return self._transcript(text, started=started)


# --- The local engine: faster-whisper on this server's CPU ---------------------------------------

_SAMPLE_RATE: Final[int] = 16_000
_SAMPLE_WIDTH: Final[int] = 2
#: Beam search as Whisper's own default: greedy decoding mishears more technical terms.
LOCAL_BEAM_SIZE: Final[int] = 5
# A model that failed to load is tried again after this long (a fetch may fail for a while).
_LOAD_RETRY_SECONDS: Final[float] = 300.0

_model_lock = threading.Lock()
_models: dict[str, Any] = {}  # WHISPER_MODEL -> faster_whisper.WhisperModel, once per process
_load_failures: dict[str, tuple[float, str]] = {}  # WHISPER_MODEL -> (when, why)
_import_failed = False
# One transcription at a time per process: CTranslate2 already uses every core it is given.
_run_lock = threading.Lock()


_found: dict[str, bool] = {}  # module name -> importable (every question card asks)


def _importable(name: str) -> bool:
    """Whether `name` can be imported, without importing it (the web processes only ask; the
    answer is kept until engine_reset)."""
    if name not in _found:
        try:
            _found[name] = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
            _found[name] = False
    return _found[name]


def _faster_whisper() -> Any:
    """The faster_whisper module (imported at the first transcription, in the worker)."""
    global _import_failed
    try:
        return importlib.import_module("faster_whisper")
    except ImportError as exc:
        _import_failed = True
        logger.warning("Local transcription is off: %s (%s)", NEEDS_MAKE_VOICE, exc)
        raise TranscriptionFailed(OFF, f"{NEEDS_MAKE_VOICE} ({exc})") from exc


def _cpu_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _whisper_model(name: str) -> Any:
    """WHISPER_MODEL `name` (a model name, fetched on first use, or a model directory), loaded
    once per process: int8 on the CPU."""
    with _model_lock:
        model = _models.get(name)
        if model is not None:
            return model
        failed = _load_failures.get(name)
        if failed is not None and time.monotonic() - failed[0] < _LOAD_RETRY_SECONDS:
            raise TranscriptionFailed(OFF, failed[1])
        faster_whisper = _faster_whisper()
        started = time.monotonic()
        try:
            model = faster_whisper.WhisperModel(
                name, device="cpu", compute_type="int8", cpu_threads=_cpu_threads()
            )
        except Exception as exc:  # a failed fetch, a missing or broken model directory
            why = (
                f"WHISPER_MODEL {name!r} cannot be loaded ({type(exc).__name__}): a model name "
                "is fetched on first use, which needs network; else name a model directory"
            )
            _load_failures[name] = (time.monotonic(), why)
            logger.warning("Local transcription failed: %s", why, exc_info=True)
            raise TranscriptionFailed(OFF, why) from exc
        _load_failures.pop(name, None)
        logger.info("Loaded WHISPER_MODEL %r in %.1fs", name, time.monotonic() - started)
        _models[name] = model
        return model


def _samples(wav: bytes) -> Any:
    """The WAV's samples as faster-whisper takes them: float32 in [-1, 1], mono, 16 kHz (what
    interviews.speech.audio makes; another rate is resampled, channels are averaged). Decoded
    here rather than by faster-whisper, whose PyAV call does not fit the PyAV we pin."""
    try:
        numpy = importlib.import_module("numpy")  # installed with faster-whisper
    except ImportError as exc:
        raise TranscriptionFailed(OFF, f"{NEEDS_MAKE_VOICE} ({exc})") from exc
    try:
        with wave.open(io.BytesIO(wav)) as reader:
            channels, width, rate = (
                reader.getnchannels(),
                reader.getsampwidth(),
                reader.getframerate(),
            )
            frames = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError) as exc:
        raise TranscriptionFailed(Reason.BAD_REQUEST, f"not a WAV file ({exc})") from exc
    if width != _SAMPLE_WIDTH or not frames:
        raise TranscriptionFailed(Reason.BAD_REQUEST, f"a WAV of {width}-byte samples, or empty")
    samples = numpy.frombuffer(frames, dtype="<i2").astype(numpy.float32) / 32768.0
    if channels > 1:
        samples = samples[: len(samples) // channels * channels]
        samples = samples.reshape(-1, channels).mean(axis=1, dtype=numpy.float32)
    if rate != _SAMPLE_RATE:
        duration = len(samples) / rate
        times = numpy.arange(round(duration * _SAMPLE_RATE), dtype=numpy.float64) / _SAMPLE_RATE
        source = numpy.arange(len(samples), dtype=numpy.float64) / rate
        samples = numpy.interp(times, source, samples).astype(numpy.float32)
    return samples


def _local_transcribe(*, wav: bytes, prompt: str, model_name: str, language: str | None) -> str:
    """The blocking part, on a worker thread: load the model (once), then transcribe."""
    model = _whisper_model(model_name)
    samples = _samples(wav)
    with _run_lock:
        try:
            # The segments are a generator: the work happens while they are read.
            segments, _info = model.transcribe(
                samples,
                language=language,
                initial_prompt=prompt or None,
                beam_size=LOCAL_BEAM_SIZE,
                vad_filter=True,
            )
            return " ".join(text for segment in segments if (text := str(segment.text).strip()))
        except Exception as exc:
            logger.warning("Local transcription failed", exc_info=True)
            raise TranscriptionFailed(Reason.SERVER_ERROR, type(exc).__name__) from exc


class LocalTranscriptionEngine(TranscriptionEngine):
    """faster-whisper (CTranslate2) on this server's CPU with WHISPER_MODEL, int8: nothing leaves
    the server and no model call is counted. An optional install (`make voice`)."""

    name = "local"

    @property
    def available(self) -> bool:
        return not self.reason

    @property
    def reason(self) -> str:
        if _import_failed or not (_importable("faster_whisper") and _importable("ctranslate2")):
            return NEEDS_MAKE_VOICE
        return ""

    @property
    def provider(self) -> str:
        return "this server"

    @property
    def model(self) -> str:
        return str(settings.WHISPER_MODEL)

    async def atranscribe(self, *, wav: bytes, prompt: str) -> Transcript:
        started = time.monotonic()
        if not self.available:
            raise TranscriptionFailed(OFF, self.reason)
        text = await asyncio.to_thread(
            _local_transcribe,
            wav=wav,
            prompt=prompt,
            model_name=self.model,
            language=_language(),
        )
        return self._transcript(text, started=started)


def _language() -> str | None:
    return str(settings.TRANSCRIBE_LANGUAGE or "").strip() or None


# --- Choosing the engine -------------------------------------------------------------------------


def backend() -> str:
    """TRANSCRIBE_BACKEND, or the default: `openai` when an API key (TRANSCRIBE_API_KEY or
    OPENAI_API_KEY) or a TRANSCRIBE_BASE_URL is set, else `local`."""
    configured = str(getattr(settings, "TRANSCRIBE_BACKEND", "") or "").strip()
    if configured:
        return configured
    if settings.TRANSCRIBE_API_KEY or settings.OPENAI_API_KEY or settings.TRANSCRIBE_BASE_URL:
        return "openai"
    return "local"


_engines: dict[str, TranscriptionEngine] = {}
_engines_lock = threading.Lock()


def _engine_build(name: str) -> TranscriptionEngine:
    try:
        engine_class = import_string(ENGINES.get(name, name))
    except ImportError as error:
        reason = f"TRANSCRIBE_BACKEND={name!r} cannot be loaded ({error})"
        logger.warning("Voice answers are off: %s", reason)
        return DisabledTranscriptionEngine(reason)
    engine: TranscriptionEngine = engine_class()
    return engine


def engine_get() -> TranscriptionEngine:
    """The engine TRANSCRIBE_BACKEND names, made once per process (the engines read the other
    settings when used, so a change of them is seen at once)."""
    name = backend()
    engine = _engines.get(name)
    if engine is None:
        with _engines_lock:
            engine = _engines.get(name)
            if engine is None:
                engine = _engines[name] = _engine_build(name)
    return engine


def engine_reset() -> None:
    """Forget the engines made (tests), and the local engine's failures to import or load; the
    loaded models stay."""
    global _import_failed
    _found.clear()
    with _engines_lock:
        _engines.clear()
    with _model_lock:
        _load_failures.clear()
    _import_failed = False


# --- The prompt ----------------------------------------------------------------------------------

#: How a transcription prompt starts: Whisper writes the fillers it hears ("um", "uh") only when
#: the text before the audio has some, and the delivery numbers count them.
PROMPT_OPENER: Final[str] = "Um, so, uh, I think... "
#: Whisper reads the last 224 tokens of a prompt; a margin for tokens our estimate misses.
PROMPT_MAX_TOKENS: Final[int] = 200
_TERM_MAX_CHARS: Final[int] = 40

# Acronyms written in lower case in a question, spelt as they are said.
_ACRONYMS: Final[dict[str, str]] = {
    word.lower(): word
    for word in (
        "API APIs CSS CORS CSRF DNS DOM gRPC GraphQL HTML HTTP HTTPS JSON JSX JWT MVCC NoSQL "
        "OAuth ORM SDK SQL TCP TLS TTL UDP URL UUID WAL XML XSS YAML"
    ).split()
}
# Capitalised at the start of a sentence for grammar, not because they name a technology.
_SENTENCE_STARTERS: Final[frozenset[str]] = frozenset(
    """a after also an and are as assume assuming at before briefly but can compare consider
    could define describe design discuss do does each explain finally first for give given here
    how however i identify if imagine implement in is it let list many most name next now of
    often on once or our outline please provide say should show some sometimes suppose suggest
    tell that the then there these they think this those to usually using walk we what when
    where which while who why will with without would write yes you your
    """.split()
)
_NOT_TERMS: Final[frozenset[str]] = frozenset({"e.g", "i.e", "etc", "vs", "and/or", "a.k.a", "ok"})
# Quotes (straight and curly), brackets and punctuation around a word.
_EDGE_PUNCTUATION: Final[str] = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb()[]{}<>,;:!?*"
_APOSTROPHES: Final[str] = "'\u2019"
# What may close a sentence after its full stop: quotes, brackets, emphasis.
_CLOSERS: Final[str] = "\"'`\u201d\u2019\u00bb)]}*"
_ORDINAL: Final = re.compile(r"\d+(st|nd|rd|th)", re.IGNORECASE)


def _clean(word: str) -> str:
    word = word.strip(_EDGE_PUNCTUATION)
    word = word.removesuffix("()").rstrip(".").strip(_EDGE_PUNCTUATION)
    for apostrophe in _APOSTROPHES:
        word = word.removesuffix(f"{apostrophe}s")  # React's
    return word


def _looks_technical(word: str, *, starts_sentence: bool) -> str | None:
    """The spelling to put in the prompt when `word` looks like a technical term, else None:
    a capitalised name, a word with digits, dots, slashes or underscores, camelCase, an
    acronym."""
    if len(word) < 2 or not any(ch.isalpha() for ch in word):
        return None
    if any(ch in _APOSTROPHES or ch == "(" for ch in word):  # I'm, don't; O(n)
        return None
    lowered = word.lower()
    if lowered in _NOT_TERMS or _ORDINAL.fullmatch(word):
        return None
    if lowered in _ACRONYMS and not word[0].isupper():
        return _ACRONYMS[lowered]
    if any(ch.isdigit() for ch in word) or any(ch in "+#" for ch in word):
        return word  # HTTP/2, S3, OAuth2, ES2015, C++, C#
    if re.search(r"\w[./_]\w", word):
        return word  # Node.js, React.memo, TCP/IP, snake_case
    if re.fullmatch(r"[A-Z]{2,}s?", word) or re.search(r"[a-z][A-Z]", word):
        return word  # SQL, APIs; useEffect, PostgreSQL, iOS
    # A name mid-sentence (React, Redis, Kafka); at a sentence's start only when it is not one of
    # the words questions start with.
    capitalised = word[0].isupper() and word[1:].islower()
    if capitalised and (not starts_sentence or lowered not in _SENTENCE_STARTERS):
        return word
    return None


def _question_terms(text: str) -> list[str]:
    terms: list[str] = []
    starts_sentence = True
    for raw in text.split():
        word = _clean(raw)
        if word and (term := _looks_technical(word, starts_sentence=starts_sentence)):
            terms.append(term)
        starts_sentence = raw.rstrip(_CLOSERS).endswith((".", "?", "!", ":"))
    return terms


def _approx_tokens(text: str) -> int:
    """A generous estimate of Whisper's token count: technical words split into short pieces."""
    return sum(
        math.ceil(len(piece) / 3) for piece in re.findall(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]", text)
    )


def transcription_prompt(*, question_text: str, topic: str, terms: Sequence[str] = ()) -> str:
    """The prompt a transcription is guided by: PROMPT_OPENER (so that fillers are written),
    then the topic and the technical terms of the question and `terms` (the topic's, say), so
    that "Redis" or "useEffect" are spelt right; at most PROMPT_MAX_TOKENS (estimated), the first
    terms kept.

    Never pass the question's key points, its outline or a model answer: the transcript would
    drift towards the answer, and the grader would be fed it.
    """
    candidates = [" ".join(topic.split()), *_question_terms(question_text)]
    candidates += [" ".join(term.split()) for term in terms]
    chosen: list[str] = []
    seen: set[str] = set()
    budget = PROMPT_MAX_TOKENS - _approx_tokens(PROMPT_OPENER) - 1
    for term in candidates:
        term = "".join(ch for ch in term if ch.isprintable())
        if not term or len(term) > _TERM_MAX_CHARS or term.lower() in seen:
            continue
        cost = _approx_tokens(term) + 1  # and its comma
        if cost > budget:
            break
        budget -= cost
        seen.add(term.lower())
        chosen.append(term)
    if not chosen:
        return PROMPT_OPENER.strip()
    return f"{PROMPT_OPENER}{', '.join(chosen)}."
