"""Speech to text over the OpenAI API: `client.audio.transcriptions.create` on the official client.

The server is TRANSCRIBE_BASE_URL (default: OPENAI_BASE_URL, then OpenAI itself), with
TRANSCRIBE_API_KEY (default: OPENAI_API_KEY), so any OpenAI-compatible transcription server
(speaches / faster-whisper-server, whisper.cpp's server, LocalAI, vLLM) works unchanged. The
engine that uses this is `interviews.speech.engines.OpenAITranscriptionEngine`; this module is
here because interviews.llm is the only package that imports `openai`.

One client per process (and configuration): an async client belongs to the event loop it first
ran in, and the task workers run each task in an event loop of its own, so the calls run on an
event loop kept by this module in a thread of its own, where the client and its connection pool
live for the life of the process. Each attempt may take TRANSCRIBE_TIMEOUT_SECONDS, the client
retries transport failures MAX_RETRIES times, the whole call is bounded on the wall clock, and
every failure is raised as an LLMError carrying a Reason (as in interviews.llm.transport).
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import threading
import time
from typing import Final
from urllib.parse import urlsplit

import openai
from django.conf import settings

from config.metrics import model_call_count
from interviews.budget import MAX_BACKOFF_SECONDS
from interviews.exceptions import Reason
from interviews.llm.errors import LLMError

__all__ = [
    "MAX_RETRIES",
    "MAX_TRANSCRIPT_CHARS",
    "api_key",
    "atranscribe",
    "base_url",
    "clients",
    "provider",
]

#: Retries the client makes after a timeout, a refused connection, a 429 or a 5xx.
MAX_RETRIES: Final[int] = 1
#: A longer transcript is not what a spoken answer of TRANSCRIBE_MAX_SECONDS gives: garbage.
MAX_TRANSCRIPT_CHARS: Final[int] = 20_000
# Placeholder key for self-hosted servers that ignore authentication (the client insists on one).
_LOCAL_API_KEY: Final[str] = "not-needed"
# The most of a server's error message kept in LLMError.detail (it names what was unsupported).
_MESSAGE_CHARS: Final[int] = 160
_OPENAI_HOST: Final[str] = "api.openai.com"


# --- Settings ------------------------------------------------------------------------------------


def base_url() -> str | None:
    """The server's base URL: TRANSCRIBE_BASE_URL, else OPENAI_BASE_URL; None means OpenAI."""
    return settings.TRANSCRIBE_BASE_URL or settings.OPENAI_BASE_URL or None


def api_key() -> str:
    """TRANSCRIBE_API_KEY, else OPENAI_API_KEY; "" when neither is set."""
    return str(settings.TRANSCRIBE_API_KEY or settings.OPENAI_API_KEY or "")


def provider() -> str:
    """Who hears the recording, for the privacy note: "OpenAI", or a self-hosted server's host."""
    url = base_url()
    host = urlsplit(url).hostname if url else None
    if not host or host == _OPENAI_HOST:
        return "OpenAI"
    return host


# --- The process's client, on the process's event loop -------------------------------------------

type _Config = tuple[str, str | None, float]  # api key, base URL, timeout per attempt


def _config() -> _Config:
    """The client's configuration from the current settings (read in the caller's thread).
    Raises LLMError (auth) when there is neither a key nor a base URL."""
    url = base_url()
    key = api_key() or (_LOCAL_API_KEY if url else "")
    if not key:
        raise LLMError(Reason.AUTH, "no TRANSCRIBE_API_KEY or OPENAI_API_KEY, and no base URL")
    return key, url, float(settings.TRANSCRIBE_TIMEOUT_SECONDS)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context per process: loading the CA store costs tens of milliseconds."""
    return ssl.create_default_context()


_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None
_loop_pid = 0
_loop_lock = threading.Lock()
# Touched only on _loop's thread.
_clients: dict[_Config, openai.AsyncOpenAI] = {}


def _client_loop() -> asyncio.AbstractEventLoop:
    """The event loop the clients live on, started with the first call (a daemon thread: it
    never holds the process up when it exits), and again in a forked child, which has no thread
    running it."""
    global _loop, _loop_thread, _loop_pid
    with _loop_lock:
        alive = _loop_thread is not None and _loop_thread.is_alive()
        if _loop is None or _loop_pid != os.getpid() or not alive:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="transcription-client", daemon=True
            )
            _clients.clear()  # they belonged to the old loop
            thread.start()
            _loop, _loop_thread, _loop_pid = loop, thread, os.getpid()
        return _loop


def _client(config: _Config) -> openai.AsyncOpenAI:
    """The client for `config`, made at its first use (on _loop's thread, like every use)."""
    client = _clients.get(config)
    if client is None:
        api_key, url, timeout = config
        client = _clients[config] = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=url,
            timeout=timeout,
            max_retries=MAX_RETRIES,
            http_client=openai.DefaultAsyncHttpxClient(verify=_ssl_context()),
        )
    return client


