"""Mockroom load benchmark: real server processes over HTTP, serving variants side by side.

    SECRET_KEY=x .ci/with-postgres .venv/bin/python bench/load.py [--quick] [--variants b,c]

What it measures: how well each serving VARIANT (a gunicorn command line plus environment)
delivers interview questions when many candidates ask at once and every question waits on a slow
LLM. The LLM is bench/fake_llm.py, a separate process that answers after a fixed latency, so
the ideal throughput is known: N candidates asking back to back with a latency of L seconds
deliver at most N / L questions per second. The ratio to that ideal shows how much of the
waiting the server overlaps; "p50 - LLM" is what the app adds on top of the LLM's latency.

How: a fresh database (mockroom_load, dropped before and after) is migrated once. Candidates
sign up once through the real form (the first variant's server); their session and CSRF cookies
work on every server, which all share the database and SECRET_KEY. For each scenario, each
variant's server is started (own process group), warmed up, every candidate starts a new
interview session, and then all candidates are released at once, each on its own keep-alive
connection, asking for their questions back to back. Only that window is measured: status codes
and latency of every request, the peak number of PostgreSQL connections (sampled every 100 ms),
and the CPU used by the server's process tree, PostgreSQL, the fake LLM and this client. The
variant order rotates from one scenario to the next so that a drifting machine hits all alike.

Afterwards `manage.py ledger_verify` must pass, and the debits in the ledger must match what the
client saw, request id by request id: one debit per 200 received, none for a refusal. A request
the client gave up on (timeout) may have been completed and charged by the server anyway: that is
reported, not an error. Otherwise the exit code is 1. A variant that does not start is reported
in its row, not fatal.

The table goes to stdout and, with per-run details (LLM calls in flight, DB connections opened,
what the server logged) and the machine's details, to bench/results/load.md; the servers' logs
go to bench/results/load-logs/. Progress goes to stderr. Every wait is bounded and every process
started here is stopped at the end, also on Ctrl-C or SIGTERM. The full run takes 8 to 10
minutes on 2 cores, 2 to 3 of them signing up 300 candidates (each signup hashes a password,
about 0.6 s of CPU); --quick takes under 2 minutes. --variants runs only the VARIANTS named by
their letter (for example `--variants b,c`: the threaded server with the pool, and `make serve`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import re
import secrets
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypedDict
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = VENV_BIN / "python" if (VENV_BIN / "python").exists() else Path(sys.executable)
FAKE_LLM = Path(__file__).resolve().parent / "fake_llm.py"
RESULTS = Path(__file__).resolve().parent / "results" / "load.md"
LOG_DIR = Path(__file__).resolve().parent / "results" / "load-logs"
BENCH_DB = "mockroom_load"


class Variant(TypedDict):
    name: str
    argv: list[str]  # "{port}" is replaced; a bare program name is looked up in .venv/bin first
    env: dict[str, str]


# --- the serving variants: edit freely -------------------------------------------------------

VARIANTS: list[Variant] = [
    {
        # The server the project shipped before: threaded gunicorn, persistent connections.
        "name": "a: gthread 2x8 (before)",
        "argv": (
            "gunicorn config.wsgi:application --bind 127.0.0.1:{port} --workers 2 "
            "--worker-class gthread --threads 8 --graceful-timeout 60 --no-control-socket"
        ).split(),
        "env": {"DB_POOL_MAX_SIZE": "0", "CONN_MAX_AGE": "60"},
    },
    {
        # Many threads, the pool, the connection handed back during generation.
        "name": "b: gthread 2x64 + pool",
        "argv": (
            "gunicorn config.wsgi:application --bind 127.0.0.1:{port} --workers 2 "
            "--worker-class gthread --threads 64 --graceful-timeout 60 --no-control-socket"
        ).split(),
        "env": {},
    },
    {
        # `make serve`'s command (deploy/gunicorn.conf.py: 2 uvicorn workers), with its defaults.
        "name": "c: ASGI (make serve)",
        "argv": (
            "gunicorn -c deploy/gunicorn.conf.py config.asgi:application "
            "--bind 127.0.0.1:{port} --workers 2"
        ).split(),
        "env": {},
    },
]

# Every server gets these (plus DATABASE_URL, SECRET_KEY and OPENAI_BASE_URL), then its own env.
COMMON_ENV: dict[str, str] = {
    "DEBUG": "false",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
    "QUESTION_SOURCE": "openai",
    "OPENAI_API_KEY": "bench",
    "WELCOME_TOKENS": "40",
    "LOG_LEVEL": "WARNING",
    "LLM_TIMEOUT_SECONDS": "20",
    "LLM_MAX_RETRIES": "0",
    # Hundreds of candidates sign up and buy from one address at once: their tokens come at
    # signup (no email to verify) and no rate limit applies (README, "Limits").
    "ACCOUNT_EMAIL_VERIFICATION": "none",
    "RATE_LIMITS": "false",
    "PYTHONUNBUFFERED": "1",
}


@dataclass(frozen=True)
class Scenario:
    key: str
    candidates: int
    questions: int  # per candidate, back to back
    latency: float  # the fake LLM's, in seconds

    @property
    def label(self) -> str:
        return f"{self.key}: {self.candidates}x{self.questions} @{self.latency:g} s"

    @property
    def ideal(self) -> float:
        """Questions per second if every request took exactly the LLM's latency."""
        return self.candidates / self.latency


