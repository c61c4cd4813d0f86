"""Benchmark: the code sandbox (interviews/execution), through the configured Executor.

Four measurements, in Python and JavaScript:

1. Overhead. A trivial program (one case) through the Executor (bubblewrap, rlimits, the
   harness) vs. the same harness run directly by the same interpreter, with no sandbox; both
   from asyncio, alternated round by round. Reported: p50 of each and the p50 added by the
   sandbox. Goal: at most 50 ms added.
2. A submission: a typical problem's 9 hidden tests (one of worst-case size, 20,000 events) run
   and graded. Reported: p50 and p95 wall time. Goal: at most 1 s at p50.
3. Throughput: RUNS submissions started at once, run EXECUTION_CONCURRENCY at a time (the
   per-process bound). Reported: runs per second, with the machine's cores.
4. Memory: a run that allocates MEMORY_OK_MB under a MEMORY_LIMIT_MB cap completes (its peak RSS
   reported from inside), and one that tries 1 GB is killed and reported as memory limit
   exceeded (the time until then reported).

    SECRET_KEY=any .venv/bin/python bench/sandbox.py

Needs no database. The table goes to stdout and to bench/results/sandbox.md; progress to stderr.
The exit code is 1 if a goal is missed or a run ends otherwise than it must, 2 if the sandbox is
unusable here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "sandbox.md"

OVERHEAD_ROUNDS = 40
SUBMISSION_ROUNDS = 20
RUNS = 40
MEMORY_LIMIT_MB = 128
MEMORY_OK_MB = 96
GOAL_OVERHEAD_MS = 50
GOAL_SUBMISSION_MS = 1000
LANGUAGES = ("python", "javascript")

TRIVIAL = {
    "python": "def f(x):\n    return x + 1\n",
    "javascript": "function f(x) { return x + 1; }\n",
}
# A typical problem: the hour (timestamp // 3600) with the most events, the earliest on a tie,
# 0 for no events. The reference solutions, O(n).
BUSIEST = {
    "python": (
        "def busiest_hour(events):\n"
        "    counts = {}\n"
        "    for t in events:\n"
        "        counts[t // 3600] = counts.get(t // 3600, 0) + 1\n"
        "    if not counts:\n"
        "        return 0\n"
        "    return min(counts, key=lambda hour: (-counts[hour], hour))\n"
    ),
    "javascript": (
        "function busiest_hour(events) {\n"
        "  const counts = new Map();\n"
        "  for (const t of events) {\n"
        "    const h = Math.floor(t / 3600);\n"
        "    counts.set(h, (counts.get(h) || 0) + 1);\n"
        "  }\n"
        "  let best = 0, most = 0;\n"
        "  for (const [h, n] of counts) {\n"
        "    if (n > most || (n === most && h < best)) { best = h; most = n; }\n"
        "  }\n"
        "  return best;\n"
        "}\n"
    ),
}
MEMORY = {
    "python": (
        "import resource\n"
        "def f(mb):\n"
        "    hoard = bytearray(mb * 2**20)\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024\n"
    ),
    "javascript": (
        "const host = console.log.constructor('return process')();\n"
        "function f(mb) {\n"
        "  const hoard = new Uint8Array(mb * 2 ** 20).fill(1);\n"
        "  return Math.round(host.resourceUsage().maxRSS / 1024) + hoard.length * 0;\n"
        "}\n"
    ),
}


def log(message: str) -> None:
    print(f"sandbox: {message}", file=sys.stderr, flush=True)


def bootstrap() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def busiest_hour(events: list[int]) -> int:
    counts: dict[int, int] = {}
    for t in events:
        counts[t // 3600] = counts.get(t // 3600, 0) + 1
    return min(counts, key=lambda hour: (-counts[hour], hour)) if counts else 0


def submission_cases() -> list[dict[str, Any]]:
    inputs = [
        ("empty input", []),
        ("one event", [7200]),
        ("two hours, tie", [0, 3600]),
        ("hour boundary", [3599, 3600, 3601]),
        ("unsorted", [10_000, 3, 7300, 7400, 20, 7500]),
        ("duplicates", [5, 5, 5, 4000]),
        ("large timestamps", [1_700_000_000, 1_700_000_100, 1_600_000_000]),
        ("many hours", list(range(0, 360_000, 1800))),
        ("worst case size", list(range(20_000 * 97, 0, -97))),
    ]
    return [
        {"name": name, "args": [events], "expected": busiest_hour(events), "secret": True}
        for name, events in inputs
    ]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def direct_run(command: list[str], payload: bytes) -> float:
    """The harness run as is, no sandbox: the baseline of the overhead (ms)."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/"},
        cwd="/",
    )
    out, _ = await process.communicate(payload)
    elapsed = (time.perf_counter() - started) * 1000
    if b'"ok":true' not in out:
        raise RuntimeError(f"the direct run failed: {out[:200]!r}")
    return elapsed


