"""A fake OpenAI-compatible server for tests: real HTTP on loopback, scriptable replies.

The real `openai` client talks to it exactly as it would to api.openai.com or a local model
server, so tests exercise timeouts, retries and parsing end to end.

    def test_something(fake_openai):            # the fixture points the settings at the server
        fake_openai.enqueue(status(500), ok(question_payload(text="What is JSX?")))
        ...
        assert fake_openai.requests == 2 and fake_openai.successes == 1

Use the fixture from another test module with
`from interviews.tests.fake_openai import fake_openai  # noqa: F401`.

`pause()` holds every request received from then on (counted at once in `requests`) until
`resume()`: a call that is certainly in flight, with no timing involved.

Behaviours (one per request, from the queue, then `default`): `ok(payload)`, `status(code)`,
`rate_limited(retry_after=1)`, `hang(seconds)`, `malformed()`, `content(text)`, `refusal()`,
`empty()`, `no_choices()`. `refused_base_url()` gives a base URL where nothing listens.

It also serves speech to text, `POST /v1/audio/transcriptions` (multipart), from the same queue:
`transcript(text)` answers {"text": text}, `unsupported(message)` a 400, `empty()` an empty text,
`malformed()` a body that is not JSON, and `hang`, `status` and `rate_limited` as above; `ok(...)`
(the default) answers DEFAULT_TRANSCRIPT. `received_transcriptions` holds the multipart fields of
each request: model, prompt, response_format, language... and "file" as {"filename",
"content_type", "size", "sha256"}. The `fake_transcriber` fixture points the transcription
engine at the server (TRANSCRIBE_BACKEND=openai).
"""

from __future__ import annotations

import hashlib
import json
import re
import select
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import pytest
from pytest_django.fixtures import Settings

__all__ = [
    "DEFAULT_TRANSCRIPT",
    "Behaviour",
    "FakeOpenAI",
    "content",
    "empty",
    "fake_openai",
    "fake_transcriber",
    "feedback_payload",
    "hang",
    "malformed",
    "no_choices",
    "ok",
    "question_payload",
    "rate_limited",
    "refusal",
    "refused_base_url",
    "status",
    "transcript",
    "unsupported",
]

Kind = Literal[
    "ok",
    "status",
    "rate_limited",
    "hang",
    "malformed",
    "content",
    "refusal",
    "empty",
    "no_choices",
    "trickle",
    "transcript",
    "unsupported",
]


@dataclass(frozen=True)
class Behaviour:
    """How the server answers one request."""

    kind: Kind
    payload: dict[str, Any] | None = None  # ok: the JSON object put in message.content
    code: int = 200  # status: the HTTP status
    retry_after: float | None = None  # rate_limited: the Retry-After header, in seconds
    seconds: float = 0.0  # hang: how long to wait before answering
    then: Behaviour | None = None  # hang: the answer sent afterwards (if the client still waits)
    model: str | None = None  # ok: response.model (default: the model the request named)
    text: str = ""  # content: message.content, verbatim; transcript: the text; unsupported: why


def ok(payload: dict[str, Any], *, model: str | None = None) -> Behaviour:
    """200 with message.content = json.dumps(payload)."""
    return Behaviour("ok", payload=payload, model=model)


def status(code: int) -> Behaviour:
    """An HTTP error status with an OpenAI-style error body."""
    return Behaviour("status", code=code)


def rate_limited(retry_after: float | None = 1) -> Behaviour:
    """429 with a Retry-After header (none if retry_after is None)."""
    return Behaviour("rate_limited", code=429, retry_after=retry_after)


def hang(seconds: float, then: Behaviour | None = None) -> Behaviour:
    """Wait `seconds` (cut short when the server stops), then answer `then` (a valid question
    by default) unless the client has hung up meanwhile."""
    return Behaviour("hang", seconds=seconds, then=then)


def trickle(seconds: float) -> Behaviour:
    """200 with a valid question whose body is sent a byte at a time over about `seconds`:
    each read is quick, so only a wall-clock deadline stops the client waiting."""
    return Behaviour("trickle", seconds=seconds)