SCENARIOS = [Scenario("S1", 100, 2, 5.0), Scenario("S2", 100, 2, 1.0), Scenario("S3", 300, 1, 5.0)]
QUICK_SCENARIOS = [Scenario("S1", 30, 2, 5.0)]

# --- knobs: every wait is bounded ------------------------------------------------------------

TOPIC, DIFFICULTY = "python", "medium"
SETUP_CONCURRENCY = 8  # signups and session starts in flight at once (password hashing is slow)
SIGNUP_ATTEMPTS = 2
SETUP_TIMEOUT = 60.0  # one signup or session start
REQUEST_TIMEOUT = 120.0  # one question request in the window
WINDOW_CAP = 130.0  # the whole window: requests not done by then are cut, later ones not sent
HEALTH_TIMEOUT = 60.0
STOP_GRACE = 10.0  # SIGTERM, then SIGKILL
FAKE_START_TIMEOUT = 15.0
SAMPLE_INTERVAL = 0.1
WARMUP_CANDIDATES = 16
WARMUP_LATENCY = 0.2
MANAGE_TIMEOUT = 600.0

CLK_TCK = os.sysconf("SC_CLK_TCK")
MINUS = "\N{MINUS SIGN}"
CSRF_INPUT_RE = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')
SESSION_PATH_RE = re.compile(r"/interviews/[0-9a-f-]{36}/")
CONNECTIONS_SQL = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
)
SESSIONS_SQL = "SELECT sessions FROM pg_stat_database WHERE datname = %s"
STATS_FLUSH_SECONDS = 1.5  # backends report their statistics about once a second


def log(message: str) -> None:
    print(f"load: {message}", file=sys.stderr, flush=True)


class SetupError(Exception):
    """Something the measurement needs did not work (a server, a signup, a session)."""


# --- processes -------------------------------------------------------------------------------


class Processes:
    """Every process this script starts, each in its own process group, so that a server and
    its workers are stopped together, and all of them in `stop_all()`."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], env: Mapping[str, str], output: IO[bytes] | int) -> int:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._running.append(proc)
        return proc.pid

    def get(self, pid: int) -> subprocess.Popen[bytes]:
        return next(proc for proc in self._running if proc.pid == pid)

    def stop(self, pid: int) -> bool:
        """SIGTERM to the process group, SIGKILL after STOP_GRACE seconds; True if killed."""
        proc = self.get(pid)
        self._running.remove(proc)
        killed = False
        _signal_group(pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            log(f"pid {pid} still running {STOP_GRACE:g} s after SIGTERM: SIGKILL")
            killed = _signal_group(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if _group_lingers(pid):  # workers outliving their master
            log(f"process group {pid} has stragglers: SIGKILL")
            killed = _signal_group(pid, signal.SIGKILL) or killed
        if proc.stdout is not None:
            proc.stdout.close()
        return killed

    def stop_all(self) -> None:
        for proc in reversed(list(self._running)):
            self.stop(proc.pid)


def _signal_group(pgid: int, signum: int) -> bool:
    """Send `signum` to a process group; False if the group is gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def _group_lingers(pgid: int, seconds: float = 3.0) -> bool:
    """True if some process of the group is still there after `seconds` (the dying need a
    moment to be reaped)."""
    deadline = time.monotonic() + seconds
    while _signal_group(pgid, 0):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)
    return False


def program(argv: list[str], port: int) -> list[str]:
    args = [arg.replace("{port}", str(port)) for arg in argv]
    if "/" not in args[0] and (VENV_BIN / args[0]).exists():
        args[0] = str(VENV_BIN / args[0])
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())


# --- CPU time from /proc ---------------------------------------------------------------------


def proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and of its children already reaped)."""
    table: dict[int, tuple[int, float]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            raw = Path("/proc", name, "stat").read_bytes()
        except OSError:  # gone meanwhile
            continue
        fields = raw[raw.rindex(b")") + 2 :].split()
        # After "(comm)": state ppid ... utime(11) stime(12) cutime(13) cstime(14).
        ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        table[int(name)] = (int(fields[1]), ticks / CLK_TCK)
    return table


def tree_cpu(table: dict[int, tuple[int, float]], root: int | None) -> float | None:
    """CPU seconds of `root` and all its descendants (None if `root` is unknown)."""
    if root is None or root not in table:
        return None
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _cpu) in table.items():
        children[ppid].append(pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += table[pid][1]
        stack.extend(children.get(pid, ()))
    return total


@dataclass(frozen=True)
class Cpu:
    """CPU seconds of each party (None where it cannot be read)."""

    server: float | None
    postgres: float | None
    fake: float | None
    client: float

    def __sub__(self, before: Cpu) -> Cpu:
        def minus(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else a - b

        return Cpu(
            minus(self.server, before.server),
            minus(self.postgres, before.postgres),
            minus(self.fake, before.fake),
            self.client - before.client,
        )


@dataclass(frozen=True)
class Pids:
    server: int
    postmaster: int | None
    fake: int

    def cpu(self) -> Cpu:
        table = proc_table()
        times = os.times()
        return Cpu(
            server=tree_cpu(table, self.server),
            postgres=tree_cpu(table, self.postmaster),
            fake=tree_cpu(table, self.fake),
            client=times.user + times.system,
        )


# --- a minimal HTTP/1.1 client on asyncio streams --------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names; Set-Cookie is in `cookies`
    cookies: list[str]
    body: bytes

    def snippet(self, limit: int = 160) -> str:
        text = re.sub(rb"<[^>]+>", b" ", self.body).decode("utf-8", "replace")
        return " ".join(text.split())[:limit]


class _Stale(Exception):
    """A reused keep-alive connection was closed by the server before it answered."""


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port, reopened when the server closes it.

    Bodies are read by Content-Length, chunked encoding, or up to the server's close.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> Response:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        reused = await self._open()
        try:
            return await self._exchange(data)
        except _Stale:
            self.close()
            if not reused:
                raise ConnectionResetError("the server closed the connection") from None
        await self._open()  # once more, on a new connection
        try:
            return await self._exchange(data)
        except _Stale:
            self.close()
            raise ConnectionResetError("the server closed the connection") from None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def _open(self) -> bool:
        """Connect unless connected; True if an existing connection is reused."""
        if self._writer is not None and self._reader is not None:
            if not self._writer.is_closing() and not self._reader.at_eof():
                return True
            self.close()
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        return False

    async def _exchange(self, data: bytes) -> Response:
        reader, writer = self._reader, self._writer
        assert reader is not None
        assert writer is not None
        try:
            writer.write(data)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            raise _Stale from exc
        except ConnectionError as exc:
            raise _Stale from exc
        status_line, _, header_block = head[:-4].decode("latin-1").partition("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for line in header_block.split("\r\n"):
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "set-cookie":
                cookies.append(value)
            else:
                headers[name] = value
        close = headers.get("connection", "").lower() == "close"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._read_chunked(reader)
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif status in (204, 304) or status < 200:
            body = b""
        else:
            body, close = await reader.read(), True
        if close:
            self.close()
        return Response(status, headers, cookies, body)

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)


async def fetch(port: int, method: str, path: str, body: bytes = b"") -> Response:
    """One request on a connection of its own."""
    conn = Connection(port)
    try:
        return await conn.request(method, path, {"Connection": "close"}, body)
    finally:
        conn.close()


# --- candidates: signup and interview sessions through the real forms ------------------------


@dataclass
class Candidate:
    email: str
    cookies: dict[str, str] = field(default_factory=dict)

    def absorb(self, response: Response) -> None:
        for header in response.cookies:
            pair = header.split(";", 1)[0]
            name, _, value = pair.partition("=")
            name, value = name.strip(), value.strip().strip('"')
            if name in ("sessionid", "csrftoken"):
                if value:
                    self.cookies[name] = value
                else:
                    self.cookies.pop(name, None)

    def headers(self, port: int, page: str, *, htmx: bool = False) -> dict[str, str]:
        """Headers of a POST from `page` that passes Django's CSRF checks on this server."""
        origin = f"http://127.0.0.1:{port}"
        headers = {
            "Cookie": "; ".join(f"{name}={value}" for name, value in self.cookies.items()),
            "Origin": origin,
            "Referer": origin + page,
            "X-CSRFToken": self.cookies.get("csrftoken", ""),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        if htmx:
            headers["HX-Request"] = "true"
        return headers


async def signup(port: int, email: str) -> Candidate:
    candidate = Candidate(email=email)
    conn = Connection(port)
    try:
        page = await conn.request("GET", "/accounts/signup/")
        candidate.absorb(page)
        match = CSRF_INPUT_RE.search(page.body)
        if page.status != 200 or match is None or "csrftoken" not in candidate.cookies:
            raise SetupError(f"GET /accounts/signup/: HTTP {page.status} {page.snippet()}")
        password = secrets.token_urlsafe(12)
        form = {
            "csrfmiddlewaretoken": match.group(1).decode(),
            "email": candidate.email,
            "password1": password,
            "password2": password,
        }
        headers = candidate.headers(port, "/accounts/signup/")
        del headers["X-CSRFToken"]  # a browser form sends the hidden input only
        answer = await conn.request("POST", "/accounts/signup/", headers, urlencode(form).encode())
        candidate.absorb(answer)
        if answer.status != 302 or "sessionid" not in candidate.cookies:
            raise SetupError(f"POST /accounts/signup/: HTTP {answer.status} {answer.snippet()}")
        return candidate
    finally:
        conn.close()


async def bounded[T](limit: asyncio.Semaphore, work: Awaitable[T]) -> T:
    async with limit, asyncio.timeout(SETUP_TIMEOUT):
        return await work


async def signup_all(port: int, count: int) -> list[Candidate]:
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)
    batch = secrets.token_hex(3)  # a failed batch's accounts exist: the next one uses new emails
    done = 0

    async def one(index: int) -> Candidate:
        nonlocal done
        for attempt in range(SIGNUP_ATTEMPTS):
            email = f"load{index:04d}-{batch}{attempt}@example.com"
            try:
                candidate = await bounded(limit, signup(port, email))
            except (SetupError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                if attempt + 1 == SIGNUP_ATTEMPTS:
                    raise SetupError(f"signup {index} failed: {exc!r}") from exc
                continue
            done += 1
            if done % 50 == 0:
                log(f"    {done}/{count} signed up")
            return candidate
        raise AssertionError("unreachable")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def start_session(port: int, candidate: Candidate) -> str:
    """A new interview session; its path, /interviews/<uuid>/."""
    form = urlencode({"topic": TOPIC, "difficulty": DIFFICULTY}).encode()
    conn = Connection(port)
    try:
        headers = candidate.headers(port, "/interviews/") | {"Connection": "close"}
        answer = await conn.request("POST", "/interviews/start/", headers, form)
    finally:
        conn.close()
    candidate.absorb(answer)
    match = SESSION_PATH_RE.search(answer.headers.get("location", ""))
    if answer.status not in (302, 303) or match is None:
        raise SetupError(f"POST /interviews/start/: HTTP {answer.status} {answer.snippet()}")
    return match.group(0)


async def start_sessions(
    port: int, candidates: list[Candidate]
) -> tuple[list[tuple[Candidate, str]], list[str]]:
    """(candidate, session path) for each session started; the errors of those that failed."""
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)
    results = await asyncio.gather(
        *(bounded(limit, start_session(port, c)) for c in candidates), return_exceptions=True
    )
    started: list[tuple[Candidate, str]] = []
    errors: list[str] = []
    for candidate, result in zip(candidates, results, strict=True):
        if isinstance(result, str):
            started.append((candidate, result))
        elif isinstance(result, Exception):
            errors.append(str(result) or type(result).__name__)
        else:
            raise result
    return started, errors


