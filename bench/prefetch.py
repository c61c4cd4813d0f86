"""Benchmark: the next question prepared in the background (PREFETCH) vs. generated when asked.

Real components, side by side in one run: `make serve`'s server command (gunicorn with uvicorn
workers), the task worker (`manage.py db_worker`), a fake OpenAI-compatible model with a fixed
5 s latency (bench/fake_llm.py, its own process), PostgreSQL from DATABASE_URL. CANDIDATES
candidates, at once, each sign up through the form, start a session and ask for QUESTIONS
questions, taking THINK_SECONDS to answer each one before asking for the next. Measured: the
time from the click (the POST) to the question, for the 2nd and later questions of a session,
with PREFETCH on and off; p50 and p95, and the ratio. The first question of a session can never
be prepared, so it is reported apart. Then the ledger: every question received was charged once,
and prepared questions never.

    .ci/with-postgres .venv/bin/python bench/prefetch.py     (part of `make bench`)
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CANDIDATES = 8
QUESTIONS = 4
THINK_SECONDS = 10.0
MODEL_LATENCY = 5.0
GOAL_MS = 300
# Workers on the "prefetch" queue: each prepares one question at a time (a model call), so a
# candidate's next question is ready within the think time when workers x THINK_SECONDS >=
# CANDIDATES x MODEL_LATENCY.
PREFETCH_WORKERS = 4


def log(message: str) -> None:
    print(f"prefetch: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


class Candidate:
    """One browser's worth of state: cookies, the CSRF token, a session to buy from."""

    def __init__(self, base: str, email: str) -> None:
        self.base = base
        self.email = email
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.session_url = ""
        self.last_url = ""

    def request(self, path: str, data: dict[str, str] | None = None, htmx: bool = False) -> str:
        headers = {"Referer": self.base + path}
        if htmx:
            headers["HX-Request"] = "true"
            headers["X-CSRFToken"] = self.csrf()
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, headers=headers)
        with self.opener.open(request, timeout=120) as response:
            self.last_url = response.geturl()
            return str(response.read().decode())

    def csrf(self) -> str:
        return next(str(c.value) for c in self.jar if c.name == "csrftoken")

    def form_post(self, page_path: str, data: dict[str, str], action: str = "") -> str:
        page = self.request(page_path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, f"no CSRF token on {page_path}"
        return self.request(action or page_path, {**data, "csrfmiddlewaretoken": token[1]})

    def sign_up_and_start(self) -> None:
        password = "Quiet-Harbor-42"
        self.form_post(
            "/accounts/signup/",
            {"email": self.email, "password1": password, "password2": password},
        )
        self.form_post(
            "/interviews/", {"topic": "python", "difficulty": "medium"}, "/interviews/start/"
        )
        self.session_url = urllib.parse.urlparse(self.last_url).path
        assert re.fullmatch(r"/interviews/[0-9a-f-]{36}/", self.session_url), self.last_url

    def ask(self, number: int) -> float:
        """Seconds from the click to the question."""
        started = time.perf_counter()
        page = self.request(
            f"{self.session_url}questions/", {"request_id": secrets.token_hex(8)}, htmx=True
        )
        elapsed = time.perf_counter() - started
        assert 'class="card question-card"' in page, f"question {number}: {page[:200]}"
        return elapsed


def start(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_healthy(base: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(240):
        if process.poll() is not None:
            raise RuntimeError("the server stopped while starting")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError("/healthz did not answer")


def run_variant(name: str, prefetch: bool, env: dict[str, str], logs: Path) -> dict[str, list]:
    port = free_port()
    env = {**env, "PREFETCH": "true" if prefetch else "false", "PORT": str(port)}
    server = start(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "config.asgi:application",
            "--worker-class",
            "uvicorn_worker.UvicornWorker",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--no-control-socket",
        ],
        env,
        logs / f"server-{name}.log",
    )
    workers = [
        start(
            [PYTHON, "manage.py", "db_worker", "--queue-name", "prefetch", "--interval", "0.2"],
            env,
            logs / f"worker-{name}-{n}.log",
        )
        for n in range(PREFETCH_WORKERS)
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, server)
        batch = secrets.token_hex(3)
        candidates = [Candidate(base, f"{name}-{batch}-{n}@example.com") for n in range(CANDIDATES)]
        for candidate in candidates:
            candidate.sign_up_and_start()
        times: dict[str, list] = {"first": [], "later": [], "errors": []}
        lock = threading.Lock()

        def practise(candidate: Candidate) -> None:
            try:
                for number in range(1, QUESTIONS + 1):
                    elapsed = candidate.ask(number)
                    with lock:
                        times["first" if number == 1 else "later"].append(elapsed)
                    if number < QUESTIONS:
                        time.sleep(THINK_SECONDS)  # answering
            except Exception as exc:  # reported, not hidden
                with lock:
                    times["errors"].append(repr(exc))

        log(f"{name}: {CANDIDATES} candidates x {QUESTIONS} questions, {THINK_SECONDS:g} s each")
        threads = [threading.Thread(target=practise, args=(c,)) for c in candidates]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return times
    finally:
        stop(server)
        for worker in workers:
            stop(worker)


def main() -> int:
    logs = ROOT / "bench" / "results"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "ACCOUNT_EMAIL_VERIFICATION": "none",
        "RATE_LIMITS": "false",
        "WELCOME_TOKENS": "20",
        "QUESTION_SOURCE": "openai",
        "OPENAI_API_KEY": "bench",
        "LLM_TIMEOUT_SECONDS": "20",
        "LLM_MAX_RETRIES": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    fake = subprocess.Popen(
        [PYTHON, "bench/fake_llm.py", "--port", "0", "--latency", str(MODEL_LATENCY)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert fake.stdout is not None
        port = int(fake.stdout.readline().split()[-1])
        env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
        results = {
            "on": run_variant("prefetch-on", True, env, logs),
            "off": run_variant("prefetch-off", False, env, logs),
        }
    finally:
        stop(fake)
    check = subprocess.run(
        [PYTHON, "manage.py", "ledger_verify"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    counts = subprocess.run(
        [
            PYTHON,
            "manage.py",
            "shell",
            "-v0",
            "-c",
            "from ledger.models import LedgerEntry as E; from interviews.models import "
            "PreparedQuestion as P, ServedQuestion as S; "
            "print(E.objects.filter(kind='debit').count(), S.objects.count(), "
            "P.objects.filter(status='taken').count(), P.objects.count())",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    ).stdout.split()
    print(
        f"\n**Prefetch** ({CANDIDATES} candidates at once, {QUESTIONS} questions each, model "
        f"{MODEL_LATENCY:g} s, {THINK_SECONDS:g} s to answer each, {PREFETCH_WORKERS} prefetch "
        "workers):\n"
    )
    print("| PREFETCH | 2nd and later questions: p50 / p95 | 1st question: p50 | errors |")
    print("|---|---|---|---|")
    for key in ("on", "off"):
        later, first = results[key]["later"], results[key]["first"]
        print(
            f"| {key} | **{statistics.median(later) * 1000:.0f} ms** / "
            f"{percentile(later, 0.95) * 1000:.0f} ms | {statistics.median(first) * 1000:.0f} ms "
            f"| {len(results[key]['errors'])} |"
        )
    on, off = statistics.median(results["on"]["later"]), statistics.median(results["off"]["later"])
    print(
        f"\nRatio (off / on, p50 of the 2nd and later questions): **{off / on:.1f}x**; "
        f"goal: under {GOAL_MS} ms with prefetch: "
        f"{'met' if on * 1000 < GOAL_MS else 'not met'}.\n"
        f"`manage.py ledger_verify`: {check.stdout.strip() or check.stderr.strip()}; debits "
        f"{counts[0]} = questions served {counts[1]}; prepared questions bought "
        f"{counts[2]} of {counts[3]} prepared (the rest discarded or still ready, never charged)."
    )
    errors = results["on"]["errors"] + results["off"]["errors"]
    for error in errors[:5]:
        log(f"error: {error}")
    return 1 if errors or check.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