def malformed() -> Behaviour:
    """200 whose message.content is not JSON."""
    return Behaviour("malformed")


def content(text: str) -> Behaviour:
    """200 whose message.content is exactly `text` (counted as a success)."""
    return Behaviour("content", text=text)


def refusal() -> Behaviour:
    """200 whose message carries a refusal and no content."""
    return Behaviour("refusal")


def empty() -> Behaviour:
    """200 whose message.content is the empty string."""
    return Behaviour("empty")


def no_choices() -> Behaviour:
    """200 with an empty `choices` list."""
    return Behaviour("no_choices")


DEFAULT_TRANSCRIPT = (
    "Um, so, uh, I think React re-renders a component when its state or props change."
)


def transcript(text: str = DEFAULT_TRANSCRIPT) -> Behaviour:
    """A transcription: 200 with {"text": text} (counted as a success when `text` is not blank)."""
    return Behaviour("transcript", text=text)


def unsupported(message: str = "Unsupported value: this model does not support that.") -> Behaviour:
    """400 with an OpenAI-style error saying what the server does not support."""
    return Behaviour("unsupported", code=400, text=message)


def question_payload(
    text: str = "How does React decide when to re-render a component?",
    difficulty: str = "medium",
    **overrides: Any,
) -> dict[str, Any]:
    """A valid question object, as the model would return it."""
    return {
        "text": text,
        "key_points": [
            "State or prop changes schedule a render",
            "A parent's render re-renders its children by default",
            "memo, useMemo and useCallback can skip work",
        ],
        "outline": (
            "React re-renders a component when its state changes or its parent re-renders. "
            "Memoisation lets you skip renders whose inputs did not change."
        ),
        "difficulty": difficulty,
        **overrides,
    }


def feedback_payload(score: int = 7, **overrides: Any) -> dict[str, Any]:
    """A valid feedback object, as the model would return it."""
    return {
        "score": score,
        "strengths": ["Explains that state changes trigger renders"],
        "gaps": ["Does not mention memoisation"],
        "outline": "A strong answer names the triggers of a render and how to avoid needless ones.",
        **overrides,
    }


def refused_base_url() -> str:
    """A base URL on loopback where nothing listens: connecting is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    queue: deque[Behaviour] = field(default_factory=deque)
    requests: int = 0
    successes: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    transcriptions: list[dict[str, Any]] = field(default_factory=list)


class FakeOpenAI:
    """The server. `start()` it (or use it as a context manager), then point a client at
    `base_url`. Counters are thread-safe."""

    def __init__(self, *, default: Behaviour | None = None, latency: float = 0.0) -> None:
        self.default: Behaviour = default or ok(question_payload())
        self.latency = latency  # seconds added before every reply
        self._state = _State()
        self._stopping = threading.Event()
        self._resumed = threading.Event()
        self._resumed.set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting and inspection

    def enqueue(self, *behaviours: Behaviour) -> None:
        """Answer the next requests with these, in order; `default` afterwards."""
        with self._state.lock:
            self._state.queue.extend(behaviours)

    def pause(self) -> None:
        """Hold the requests received from now on until `resume()` (or `stop()`)."""
        self._resumed.clear()

    def resume(self) -> None:
        self._resumed.set()

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> None:
        """Block until `count` requests were received (a wait for the server's side of a race,
        not a measurement); AssertionError if they never come."""
        deadline = time.monotonic() + timeout
        while self.requests < count:
            assert time.monotonic() < deadline, f"{self.requests} requests, expected {count}"
            time.sleep(0.01)

    @property
    def requests(self) -> int:
        """Requests received, chat completions and transcriptions (whatever the answer)."""
        with self._state.lock:
            return self._state.requests

    @property
    def successes(self) -> int:
        """200 answers with valid JSON content (or a transcript's text) actually sent to a client
        still listening."""
        with self._state.lock:
            return self._state.successes

    @property
    def received_bodies(self) -> list[dict[str, Any]]:
        """The parsed JSON bodies of the requests received, oldest first."""
        with self._state.lock:
            return list(self._state.bodies)

    @property
    def received_transcriptions(self) -> list[dict[str, Any]]:
        """The multipart fields of the transcription requests received, oldest first: text
        fields as str, the file as {"filename", "content_type", "size", "sha256"}."""
        with self._state.lock:
            return list(self._state.transcriptions)

    @property
    def received_headers(self) -> list[dict[str, str]]:
        """The request headers (names lower-cased), oldest first."""
        with self._state.lock:
            return list(self._state.headers)

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    # --- lifecycle

    def start(self) -> FakeOpenAI:
        handler = type("Handler", (_Handler,), {"fake": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving. Hanging requests are cut short: nothing blocks for long."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- used by the handler

    def _record(
        self, body: dict[str, Any], headers: dict[str, str], *, transcription: bool = False
    ) -> Behaviour:
        with self._state.lock:
            self._state.requests += 1
            (self._state.transcriptions if transcription else self._state.bodies).append(body)
            self._state.headers.append(headers)
            return self._state.queue.popleft() if self._state.queue else self.default

    def _count_success(self, delta: int = 1) -> None:
        with self._state.lock:
            self._state.successes += delta

    def _wait_resumed(self) -> bool:
        """Wait while paused; False if the server is stopping."""
        while not self._resumed.wait(0.01):
            if self._stopping.is_set():
                return False
        return not self._stopping.is_set()

    def _wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; False if the server is stopping."""
        return not self._stopping.wait(seconds) if seconds > 0 else not self._stopping.is_set()


def _completion(*, model: str, content: str | None, refusal_text: str | None = None) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal_text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 50, "total_tokens": 100},
    }