# --- the measured window ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: int  # 0: no HTTP answer, see `error`
    error: str  # "", "timeout" (REQUEST_TIMEOUT), "cut" (WINDOW_CAP), "unsent", or the exception
    sent: float
    done: float
    request_id: str

    @property
    def key(self) -> str:
        return str(self.status) if self.status else self.error

    @property
    def latency(self) -> float:
        return self.done - self.sent


async def ask_questions(
    port: int, candidate: Candidate, session: str, questions: int, deadline: float
) -> list[Outcome]:
    """`questions` question requests back to back on one keep-alive connection."""
    conn = Connection(port)
    path = f"{session}questions/"
    headers = candidate.headers(port, session, htmx=True)
    outcomes: list[Outcome] = []
    try:
        for _ in range(questions):
            request_id = uuid.uuid4().hex
            sent = time.perf_counter()
            budget = min(REQUEST_TIMEOUT, deadline - sent)
            if budget <= 0:
                outcomes.append(Outcome(0, "unsent", sent, sent, request_id))
                continue
            try:
                async with asyncio.timeout(budget):
                    answer = await conn.request(
                        "POST", path, headers, f"request_id={request_id}".encode()
                    )
            except TimeoutError:
                conn.close()
                error = "timeout" if budget == REQUEST_TIMEOUT else "cut"
                outcomes.append(Outcome(0, error, sent, time.perf_counter(), request_id))
                continue
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
                conn.close()
                error = type(exc).__name__
                outcomes.append(Outcome(0, error, sent, time.perf_counter(), request_id))
                continue
            outcomes.append(Outcome(answer.status, "", sent, time.perf_counter(), request_id))
    finally:
        conn.close()
    return outcomes


async def sample_connections(conn: psycopg.AsyncConnection, stop: asyncio.Event) -> int:
    """The peak number of connections to the bench database until `stop` is set."""
    peak = 0
    while True:
        cursor = await conn.execute(CONNECTIONS_SQL, (BENCH_DB,))
        row = await cursor.fetchone()
        peak = max(peak, int(row[0]) if row else 0)
        if stop.is_set():
            return peak
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_INTERVAL)


async def sessions_opened(conn: psycopg.AsyncConnection) -> int | None:
    """Connections ever opened to the bench database (PostgreSQL 14+), None if unknown."""
    try:
        cursor = await conn.execute(SESSIONS_SQL, (BENCH_DB,))
        row = await cursor.fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row and row[0] is not None else None


@dataclass
class Window:
    outcomes: list[Outcome]
    cpu: Cpu
    peak_db: int
    new_db: int | None  # connections opened during the window
    llm_calls: int
    llm_peak: int


async def measure(
    port: int, pairs: list[tuple[Candidate, str]], scenario: Scenario, bench: Bench, pids: Pids
) -> Window:
    fake_before = await bench.fake.stats()
    async with await psycopg.AsyncConnection.connect(bench.admin_url, autocommit=True) as db:
        opened = await sessions_opened(db)
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_connections(db, stop))
        await asyncio.sleep(0)
        before = pids.cpu()
        deadline = time.perf_counter() + WINDOW_CAP
        try:
            async with asyncio.timeout(WINDOW_CAP + 30):
                per_candidate = await asyncio.gather(
                    *(
                        ask_questions(port, candidate, session, scenario.questions, deadline)
                        for candidate, session in pairs
                    )
                )
        except TimeoutError:
            raise SetupError(f"the window did not end within {WINDOW_CAP + 30:g} s") from None
        cpu = pids.cpu() - before
        stop.set()
        peak_db = await asyncio.wait_for(sampler, 10)
        await asyncio.sleep(STATS_FLUSH_SECONDS)
        opened_after = await sessions_opened(db)
    fake_after = await bench.fake.stats()
    return Window(
        outcomes=[outcome for outcomes in per_candidate for outcome in outcomes],
        cpu=cpu,
        peak_db=peak_db,
        new_db=None if opened is None or opened_after is None else opened_after - opened,
        llm_calls=int(fake_after["requests"] - fake_before["requests"]),
        llm_peak=int(fake_after["peak_in_flight"]),
    )


