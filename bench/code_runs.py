"""Code runs through the production server, and what they cost everyone else: `make serve`'s
command (one uvicorn worker, EXECUTION_CONCURRENCY as configured) with the real sandbox.

    SECRET_KEY=x .ci/with-postgres .venv/bin/python bench/code_runs.py [--runs 60]

A candidate buys a bank coding problem (Python) and then asks for RUNS runs of its examples at
once ("Run the examples", each a sandboxed process) with the reference solution, while another
client asks for /healthz every 50 ms. Reported: runs per second, their latency, and /healthz's
latency meanwhile (goal: p95 <= 100 ms: runs never block the event loop), against /healthz
alone before the burst, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import sys
import time
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
    fetch,
    libpq_url,
    log,
    manage,
    percentile,
    program,
    signup,
    wait_healthy,
)

BENCH_DB = "mockroom_code_runs"
SESSION_PATH_RE = re.compile(r"/interviews/[0-9a-f-]{36}/")
SERVER = (
    "gunicorn config.asgi:application --worker-class uvicorn_worker.UvicornWorker "
    "--bind 127.0.0.1:{port} --workers 1 --graceful-timeout 10 --no-control-socket"
).split()


async def post(port: int, candidate: Candidate, path: str, data: dict[str, str], page: str):
    conn = Connection(port)
    try:
        headers = candidate.headers(port, page, htmx=True) | {"Connection": "close"}
        return await conn.request("POST", path, headers, urlencode(data).encode())
    finally:
        conn.close()


async def healthz_sampler(port: int, stop: asyncio.Event) -> list[float]:
    latencies = []
    while not stop.is_set():
        started = time.perf_counter()
        answer = await fetch(port, "GET", "/healthz")
        if answer.status == 200:
            latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.05)
    return latencies


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    return f"p50 {percentile(ordered, 0.5):.1f} ms, p95 {percentile(ordered, 0.95):.1f} ms"


async def exercise(port: int, runs: int) -> list[str]:
    candidate = await signup(port, f"runs-{secrets.token_hex(3)}@example.com")
    form = {"topic": "algorithms", "kind": "code", "language": "python", "difficulty": "easy"}
    answer = await post(port, candidate, "/interviews/start/", form, "/interviews/")
    match = SESSION_PATH_RE.search(answer.headers.get("location", ""))
    if match is None:
        raise SetupError(f"no coding session: HTTP {answer.status} {answer.snippet()}")
    session = match.group(0)
    bought = await post(
        port, candidate, f"{session}questions/", {"request_id": secrets.token_hex(8)}, session
    )
    if bought.status != 200:
        raise SetupError(f"no problem bought: HTTP {bought.status} {bought.snippet()}")
    reference = reference_of(session)
    run_path = f"{session}questions/1/run/"

    stop = asyncio.Event()
    idle = asyncio.create_task(healthz_sampler(port, stop))
    await asyncio.sleep(3)
    stop.set()
    alone = await idle

    async def one() -> tuple[int, float]:
        started = time.perf_counter()
        answer = await post(port, candidate, run_path, {"text": reference}, session)
        return answer.status, (time.perf_counter() - started) * 1000

    stop = asyncio.Event()
    busy = asyncio.create_task(healthz_sampler(port, stop))
    started = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(runs)))
    wall = time.perf_counter() - started
    stop.set()
    during = await busy
    statuses = sorted({status for status, _ in results})
    return [
        "| What | Measured | Goal |",
        "|---|---|---|",
        f"| {runs} runs of the examples at once (HTTP {statuses}) | **{runs / wall:.1f} runs/s**; "
        f"latency {summary([ms for _, ms in results])} | report |",
        f"| `/healthz` alone, before | {summary(alone)} | |",
        f"| `/healthz` during the runs | **{summary(during)}** | p95 <= 100 ms |",
    ]


def reference_of(session_path: str) -> str:
    """The bought problem's reference solution, read from the bench database."""
    import psycopg

    session_id = session_path.strip("/").split("/")[-1]
    with psycopg.connect(libpq_url(os.environ["BENCH_URL"])) as conn:
        row = conn.execute(
            "SELECT q.problem->>'reference' FROM interviews_servedquestion s "
            "JOIN interviews_question q ON q.id = s.question_id WHERE s.session_id = %s",
            (session_id,),
        ).fetchone()
    if row is None:
        raise SetupError("the bought problem is not in the database")
    return str(row[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if urlsplit(url).scheme not in ("postgres", "postgresql", "pgsql", "postgis"):
        log("DATABASE_URL must point at PostgreSQL: run through .ci/with-postgres")
        return 2
    admin = libpq_url(url)
    load.BENCH_DB = BENCH_DB
    bench_url = database_url(url, BENCH_DB)
    os.environ["BENCH_URL"] = bench_url
    env = load.server_env(bench_url) | {"QUESTION_SOURCE": "bank", "RATE_LIMITS": "false"}
    procs = Processes()
    load.LOG_DIR.mkdir(parents=True, exist_ok=True)
    try:
        load.recreate_database(admin)
        for command in (["migrate", "--noinput"], ["collectstatic", "--noinput", "-v0"]):
            done = manage(command, env)
            if done.returncode != 0:
                raise SetupError(f"manage.py {command[0]}: {(done.stdout + done.stderr)[-2000:]}")
        port = load.free_port()
        log_path = load.LOG_DIR / "code-runs.log"
        with log_path.open("wb") as output:
            pid = procs.start(program(SERVER, port), env, output)
        asyncio.run(wait_healthy(procs.get(pid), port, log_path))
        lines = asyncio.run(exercise(port, args.runs))
    except SetupError as exc:
        log(f"setup failed: {exc}")
        return 2
    finally:
        procs.stop_all()
        with contextlib.suppress(Exception):
            load.recreate_database(admin, create=False)
    print("\n".join(lines))
    results = Path(__file__).resolve().parent / "results" / "code_runs.md"
    results.write_text("# Code runs through the server\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