def _error(message: str, error_type: str) -> dict:
    return {"error": {"message": message, "type": error_type, "param": None, "code": None}}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI  # set on the subclass made by FakeOpenAI.start()
    server_version = "FakeOpenAI/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/").endswith("/audio/transcriptions"):
            self._transcription(raw)
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_unparsable": raw.decode("utf-8", "replace")}
        headers = {name.lower(): value for name, value in self.headers.items()}
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, _error(f"Unknown path {self.path}", "invalid_request_error"))
            return
        behaviour = self.fake._record(body, headers)
        if not self.fake._wait_resumed() or not self.fake._wait(self.fake.latency):
            return
        model = str(body.get("model") or "fake-model")
        self._answer(behaviour, model)

    def _answer(self, behaviour: Behaviour, model: str) -> None:
        match behaviour.kind:
            case "ok":
                content = json.dumps(behaviour.payload)
                body = _completion(model=behaviour.model or model, content=content)
                self._send(200, body, success=True)
            case "status":
                error_type = "server_error" if behaviour.code >= 500 else "invalid_request_error"
                self._send(behaviour.code, _error("Fake failure", error_type))
            case "rate_limited":
                extra = {}
                if behaviour.retry_after is not None:
                    extra["Retry-After"] = f"{behaviour.retry_after:g}"
                body = _error("Rate limit reached", "requests")
                self._send(429, body, extra)
            case "hang":
                if self.fake._wait(behaviour.seconds) and not self._peer_gone():
                    self._answer(behaviour.then or ok(question_payload()), model)
            case "content":
                body = _completion(model=model, content=behaviour.text)
                self._send(200, body, success=True)
            case "malformed":
                self._send(200, _completion(model=model, content="not json {"))
            case "refusal":
                body = _completion(model=model, content=None, refusal_text="I can't help with that")
                self._send(200, body)
            case "empty":
                self._send(200, _completion(model=model, content=""))
            case "no_choices":
                self._send(200, {**_completion(model=model, content=None), "choices": []})
            case "trickle":
                self._trickle(
                    _completion(model=model, content=json.dumps(question_payload())),
                    behaviour.seconds,
                )

    def _transcription(self, raw: bytes) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        fields = _multipart_fields(headers.get("content-type", ""), raw)
        behaviour = self.fake._record(fields, headers, transcription=True)
        if not self.fake._wait_resumed() or not self.fake._wait(self.fake.latency):
            return
        self._answer_transcription(behaviour)

    def _answer_transcription(self, behaviour: Behaviour) -> None:
        match behaviour.kind:
            case "transcript":
                self._send(200, {"text": behaviour.text}, success=bool(behaviour.text.strip()))
            case "ok":
                self._send(200, {"text": DEFAULT_TRANSCRIPT}, success=True)
            case "empty":
                self._send(200, {"text": ""})
            case "unsupported":
                body = _error(behaviour.text, "invalid_request_error")
                self._send(400, body)
            case "hang":
                if self.fake._wait(behaviour.seconds) and not self._peer_gone():
                    self._answer_transcription(behaviour.then or transcript())
            case "malformed":
                self._send_raw(200, b"not json {", "application/json")
            case "status" | "rate_limited":
                self._answer(behaviour, "")
            case _:  # a chat completion's answer: JSON, but no transcription
                self._send(200, {"object": "chat.completion", "choices": []})

    def _send_raw(self, code: int, data: bytes, content_type: str) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            return

    def _trickle(self, body: dict, seconds: float) -> None:
        data = json.dumps(body).encode()
        pause = seconds / len(data)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            for index in range(len(data)):
                if not self.fake._wait(pause):
                    return
                self.wfile.write(data[index : index + 1])
                self.wfile.flush()
        except OSError:  # the client gave up: nothing was delivered
            return

    def _peer_gone(self) -> bool:
        """True if the client closed the connection (e.g. after its timeout)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _send(
        self,
        code: int,
        body: dict,
        extra_headers: dict[str, str] | None = None,
        *,
        success: bool = False,
    ) -> None:
        """Send a JSON response. A `success` is counted before its last byte leaves (so the
        count is up to date when the client has its answer) and uncounted if the client is gone.
        """
        data = json.dumps(body).encode()
        counted = False
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            for name, value in (extra_headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if success:
                self.fake._count_success()
                counted = True
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:  # BrokenPipeError, ConnectionResetError: the client hung up
            if counted:
                self.fake._count_success(-1)


def _multipart_fields(content_type: str, raw: bytes) -> dict[str, Any]:
    """A multipart/form-data body's fields, split on its boundary byte for byte (the file is
    binary): text fields as str, files as {"filename", "content_type", "size", "sha256"}."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        return {"_unparsable": content_type}
    fields: dict[str, Any] = {}
    for part in raw.split(b"--" + match.group(1).encode())[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        part_headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (
                line.partition(":") for line in head.decode("utf-8", "replace").split("\r\n")
            )
        }
        disposition = part_headers.get("content-disposition", "")
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        key = name.group(1) if name else "_unnamed"
        if filename is None:
            fields[key] = data.decode("utf-8", "replace")
        else:
            fields[key] = {
                "filename": filename.group(1),
                "content_type": part_headers.get("content-type", ""),
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    return fields


@pytest.fixture(name="fake_openai")
def fake_openai(settings: Settings) -> Iterator[FakeOpenAI]:
    """A running FakeOpenAI; the settings point the LLM client at it, with short timeouts."""
    server = FakeOpenAI().start()
    settings.OPENAI_BASE_URL = server.base_url
    settings.OPENAI_API_KEY = "test-key"
    settings.OPENAI_MODEL = "gpt-test"
    settings.QUESTION_SOURCE = "openai"
    settings.LLM_TIMEOUT_SECONDS = 1.0
    settings.LLM_MAX_RETRIES = 1
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="fake_transcriber")
def fake_transcriber(fake_openai: FakeOpenAI, settings: Settings) -> FakeOpenAI:
    """`fake_openai`, with the transcription engine pointed at it (TRANSCRIBE_BACKEND=openai,
    model gpt-transcribe, a 1 s timeout per attempt)."""
    settings.TRANSCRIBE_BACKEND = "openai"
    settings.TRANSCRIBE_BASE_URL = fake_openai.base_url
    settings.TRANSCRIBE_API_KEY = "test-key"
    settings.TRANSCRIBE_MODEL = "gpt-transcribe"
    settings.TRANSCRIBE_LANGUAGE = ""
    settings.TRANSCRIBE_TIMEOUT_SECONDS = 1.0
    return fake_openai