# --- the fake LLM ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fake:
    """The running bench/fake_llm.py."""

    pid: int
    port: int

    async def stats(self, latency: float | None = None) -> dict[str, float]:
        """Its counters; with `latency`, set that first (which resets the in-flight peak)."""
        if latency is None:
            answer = await fetch(self.port, "GET", "/__stats")
        else:
            answer = await fetch(self.port, "POST", "/__latency", f"{latency:g}".encode())
        if answer.status != 200:
            raise SetupError(f"fake LLM: HTTP {answer.status}")
        return json.loads(answer.body)


def start_fake(procs: Processes) -> Fake:
    pid = procs.start([str(PYTHON), str(FAKE_LLM), "--port", "0"], os.environ, subprocess.PIPE)
    stdout = procs.get(pid).stdout
    assert stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        if not selector.select(timeout=FAKE_START_TIMEOUT):
            raise SetupError(f"the fake LLM did not start within {FAKE_START_TIMEOUT:g} s")
    line = stdout.readline().decode().split()
    if len(line) != 2 or line[0] != "listening":
        raise SetupError(f"the fake LLM did not start: {line!r}")
    return Fake(pid=pid, port=int(line[1]))


# --- one variant in one scenario -------------------------------------------------------------


@dataclass
class LogSummary:
    internal_errors: int = 0  # "Internal Server Error" lines (django.request, 500s)
    exceptions: Counter[str] = field(default_factory=Counter)  # last line of each traceback
    not_charged: Counter[str] = field(default_factory=Counter)  # why questions failed
    worker_timeouts: int = 0

    def notes(self) -> list[str]:
        notes = []
        if self.internal_errors:
            notes.append(f"{self.internal_errors} 'Internal Server Error' log lines")
        if self.worker_timeouts:
            notes.append(f"{self.worker_timeouts} WORKER TIMEOUT")
        for text, count in self.exceptions.most_common(3):
            notes.append(f"{count}x `{text[:200]}`")
        for text, count in self.not_charged.most_common(3):
            notes.append(f"not charged {count}x: `{text[:160]}`")
        return notes


def scan_log(path: Path) -> LogSummary:
    summary = LogSummary()
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return summary
    for index, line in enumerate(lines):
        if "Internal Server Error" in line:
            summary.internal_errors += 1
        elif "WORKER TIMEOUT" in line:
            summary.worker_timeouts += 1
        elif line.startswith("Traceback (most recent call last)"):
            end = index + 1
            while end < len(lines) and (lines[end].startswith(" ") or not lines[end].strip()):
                end += 1
            if end < len(lines):
                summary.exceptions[lines[end].strip()] += 1
        elif match := re.search(r"not charged, hold \S+ released: (.*)", line):
            summary.not_charged[re.sub(r"\d+", "N", match.group(1))] += 1
    return summary


@dataclass
class Result:
    variant: str
    scenario: Scenario
    failure: str = ""
    window: Window | None = None
    startup: float = 0.0
    session_errors: list[str] = field(default_factory=list)
    log: LogSummary = field(default_factory=LogSummary)
    log_path: str = ""
    killed: bool = False  # the server needed SIGKILL (requests still in flight)

    @property
    def delivered(self) -> int:
        if self.window is None:
            return 0
        return sum(1 for o in self.window.outcomes if o.status == 200)

    @property
    def wall(self) -> float:
        sent = [o for o in self.window.outcomes if o.error != "unsent"] if self.window else []
        if not sent:
            return 0.0
        return max(o.done for o in sent) - min(o.sent for o in sent)


async def wait_healthy(proc: subprocess.Popen[bytes], port: int, log_path: Path) -> float:
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() - start < HEALTH_TIMEOUT:
        if proc.poll() is not None:
            raise SetupError(f"exited with code {proc.returncode}: {tail(log_path)}")
        try:
            async with asyncio.timeout(5):
                answer = await fetch(port, "GET", "/healthz")
            if answer.status == 200:
                return time.monotonic() - start
            last = f"HTTP {answer.status} {answer.snippet()}"
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            last = repr(exc)
        await asyncio.sleep(0.25)
    raise SetupError(
        f"/healthz not 200 within {HEALTH_TIMEOUT:g} s (last: {last}) {tail(log_path)}"
    )


async def warm_up(port: int, fake: Fake, candidates: list[Candidate]) -> list[Outcome]:
    """Load the code paths in every worker before measuring (not measured)."""
    await fake.stats(latency=WARMUP_LATENCY)
    await asyncio.gather(*(fetch(port, "GET", "/healthz") for _ in range(WARMUP_CANDIDATES)))
    pairs, _errors = await start_sessions(port, candidates[-WARMUP_CANDIDATES:])
    deadline = time.perf_counter() + 60
    outcomes = await asyncio.gather(
        *(ask_questions(port, candidate, session, 1, deadline) for candidate, session in pairs)
    )
    return [outcome for results in outcomes for outcome in results]


@dataclass
class Bench:
    """What every run needs: processes, environment, the candidates, counters."""

    procs: Processes
    env: dict[str, str]
    admin_url: str  # libpq URL of the maintenance database
    postmaster: int | None
    fake: Fake
    needed: int  # candidates to sign up
    candidates: list[Candidate] = field(default_factory=list)
    warmups: list[Outcome] = field(default_factory=list)  # in the ledger check too
    signup_seconds: float = 0.0


