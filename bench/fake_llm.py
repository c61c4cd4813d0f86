"""A lean fake OpenAI-compatible Chat Completions server with a fixed, switchable latency.

Used by bench/load.py, in its own process so that its CPU is measured apart from the app's.
It is deliberately cheap: raw asyncio streams, HTTP/1.1 keep-alive, Content-Length bodies, no
framework, no parsing of the request beyond its headers and one regular expression.

    python bench/fake_llm.py [--port 0] [--latency 5]

On start it prints one line, `listening PORT`, to stdout. Endpoints:

- `POST /v1/chat/completions`: waits `latency` seconds, then answers a valid `chat.completion`
  whose message content is a question as JSON ({"text", "key_points", "outline", "difficulty"}).
  Every question text is unique for the life of the process (a counter), so the app's duplicate
  check never rejects one.
- `POST /__latency` with a number (seconds) as the body: sets the latency for requests that
  arrive from now on, and resets the in-flight peak. Answers the stats.
- `GET /__stats`: {"latency", "requests", "completions", "in_flight", "peak_in_flight"}.

It stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import time
from dataclasses import dataclass

SERVER_HEADER = b"FakeLLM/1.0"
MODEL = "fake-bench-model"
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024
IDLE_TIMEOUT_SECONDS = 300.0  # a keep-alive connection idle this long is closed

_DIFFICULTY_RE = re.compile(rb"Difficulty: (easy|medium|hard)")
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 413: b"Payload Too Large"}


@dataclass
class State:
    latency: float
    requests: int = 0
    completions: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0

    def stats(self) -> dict[str, float | int]:
        return {
            "latency": self.latency,
            "requests": self.requests,
            "completions": self.completions,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
        }


def question(number: int, difficulty: str) -> str:
    """The message content: a question object as a JSON string, unique by `number`."""
    return json.dumps(
        {
            "text": (
                f"Explain load scenario question {number}: how would you keep a cache "
                f"consistent with its database under concurrent writes (case {number})?"
            ),
            "key_points": [
                "Name the race between the read-through fill and the invalidation",
                "Invalidate or version on write, after the commit",
                "Bound staleness with a TTL and measure the hit rate",
            ],
            "outline": (
                "Describe the race, then a write path that invalidates after commit, and how "
                "versioned keys or short TTLs bound what a reader can see."
            ),
            "difficulty": difficulty,
        }
    )


def completion(content: str) -> bytes:
    return json.dumps(
        {
            "id": f"chatcmpl-fake{time.monotonic_ns():x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 50, "completion_tokens": 50, "total_tokens": 100},
        }
    ).encode()


def response(status: int, body: bytes, *, close: bool) -> bytes:
    head = (
        b"HTTP/1.1 %d %s\r\nServer: %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: %s\r\n\r\n"
        % (
            status,
            _REASONS.get(status, b"Error"),
            SERVER_HEADER,
            len(body),
            b"close" if close else b"keep-alive",
        )
    )
    return head + body


class FakeLLM:
    def __init__(self, latency: float) -> None:
        self.state = State(latency=latency)

    async def route(self, method: bytes, path: bytes, body: bytes) -> tuple[int, bytes]:
        state = self.state
        if method == b"POST" and path.rstrip(b"/").endswith(b"/chat/completions"):
            state.requests += 1
            state.in_flight += 1
            state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
            try:
                await asyncio.sleep(state.latency)
            finally:
                state.in_flight -= 1
            match = _DIFFICULTY_RE.search(body)
            difficulty = match.group(1).decode() if match else "medium"
            state.completions += 1
            return 200, completion(question(state.completions, difficulty))
        if method == b"POST" and path == b"/__latency":
            try:
                state.latency = max(0.0, float(body.decode().strip()))
            except ValueError:
                return 400, b'{"error": "the body must be a number of seconds"}'
            state.peak_in_flight = state.in_flight
            return 200, json.dumps(state.stats()).encode()
        if method == b"GET" and path == b"/__stats":
            return 200, json.dumps(state.stats()).encode()
        return 404, b'{"error": {"message": "not found", "type": "invalid_request_error"}}'

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                async with asyncio.timeout(IDLE_TIMEOUT_SECONDS):
                    head = await reader.readuntil(b"\r\n\r\n")
                request_line, _, header_block = head.partition(b"\r\n")
                method, path, version = request_line.split(b" ", 2)
                length = 0
                close = version.strip() == b"HTTP/1.0"
                for line in header_block.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection":
                        close = value.strip().lower() == b"close"
                    elif name == b"transfer-encoding":
                        length = -1  # chunked uploads are not supported: refuse and close
                if length < 0 or length > MAX_BODY_BYTES:
                    writer.write(response(413, b"{}", close=True))
                    await writer.drain()
                    return
                body = await reader.readexactly(length) if length else b""
                status, payload = await self.route(method, path, body)
                writer.write(response(status, payload, close=close))
                await writer.drain()
                if close:
                    return
        except (
            TimeoutError,
            ValueError,  # a malformed request line or Content-Length
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
        ):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def serve(port: int, latency: float) -> None:
    fake = FakeLLM(latency)
    server = await asyncio.start_server(
        fake.handle, "127.0.0.1", port, limit=MAX_HEADER_BYTES, backlog=1024
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening {bound}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        server.close_clients()  # keep-alive connections would hold wait_closed() open
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.latency))


if __name__ == "__main__":
    main()