def clients() -> int:
    """How many clients this process has made (one per configuration used)."""
    return len(_clients)


# --- The call ------------------------------------------------------------------------------------


def _wall_clock_seconds(timeout: float) -> float:
    """The longest the whole call may take: every attempt's timeout and the pauses between them
    (httpx's timeouts bound each read, so a server trickling bytes would never trip them)."""
    return timeout * (MAX_RETRIES + 1) + MAX_BACKOFF_SECONDS * MAX_RETRIES


def _server_message(exc: openai.APIStatusError) -> str:
    """The first words of the server's error message: what it found unsupported, say."""
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    text = " ".join(str(message or "").split())  # not exc.message: it holds any HTML error page
    return text[:_MESSAGE_CHARS]


def _failure(exc: Exception) -> LLMError:
    """The LLMError for an exception raised by the client (after its own retries)."""
    # APITimeoutError subclasses APIConnectionError: it must come first.
    if isinstance(exc, openai.APITimeoutError):
        return LLMError(Reason.TIMEOUT, "no answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return LLMError(Reason.CONNECTION, "cannot reach the transcription server")
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        message = _server_message(exc)
        detail = f"HTTP {code}: {message}" if message else f"HTTP {code}"
        if code == 429:
            return LLMError(Reason.RATE_LIMITED, detail)
        if code >= 500:
            return LLMError(Reason.SERVER_ERROR, detail)
        if code in (401, 403):
            return LLMError(Reason.AUTH, detail)
        # 400 (an unsupported model, format or parameter), 404 (no such endpoint), 413...
        return LLMError(Reason.BAD_REQUEST, detail)
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        # ValueError: a 200 whose body claims to be JSON and is not.
        return LLMError(Reason.MALFORMED, "unexpected response body")
    return LLMError(Reason.SERVER_ERROR, type(exc).__name__)


async def atranscribe(*, wav: bytes, model: str, prompt: str, language: str | None = None) -> str:
    """The text of the speech in `wav` (a WAV file's bytes), transcribed by `model`.

    `prompt` guides spelling and style (never put the answer in it); `language` is an ISO-639-1
    code, or None to let the model detect it. Runs on the process's client loop, whatever loop
    awaits it (cancelling the caller cancels the request). Raises LLMError: timeout,
    connection, rate_limited, server_error, auth, bad_request (the server refused the request:
    an unsupported model, format or parameter), malformed (not the JSON asked for, or more than
    MAX_TRANSCRIPT_CHARS of text) or empty (no text).
    """
    config = _config()
    loop = _client_loop()
    call = _transcribe(config, wav=wav, model=model, prompt=prompt, language=language)
    started = time.monotonic()
    try:
        text = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, loop))
    except LLMError as exc:
        model_call_count(
            purpose="transcription", outcome=exc.reason, seconds=time.monotonic() - started
        )
        raise
    model_call_count(purpose="transcription", outcome="ok", seconds=time.monotonic() - started)
    return text


async def _transcribe(
    config: _Config, *, wav: bytes, model: str, prompt: str, language: str | None
) -> str:
    client = _client(config)
    try:
        async with asyncio.timeout(_wall_clock_seconds(config[2])):
            result = await client.audio.transcriptions.create(
                file=("answer.wav", wav, "audio/wav"),
                model=model,
                prompt=prompt or openai.omit,
                response_format="json",
                language=language or openai.omit,
            )
    except (openai.OpenAIError, ValueError) as exc:
        raise _failure(exc) from exc
    except TimeoutError as exc:
        raise LLMError(Reason.TIMEOUT, "no complete answer in time") from exc
    # A server that ignores response_format may answer plain text, which the client hands back
    # as a str; a JSON object without "text" is no transcription either.
    text = getattr(result, "text", None)
    if not isinstance(text, str):
        raise LLMError(Reason.MALFORMED, "the reply has no text")
    text = text.strip()
    if not text:
        raise LLMError(Reason.EMPTY, "the reply's text is empty")
    if len(text) > MAX_TRANSCRIPT_CHARS:
        raise LLMError(Reason.MALFORMED, f"the reply's text is {len(text):,} characters long")
    return text