def run_variant(bench: Bench, variant: Variant, scenario: Scenario) -> Result:
    result = Result(variant=variant["name"], scenario=scenario)
    port = free_port()
    log_path = LOG_DIR / f"{scenario.key.lower()}-{slug(variant['name'])}.log"
    result.log_path = str(log_path.relative_to(ROOT))
    env = bench.env | variant["env"]
    with log_path.open("wb") as output:
        pid = bench.procs.start(program(variant["argv"], port), env, output)
    pids = Pids(server=pid, postmaster=bench.postmaster, fake=bench.fake.pid)
    try:
        asyncio.run(exercise(bench, result, pids, port, log_path))
    except (SetupError, OSError, TimeoutError, ValueError, psycopg.Error) as exc:
        result.failure = str(exc) or repr(exc)
        log(f"    FAILED: {result.failure}")
    finally:
        result.killed = bench.procs.stop(pid)
    result.log = scan_log(log_path)
    return result


async def exercise(bench: Bench, result: Result, pids: Pids, port: int, log_path: Path) -> None:
    scenario = result.scenario
    proc = bench.procs.get(pids.server)
    try:
        result.startup = await wait_healthy(proc, port, log_path)
    except SetupError as exc:
        raise SetupError(f"did not start: {exc}") from None
    log(f"    up in {result.startup:.1f} s on port {port}")
    if not bench.candidates:
        log(f"    signing up {bench.needed} candidates through the form")
        start = time.perf_counter()
        bench.candidates.extend(await signup_all(port, bench.needed))
        bench.signup_seconds = time.perf_counter() - start
        log(f"    {bench.needed} signed up in {bench.signup_seconds:.0f} s")
    bench.warmups.extend(await warm_up(port, bench.fake, bench.candidates))
    await bench.fake.stats(latency=scenario.latency)
    pairs, result.session_errors = await start_sessions(
        port, bench.candidates[: scenario.candidates]
    )
    if not pairs:
        raise SetupError(f"no session started: {result.session_errors[0]}")
    log(f"    {len(pairs)} sessions started; releasing {len(pairs)} candidates")
    result.window = await measure(port, pairs, scenario, bench, pids)
    log(
        f"    {result.delivered} questions in {result.wall:.1f} s; "
        f"{format_statuses(result.window.outcomes)}"
    )


# --- the database ----------------------------------------------------------------------------


def libpq_url(url: str) -> str:
    """The URL with a scheme libpq accepts (dj-database-url also allows pgsql:// etc.)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def database_url(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def recreate_database(admin: str, *, create: bool = True) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def find_postmaster(admin: str) -> int | None:
    """The PostgreSQL server's main process, if it runs on this machine and /proc shows it."""
    with psycopg.connect(admin, autocommit=True) as conn:  # the backend lives as long as this
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        backend = int(row[0]) if row else 0
        table = proc_table()
        try:
            comm = Path("/proc", str(backend), "comm").read_text().strip()
        except OSError:
            return None
    if backend not in table or not comm.startswith("postgres"):
        return None  # another machine, or another PID namespace
    return table[backend][0]


def manage(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PYTHON), "manage.py", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=MANAGE_TIMEOUT,
        check=False,
    )


@dataclass
class LedgerCheck:
    """The ledger after the run, against what the client saw, request by request."""

    verify_ok: bool
    verify_output: str
    debits: int
    delivered: int  # 200s the client received, warm-ups included
    abandoned_debited: int  # debits of requests the client gave up on (no HTTP answer)
    problems: list[str]  # debits that no client outcome explains
    pending: int
    expired_note: str

    @property
    def ok(self) -> bool:
        """ledger_verify passes, and every debit is a 200 received or a request abandoned."""
        return self.verify_ok and not self.problems

    def lines(self) -> list[str]:
        verdict = "OK" if self.verify_ok else "FAILED"
        lines = [
            f"- `manage.py ledger_verify`: **{verdict}** ({self.verify_output})",
            f"- Debits in the ledger: {self.debits}; questions received (200, warm-ups "
            f"included): {self.delivered}: "
            + ("**equal**" if self.debits == self.delivered else "**not equal**"),
        ]
        if self.abandoned_debited:
            lines.append(
                f"- {self.abandoned_debited} debit(s) are requests the client abandoned (no "
                "answer in time) that the server completed anyway: charged, never seen"
            )
        lines.extend(f"- **Problem:** {problem}" for problem in self.problems)
        lines.append(f"- Pending holds after the run: {self.pending}{self.expired_note}")
        return lines


def reconcile(outcomes: list[Outcome], debited: list[str]) -> tuple[int, list[str]]:
    """(debits of abandoned requests, problems): each debit must match a 200 or an abandoned
    request; each 200 must have exactly one debit; no refused request may have one."""
    debit_counts = Counter(debited)
    status = {o.request_id: o.status for o in outcomes}
    received = {rid for rid, code in status.items() if code == 200}
    refused = {rid for rid, code in status.items() if code and code != 200}
    abandoned = {rid for rid, code in status.items() if not code}
    problems = []
    checks = [
        (len(received - debit_counts.keys()), "question(s) received (200) without a debit"),
        (len(refused & debit_counts.keys()), "refused request(s) (4xx/5xx) charged anyway"),
        (len(debit_counts.keys() - status.keys()), "debit(s) of request ids the client never sent"),
        (sum(1 for count in debit_counts.values() if count > 1), "request id(s) debited twice"),
    ]
    for count, text in checks:
        if count:
            problems.append(f"{count} {text}")
    return len(abandoned & debit_counts.keys()), problems


