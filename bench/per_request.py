"""What one request costs the server, by kind: the ASGI server (`make serve`) against a plain
gthread WSGI server of the same code, side by side in one run.

    SECRET_KEY=x .ci/with-postgres .venv/bin/python bench/per_request.py [--rounds 3]

Four servers run at once, one worker each, on one fresh database (mockroom_requests) and one
throwaway Redis (the README's production setup: limits and sessions in Redis): `make serve`'s
command and `gunicorn config.wsgi --worker-class gthread`, each once with the fake LLM
(bench/fake_llm.py, answering in 10 ms) as the question source and once with the bank; both
with deploy/gunicorn.conf.py, as `make serve` starts the server. One
candidate per server asks sequentially (no concurrency: this measures cost, not overlap).

For each request kind, in each round, each server of the pair serves a batch of requests back to
back (which of the two goes first alternates by round), after a warm-up batch that is not
counted. The server's CPU is read from /proc (the master and its worker) before and after the
batch: CPU per request = the difference / the batch's size (the kernel counts in 10 ms ticks,
hence batches of 60 to 120). Wall latency is measured per request by the client. The table
gives medians over the rounds, and the ratio ASGI / WSGI; "wall - model" subtracts the fake
model's 10 ms from a question's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load
from load import (
    Candidate,
    Connection,
    Processes,
    SetupError,
    database_url,
    libpq_url,
    log,
    manage,
    proc_table,
    program,
    signup,
    start_fake,
    start_session,
    tree_cpu,
    wait_healthy,
)

BENCH_DB = "mockroom_requests"
RESULTS = Path(__file__).resolve().parent / "results" / "per_request.md"
MODEL_LATENCY = 0.010

# Both with the production server's configuration (deploy/gunicorn.conf.py: the access log,
# metrics in multiprocess mode), one worker each; the WSGI one with gthread workers instead.
SERVERS = {
    "asgi": (
        "gunicorn -c deploy/gunicorn.conf.py config.asgi:application "
        "--bind 127.0.0.1:{port} --workers 1 --graceful-timeout 10"
    ).split(),
    "wsgi": (
        "gunicorn -c deploy/gunicorn.conf.py config.wsgi:application "
        "--worker-class gthread --threads 8 "
        "--bind 127.0.0.1:{port} --workers 1 --graceful-timeout 10"
    ).split(),
}


@dataclass
class Server:
    name: str  # "asgi-llm", ...
    kind: str  # asgi | wsgi
    pid: int
    port: int
    candidate: Candidate | None = None
    session: str = ""
    conn: Connection | None = None
    pending: list[int] = field(default_factory=list)  # positions asked, not answered yet


@dataclass
class Sample:
    cpu_ms: float
    wall_ms: list[float]


def cpu_of(server: Server) -> float:
    cpu = tree_cpu(proc_table(), server.pid)
    if cpu is None:
        raise SetupError(f"{server.name}: no CPU reading")
    return cpu


async def send(server: Server, method: str, path: str, data: dict[str, str] | None = None):
    assert server.candidate is not None
    assert server.conn is not None
    page = server.session or "/interviews/"
    if method == "GET":
        headers = {"Cookie": server.candidate.headers(server.port, page)["Cookie"]}
        return await server.conn.request("GET", path, headers)
    headers = server.candidate.headers(server.port, page, htmx=True)
    return await server.conn.request("POST", path, headers, urlencode(data or {}).encode())


QUESTION_RE = re.compile(rb'id="q-(\d+)"')


async def ask(server: Server) -> object:
    answer = await send(
        server, "POST", f"{server.session}questions/", {"request_id": uuid.uuid4().hex}
    )
    if answer.status != 200:
        raise SetupError(f"{server.name}: question HTTP {answer.status} {answer.snippet()}")
    if match := QUESTION_RE.search(answer.body):
        server.pending.append(int(match.group(1)))
    return answer


async def feedback(server: Server) -> object:
    position = server.pending.pop(0)
    text = "Use a generator to stream rows lazily, keeping memory flat; measure before tuning."
    answer = await send(
        server, "POST", f"{server.session}questions/{position}/answer/", {"text": text}
    )
    if answer.status != 200:
        raise SetupError(f"{server.name}: answer HTTP {answer.status} {answer.snippet()}")
    return answer


def get(path: str) -> Callable[[Server], object]:
    async def run(server: Server) -> object:
        answer = await send(server, "GET", path or server.session)
        if answer.status != 200:
            raise SetupError(f"{server.name}: GET {path} HTTP {answer.status}")
        return answer

    return run


# kind -> (servers' source, the request, batch size)
KINDS: dict[str, tuple[str, Callable[[Server], object], int]] = {
    "health `/healthz`": ("bank", get("/healthz"), 120),
    "receipts `/tokens/`": ("bank", get("/tokens/"), 100),
    "dashboard `/interviews/`": ("bank", get("/interviews/"), 80),
    "session page": ("bank", get(""), 80),
    "question, bank (htmx)": ("bank", ask, 60),
    "question, LLM (htmx)": ("llm", ask, 60),
    "feedback, bank rubric (htmx)": ("bank", feedback, 60),
}


async def batch(server: Server, run: Callable[[Server], object], size: int) -> Sample:
    walls = []
    before = cpu_of(server)
    for _ in range(size):
        started = time.perf_counter()
        await run(server)  # type: ignore[misc]
        walls.append((time.perf_counter() - started) * 1000)
    return Sample(cpu_ms=(cpu_of(server) - before) * 1000 / size, wall_ms=walls)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SetupError("redis-server is not installed (apt-get install redis-server)")
    port = load.free_port()
    with tempfile.TemporaryDirectory() as directory:
        argv = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            directory,
            "--save",
            "",
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


async def prepare(server: Server, run: Callable[[Server], object], size: int) -> None:
    """What a batch of this kind needs first: questions to answer."""
    if run is feedback:
        while len(server.pending) < size:
            await ask(server)


async def measure(servers: dict[str, Server], rounds: int) -> dict[str, dict[str, list[Sample]]]:
    results: dict[str, dict[str, list[Sample]]] = {}
    for label, (source, run, size) in KINDS.items():
        pair = [servers[f"asgi-{source}"], servers[f"wsgi-{source}"]]
        log(f"  {label}")
        results[label] = {"asgi": [], "wsgi": []}
        for server in pair:  # warm-up, not counted
            await prepare(server, run, size // 4)
            for _ in range(size // 4):
                await run(server)  # type: ignore[misc]
        for index in range(rounds):
            for server in pair if index % 2 == 0 else reversed(pair):
                await prepare(server, run, size)
                results[label][server.kind].append(await batch(server, run, size))
    return results


def table(results: dict[str, dict[str, list[Sample]]]) -> str:
    lines = [
        "| request | ASGI (`make serve`) CPU | WSGI gthread CPU | ASGI / WSGI | ASGI wall p50 "
        "| WSGI wall p50 |",
        "|---|---|---|---|---|---|",
    ]
    for label, by_kind in results.items():
        cpu = {
            kind: statistics.median(s.cpu_ms for s in samples) for kind, samples in by_kind.items()
        }
        wall = {
            kind: statistics.median(w for s in samples for w in s.wall_ms)
            for kind, samples in by_kind.items()
        }
        extra = ""
        if "LLM" in label:
            extra = f" ({wall['asgi'] - MODEL_LATENCY * 1000:.1f} ms - model)"
        lines.append(
            f"| {label} | {cpu['asgi']:.1f} ms | {cpu['wsgi']:.1f} ms | "
            f"**{cpu['asgi'] / cpu['wsgi']:.2f}x** | {wall['asgi']:.1f} ms{extra} "
            f"| {wall['wsgi']:.1f} ms |"
        )
    return "\n".join(lines)


async def setup(servers: dict[str, Server]) -> None:
    for server in servers.values():
        server.candidate = await signup(
            server.port, f"req-{server.name}-{secrets.token_hex(3)}@example.com"
        )
        server.session = await start_session(server.port, server.candidate)
        server.conn = Connection(server.port)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if urlsplit(url).scheme not in ("postgres", "postgresql", "pgsql", "postgis"):
        log("DATABASE_URL must point at PostgreSQL: run through .ci/with-postgres")
        return 2
    admin = libpq_url(url)
    procs = Processes()
    load.BENCH_DB = BENCH_DB
    env = load.server_env(database_url(url, BENCH_DB)) | {
        "WELCOME_TOKENS": "5000",
        "LLM_MAX_IN_FLIGHT_PER_USER": "1",
    }
    load.LOG_DIR.mkdir(parents=True, exist_ok=True)
    try:
        with redis_server() as redis:
            env["REDIS_URL"] = redis
            load.recreate_database(admin)
            for command in (["migrate", "--noinput"], ["collectstatic", "--noinput", "-v0"]):
                done = manage(command, env)
                if done.returncode != 0:
                    raise SetupError(
                        f"manage.py {command[0]}: {(done.stdout + done.stderr)[-2000:]}"
                    )
            fake = start_fake(procs)
            asyncio.run(fake.stats(latency=MODEL_LATENCY))
            servers: dict[str, Server] = {}
            for kind, argv in SERVERS.items():
                for source in ("llm", "bank"):
                    port = load.free_port()
                    server_env = env | {
                        "OPENAI_BASE_URL": f"http://127.0.0.1:{fake.port}/v1",
                        "QUESTION_SOURCE": "openai" if source == "llm" else "bank",
                    }
                    log_path = load.LOG_DIR / f"requests-{kind}-{source}.log"
                    with log_path.open("wb") as output:
                        pid = procs.start(program(argv, port), server_env, output)
                    servers[f"{kind}-{source}"] = Server(f"{kind}-{source}", kind, pid, port)
                    asyncio.run(wait_healthy(procs.get(pid), port, log_path))
            log("servers up; signing up one candidate each")

            async def run() -> dict[str, dict[str, list[Sample]]]:
                await setup(servers)
                return await measure(servers, args.rounds)

            results = asyncio.run(run())
    except SetupError as exc:
        log(f"setup failed: {exc}")
        return 2
    finally:
        procs.stop_all()
        with contextlib.suppress(Exception):
            load.recreate_database(admin, create=False)
    report = table(results)
    print(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"# CPU per request, ASGI vs WSGI\n\n{report}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