def main() -> int:
    started = time.perf_counter()
    bootstrap()
    from interviews.execution import Limits, Verdict, executor_get, grade
    from interviews.execution.bubblewrap import HARNESS_DIR, HARNESSES

    executor = executor_get()
    if not executor.available:
        log(f"the sandbox is unusable here: {executor.reason}")
        return 2
    # The same interpreters with the same flags as in the sandbox (and as clean an environment).
    interpreters = {
        "python": [os.path.realpath("/usr/bin/python3"), "-I", "-S", "-B", "-X", "utf8"],
        "javascript": [
            os.path.realpath("/usr/bin/node"),
            f"--max-old-space-size={MEMORY_LIMIT_MB}",
            "--v8-pool-size=1",
        ],
    }
    languages = [language for language in LANGUAGES if language in executor.languages]
    limits = Limits.for_problem(time_limit_ms=2000, memory_limit_mb=MEMORY_LIMIT_MB)
    failures: list[str] = []
    results: dict[str, dict[str, Any]] = {language: {} for language in languages}

    async def sandboxed(language: str, code: str, entry: str, cases: list[dict[str, Any]]):
        return await executor.arun(
            language=language,
            code=code,
            entry_point=entry,
            schema="",
            cases=cases,
            limits=limits,
        )

    for language in languages:
        # 1. Overhead: sandbox vs. direct, alternated.
        log(f"1/4 {language}: trivial program, sandbox vs. direct x {OVERHEAD_ROUNDS}")
        cases = [{"name": "one", "args": [41]}]
        payload = json.dumps(
            {"language": language, "code": TRIVIAL[language], "entry_point": "f", "cases": cases}
        ).encode()
        command = [*interpreters[language], str(HARNESS_DIR / HARNESSES[language])]
        sandbox_ms: list[float] = []
        direct_ms: list[float] = []

        async def timed_sandbox(language: str = language, cases=cases) -> float:
            begin = time.perf_counter()
            report = await sandboxed(language, TRIVIAL[language], "f", cases)
            if not report.completed or report.cases[0].value != 42:
                raise RuntimeError(f"the sandboxed run failed: {report}")
            return (time.perf_counter() - begin) * 1000

        for index in range(OVERHEAD_ROUNDS + 1):
            for variant in ("sandbox", "direct") if index % 2 == 0 else ("direct", "sandbox"):
                if variant == "sandbox":
                    elapsed = asyncio.run(timed_sandbox())
                else:
                    elapsed = asyncio.run(direct_run(command, payload))
                if index:  # the first round warms up
                    (sandbox_ms if variant == "sandbox" else direct_ms).append(elapsed)
        results[language]["overhead"] = (
            statistics.median(sandbox_ms),
            statistics.median(direct_ms),
        )

        # 2. A submission: 9 hidden tests, run and graded.
        log(f"2/4 {language}: a 9-test submission x {SUBMISSION_ROUNDS}")
        problem = submission_cases()
        walls: list[float] = []
        for _ in range(SUBMISSION_ROUNDS):
            begin = time.perf_counter()
            report = asyncio.run(sandboxed(language, BUSIEST[language], "busiest_hour", problem))
            graded = grade(report, cases=problem, comparator="exact")
            walls.append((time.perf_counter() - begin) * 1000)
            if not graded.all_passed:
                failures.append(f"{language} submission: {graded.message}")
                break
        results[language]["submission"] = (statistics.median(walls), percentile(walls, 0.95))

        # 3. Throughput at the configured concurrency.
        log(f"3/4 {language}: {RUNS} submissions at once")

        async def burst(language: str = language, problem=problem) -> float:
            begin = time.perf_counter()
            reports = await asyncio.gather(
                *(
                    sandboxed(language, BUSIEST[language], "busiest_hour", problem)
                    for _ in range(RUNS)
                )
            )
            elapsed = time.perf_counter() - begin
            bad = [report.verdict for report in reports if not report.completed]
            if bad:
                failures.append(f"{language} throughput: {len(bad)} runs ended {bad[0]}")
            return RUNS / elapsed

        results[language]["throughput"] = asyncio.run(burst())

        # 4. Memory: under the cap, and far over it.
        log(f"4/4 {language}: {MEMORY_OK_MB} MB and 1 GB under a {MEMORY_LIMIT_MB} MB cap")
        report = asyncio.run(
            sandboxed(language, MEMORY[language], "f", [{"name": "ok", "args": [MEMORY_OK_MB]}])
        )
        if report.completed and report.cases[0].ok:
            results[language]["memory_ok"] = f"completed, peak RSS {report.cases[0].value} MB"
        else:
            results[language]["memory_ok"] = f"{report.verdict} {report.cases or report.error}"
            failures.append(f"{language}: {MEMORY_OK_MB} MB under the cap ended {report.verdict}")
        report = asyncio.run(
            sandboxed(language, MEMORY[language], "f", [{"name": "bomb", "args": [1024]}])
        )
        results[language]["memory_over"] = f"{report.verdict} after {report.wall_ms:.0f} ms"
        if report.verdict != Verdict.MEMORY_LIMIT:
            failures.append(f"{language}: 1 GB ended {report.verdict}, not memory_limit_exceeded")

    from django.conf import settings

    cores = os.cpu_count()
    concurrency = settings.EXECUTION_CONCURRENCY
    lines = [
        "| Measure | " + " | ".join(language.capitalize() for language in languages) + " | Goal |",
        "|---|" + "---|" * len(languages) + "---|",
    ]

    def row(label: str, cells: list[str], goal: str = "") -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {goal} |")

    row(
        "Trivial program, p50: sandbox / direct / **added**",
        [
            f"{sandbox:.0f} / {direct:.0f} / **{sandbox - direct:.0f} ms**"
            for sandbox, direct in (results[lang]["overhead"] for lang in languages)
        ],
        f"<= {GOAL_OVERHEAD_MS} ms added",
    )
    row(
        "Submission of 9 hidden tests (run + grade): **p50** / p95",
        [
            f"**{p50:.0f} ms** / {p95:.0f} ms"
            for p50, p95 in (results[lang]["submission"] for lang in languages)
        ],
        f"<= {GOAL_SUBMISSION_MS} ms at p50",
    )
    row(
        f"Submissions per second, {RUNS} at once, concurrency {concurrency}, {cores} cores",
        [f"**{results[lang]['throughput']:.1f}/s**" for lang in languages],
    )
    row(
        f"{MEMORY_OK_MB} MB under a {MEMORY_LIMIT_MB} MB cap",
        [results[lang]["memory_ok"] for lang in languages],
        "completes",
    )
    row(
        f"1 GB under a {MEMORY_LIMIT_MB} MB cap",
        [results[lang]["memory_over"] for lang in languages],
        "memory_limit_exceeded",
    )
    for language in languages:
        sandbox, direct = results[language]["overhead"]
        if sandbox - direct > GOAL_OVERHEAD_MS:
            failures.append(f"{language}: {sandbox - direct:.0f} ms added, goal {GOAL_OVERHEAD_MS}")
        if results[language]["submission"][0] > GOAL_SUBMISSION_MS:
            failures.append(f"{language}: submission p50 over {GOAL_SUBMISSION_MS} ms")
    footer = "Goals met." if not failures else "NOT met: " + "; ".join(failures)
    output = "\n".join(lines)
    print(output)
    print()
    print(footer)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    runtime = time.perf_counter() - started
    RESULTS.write_text(
        "# Mockroom sandbox benchmark\n\n"
        + output
        + "\n\n"
        + footer
        + "\n\n## Machine\n\n"
        + f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}\n"
        + f"- Cores: {cores}; OS: {platform.platform()}\n"
        + f"- Runtime: {runtime:.0f} s\n",
        encoding="utf-8",
    )
    log(f"wrote {RESULTS.relative_to(ROOT)} in {runtime:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