def check_ledger(env: Mapping[str, str], bench_url: str, outcomes: list[Outcome]) -> LedgerCheck:
    verify = manage(["ledger_verify"], env)
    output = " ".join((verify.stdout + verify.stderr).split())
    debited: list[str] = []
    debits = pending = None
    abandoned_debited = 0
    try:
        with psycopg.connect(bench_url, autocommit=True) as conn:
            debits = conn.execute(
                "SELECT count(*) FROM ledger_ledgerentry WHERE kind = 'debit'"
            ).fetchone()
            pending = conn.execute(
                "SELECT count(*) FROM ledger_hold WHERE status = 'pending'"
            ).fetchone()
            debited = [
                str(row[0])
                for row in conn.execute(
                    "SELECT h.request_id FROM ledger_ledgerentry AS e "
                    "JOIN ledger_hold AS h ON h.id = e.hold_id WHERE e.kind = 'debit'"
                )
            ]
    except psycopg.Error as exc:
        problems = [f"the ledger query failed: {' '.join(str(exc).split())[:200]}"]
    else:
        abandoned_debited, problems = reconcile(outcomes, debited)
        if debits and int(debits[0]) != len(debited):
            problems.append(f"{int(debits[0]) - len(debited)} debit(s) without a hold")
    note = ""
    if pending and pending[0]:
        expire = manage(["expire_holds"], env)
        note = f" (`expire_holds`: {' '.join(expire.stdout.split())})"
    return LedgerCheck(
        verify_ok=verify.returncode == 0,
        verify_output=output[:300],
        debits=int(debits[0]) if debits else 0,
        delivered=sum(1 for o in outcomes if o.status == 200),
        abandoned_debited=abandoned_debited,
        problems=problems,
        pending=int(pending[0]) if pending else 0,
        expired_note=note,
    )


# --- report ----------------------------------------------------------------------------------


def format_statuses(outcomes: Iterable[Outcome]) -> str:
    counts = Counter(o.key for o in outcomes)
    return ", ".join(f"{key}: {counts[key]}" for key in sorted(counts))


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[max(0, math.ceil(fraction * len(sorted_values)) - 1)]


def per_question(seconds: float | None, questions: int) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds * 1000 / questions:.0f}" if questions else "-"


def table_row(result: Result) -> str:
    window, scenario = result.window, result.scenario
    if window is None:
        reason = " ".join(result.failure.split())[:300].replace("|", "/")
        return f"| {result.variant} | {scenario.label} | **failed**: {reason} |" + " |" * 7
    delivered, wall = result.delivered, result.wall
    throughput = delivered / wall if wall else 0.0
    latencies = sorted(o.latency for o in window.outcomes if o.status == 200)
    if latencies:
        p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
        timing = f"{p50:.2f} s / {p95:.2f} s"
        overhead = f"{(p50 - scenario.latency) * 1000:+.0f} ms"
    else:
        timing = overhead = "-"
    return (
        f"| {result.variant} | {scenario.label} | {throughput:.1f} ({scenario.ideal:.0f}) "
        f"| {throughput / scenario.ideal:.2f} | {timing} | {overhead} "
        f"| {format_statuses(window.outcomes)} | {window.peak_db} "
        f"| {per_question(window.cpu.server, delivered)} "
        f"| {per_question(window.cpu.postgres, delivered)} |"
    )


def table(results: list[Result]) -> str:
    lines = [
        f"| variant | scenario | q/s (ideal) | ratio | p50 / p95 | p50 {MINUS} LLM | statuses "
        "| peak DB conns | app CPU ms/q | PG CPU ms/q |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(results, key=lambda r: (r.scenario.key, r.variant))
    lines.extend(table_row(result) for result in ordered)
    return "\n".join(lines)


def details(results: list[Result]) -> list[str]:
    lines = []
    for result in sorted(results, key=lambda r: (r.scenario.key, r.variant)):
        head = f"- **{result.variant}, {result.scenario.key}**"
        window = result.window
        if window is None:
            lines.append(f"{head}: failed ({result.log_path}).")
            continue
        outcomes = [o for o in window.outcomes if o.status]
        slowest = max((o.latency for o in outcomes), default=0.0)
        parts = [
            f"started in {result.startup:.1f} s",
            f"window {result.wall:.1f} s",
            f"{result.delivered}/{len(window.outcomes)} delivered",
            f"max {slowest:.2f} s (any status)",
            f"LLM calls {window.llm_calls}, peak {window.llm_peak} in flight",
            f"DB connections opened {'n/a' if window.new_db is None else window.new_db}",
            f"CPU s: app {fmt_cpu(window.cpu.server)}, PG {fmt_cpu(window.cpu.postgres)}, "
            f"fake LLM {fmt_cpu(window.cpu.fake)}, client {window.cpu.client:.2f}",
        ]
        if result.killed:
            parts.append(f"server SIGKILLed {STOP_GRACE:g} s after SIGTERM")
        if result.session_errors:
            parts.append(
                f"{len(result.session_errors)} sessions not started "
                f"(`{result.session_errors[0][:120]}`)"
            )
        notes = result.log.notes()
        if notes:
            parts.append(f"server log ({result.log_path}): " + "; ".join(notes))
        lines.append(f"{head}: " + "; ".join(parts) + ".")
    return lines


def fmt_cpu(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.2f}"


def totals(results: list[Result]) -> str:
    windows = [r.window for r in results if r.window is not None]
    delivered = sum(r.delivered for r in results) or 1
    client = sum(w.cpu.client for w in windows)
    fake = sum(w.cpu.fake or 0.0 for w in windows)
    return (
        f"Load client CPU: {client:.1f} s over all windows ({client * 1000 / delivered:.1f} ms "
        f"per delivered question); fake LLM CPU: {fake:.1f} s ({fake * 1000 / delivered:.1f} ms "
        "per question)."
    )


def package_versions() -> str:
    names = ["django", "gunicorn", "uvicorn", "uvicorn-worker", "psycopg", "psycopg-pool"]
    found = []
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    return ", ".join(found)


def machine_info(admin: str, runtime: float, signup_seconds: float) -> list[str]:
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [
        f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Cores: {os.cpu_count()} ({cpu})",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}, PostgreSQL {row[0] if row else '?'}",
        f"- Packages: {package_versions()}",
        f"- Runtime: {runtime:.0f} s (signups: {signup_seconds:.0f} s)",
    ]


METHOD_NOTES = [
    "q/s = questions delivered (200) / window (first request sent to last answer); ideal = "
    "candidates / LLM latency; ratio = q/s / ideal.",
    f"p50 / p95 are over delivered questions (200); 'p50 {MINUS} LLM' subtracts the fake "
    "LLM's latency.",
    "statuses: HTTP codes, or 'timeout' (no answer in "
    f"{REQUEST_TIMEOUT:g} s), 'cut' (window capped at {WINDOW_CAP:g} s), 'unsent', or the "
    "client exception.",
    "CPU per question: the server's process tree and PostgreSQL's (postmaster and all its "
    "children) during the window, divided by delivered questions.",
]


def write_report(output: str, sections: list[tuple[str, list[str]]]) -> None:
    text = "# Mockroom load benchmark\n\n" + output + "\n"
    for title, lines in sections:
        text += f"\n## {title}\n\n" + "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")


# --- main ------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def variant_letters() -> str:
    return ", ".join(variant["name"].split(":", 1)[0] for variant in VARIANTS)


def variants_chosen(letters: str) -> list[Variant]:
    """The VARIANTS named by their letters ("b,c"), in their order; all of them for ""."""
    wanted = {letter.strip() for letter in letters.split(",") if letter.strip()}
    if not wanted:
        return list(VARIANTS)
    return [v for v in VARIANTS if v["name"].split(":", 1)[0] in wanted]


def server_env(bench_url: str) -> dict[str, str]:
    env = dict(os.environ) | COMMON_ENV
    env["DATABASE_URL"] = bench_url
    env["SECRET_KEY"] = os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="S1 only, 30 candidates")
    parser.add_argument(
        "--variants",
        default="",
        help="only these variants, by letter, comma-separated (e.g. b,c); default: all",
    )
    args = parser.parse_args()
    scenarios = QUICK_SCENARIOS if args.quick else SCENARIOS
    variants = variants_chosen(args.variants)
    if not variants:
        log(f"--variants {args.variants!r}: no such variant (letters: {variant_letters()})")
        return 2
    url = os.environ.get("DATABASE_URL", "")
    if urlsplit(url).scheme not in ("postgres", "postgresql", "pgsql", "postgis"):
        log("DATABASE_URL must point at PostgreSQL: run through .ci/with-postgres")
        return 2
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, _interrupt)
    admin = libpq_url(url)
    env = server_env(database_url(url, BENCH_DB))
    procs = Processes()
    results: list[Result] = []
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    try:
        log(f"creating the database {BENCH_DB!r}; migrate, collectstatic")
        recreate_database(admin)
        for command in (["migrate", "--noinput"], ["collectstatic", "--noinput", "-v0"]):
            done = manage(command, env)
            if done.returncode != 0:
                raise SetupError(f"manage.py {command[0]}: {(done.stdout + done.stderr)[-2000:]}")
        fake = start_fake(procs)
        env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{fake.port}/v1"
        log(f"fake LLM on port {fake.port}")
        bench = Bench(
            procs=procs,
            env=env,
            admin_url=admin,
            postmaster=find_postmaster(admin),
            fake=fake,
            needed=max(s.candidates for s in scenarios),
        )
        for index, scenario in enumerate(scenarios):
            shift = index % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                log(f"{scenario.label} | {variant['name']}")
                results.append(run_variant(bench, variant, scenario))
        outcomes = [o for r in results if r.window for o in r.window.outcomes] + bench.warmups
        log("checking the ledger")
        ledger = check_ledger(env, libpq_url(env["DATABASE_URL"]), outcomes)
        info = machine_info(admin, time.perf_counter() - started, bench.signup_seconds)
    except KeyboardInterrupt:
        log("interrupted: stopping every process started")
        return 130
    except SetupError as exc:
        log(f"setup failed: {exc}")
        return 2
    finally:
        procs.stop_all()
        with contextlib.suppress(psycopg.Error):
            recreate_database(admin, create=False)
    output = table(results)
    print(output)
    print()
    print(totals(results))
    print("\n".join(ledger.lines()))
    write_report(
        output,
        [
            ("Totals", [totals(results)]),
            ("Ledger", ledger.lines()),
            ("Details", details(results)),
            ("Method", [f"- {note}" for note in METHOD_NOTES]),
            ("Machine", info),
        ],
    )
    log(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0 if ledger.ok else 1


if __name__ == "__main__":
    sys.exit(main())
