"""The bubblewrap engine: each run is a fresh bwrap sandbox around a harness (Debian's
`bubblewrap`, unprivileged user namespaces).

What the sandbox has: every namespace of its own (no network at all, its own PIDs, no host
users), no capabilities, an empty environment but PATH/HOME/LANG, read-only /usr (with
/usr/local hidden) and the /bin, /lib, /lib64 links, one harness file, a small private /tmp (the
only writable place), its own /proc and a minimal read-only /dev. Not there: /etc, /home, /root,
/work, the app's files and settings. Inside, util-linux `prlimit` sets the rlimits (CPU seconds,
data and address space, processes, file size, open files, no core dumps) and coreutils `timeout`
kills the run even if the app died; the app kills the whole process group at the wall-clock limit,
and reads stdout and stderr with caps. When the app runs as root, bwrap itself is started as
EXECUTION_USER (nobody), never as root.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from config.metrics import SANDBOX_RUNS
from interviews.execution.base import (
    JSON,
    CaseResult,
    Executor,
    Limits,
    LoopSemaphores,
    RunReport,
    Verdict,
)

logger = logging.getLogger(__name__)

HARNESS_DIR = Path(__file__).resolve().parent / "harness"
HARNESSES = {
    "python": "python_runner.py",
    "javascript": "node_runner.js",
    "sql": "sql_runner.py",
}
SANDBOX_HARNESS_DIR = "/sandbox"
# The sandbox's own /tmp: a private tmpfs, the only writable place inside, never the host's.
SANDBOX_TMP = "/tmp"  # noqa: S108

# The interpreter's own start-up footprint, allowed on top of Limits.memory_mb (RLIMIT_DATA), and
# what it reserves without using (RLIMIT_AS is then a backstop for memory RLIMIT_DATA does not
# count, such as shared mappings). Node reserves ~700 MB of address space at start for V8.
# The runs' CPU priority (nice): below the app's own processes.
RUN_NICENESS = 10

RUNTIME_DATA_MB = {"python": 32, "javascript": 64}
RUNTIME_RESERVED_MB = {"python": 128, "javascript": 1024}
# Python's main stack, for deep recursion (the harness raises the recursion limit).
PYTHON_STACK_MB = 64
STDERR_CAP = 64 * 1024
# Past Limits.output_bytes the harness reports the limit itself; this much more on the pipe is
# the protocol's own overhead before the app cuts it.
OUTPUT_SLACK = 64 * 1024
# After bwrap exits its pipes close at once; this is only a bound for the unexpected.
SETTLE_SECONDS = 5

MEMORY_PATTERN = re.compile(
    r"MemoryError|out of memory|Allocation failed|Cannot allocate memory|std::bad_alloc", re.I
)
# What bwrap, prlimit and timeout print when they fail (the harness never ran).
SANDBOX_ERROR = re.compile(r"^(?:bwrap|prlimit|timeout): .*$", re.M)
# RLIMIT_CPU's soft limit sends SIGXCPU, its hard limit (a second later) SIGKILL; timeout too.
CPU_SIGNALS = (signal.SIGXCPU, signal.SIGKILL)
USERNS_HINT = (
    " (bwrap needs unprivileged user namespaces: on Debian `sysctl kernel.unprivileged_userns_clone"
    "=1`, on Ubuntu 24.04 `sysctl kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor "
    "profile for bwrap; in a container, a seccomp profile that allows them)"
)
# A trivial program per language, its one case and what it must return.
PROBES: dict[str, tuple[str, str, dict[str, Any], JSON]] = {
    "python": ("def probe(x):\n    return [x + 1, 'ok']\n", "probe", {"args": [41]}, [42, "ok"]),
    "sql": ("SELECT 41 + 1, 'ok'", "", {"setup": ""}, [[42, "ok"]]),
    "javascript": (
        "function probe(x) { return [x + 1, 'ok']; }",
        "probe",
        {"args": [41]},
        [42, "ok"],
    ),
}


@dataclass(frozen=True, slots=True)
class Interpreter:
    path: str  # resolved, under /usr
    args: tuple[str, ...]


def _which(configured: str) -> str | None:
    """The configured program's real path (symlinks and /etc/alternatives resolved)."""
    found = shutil.which(configured)
    return os.path.realpath(found) if found else None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class BubblewrapExecutor(Executor):
    name = "bubblewrap"

    def __init__(self) -> None:
        self._reason = ""
        self._disabled_languages: dict[str, str] = {}
        self._slots = LoopSemaphores(max(1, int(getattr(settings, "EXECUTION_CONCURRENCY", 2))))
        self._drop: list[str] = []  # as root: setpriv's command to become EXECUTION_USER
        self._interpreters: dict[str, Interpreter] = {}
        self._sandbox_args: list[str] = []
        self._bwrap_options: set[str] = set()
        self._harness_sources: dict[str, bytes] = {}
        try:
            self._configure()
        except _Unavailable as error:
            self._reason = str(error)

    # --- configuration ---------------------------------------------------------------------

    def _configure(self) -> None:
        self._bwrap = _which("bwrap")
        if self._bwrap is None:
            raise _Unavailable("bwrap is not installed (apt-get install bubblewrap)")
        self._prlimit = _which("prlimit")
        self._timeout = _which("timeout")
        # Candidates' code runs at a lower CPU priority than the web server, so a burst of runs
        # slows the runs, not every other candidate's pages (coreutils' nice).
        nice = _which("nice")
        self._nice = [nice, "-n", str(RUN_NICENESS)] if nice else []
        if self._prlimit is None or self._timeout is None:
            raise _Unavailable("prlimit (util-linux) and timeout (coreutils) are needed")
        for path in (self._prlimit, self._timeout):
            if not path.startswith("/usr/"):
                raise _Unavailable(f"{path} is outside /usr, the only host directory bound")
        # Options newer than some distributions' bwrap (--disable-userns: 0.8): used when there.
        try:
            help_run = subprocess.run(  # noqa: S603  (bwrap itself, found on PATH)
                [self._bwrap, "--help"], capture_output=True, text=True, timeout=10, check=False
            )
            usage = help_run.stdout + help_run.stderr
        except (OSError, subprocess.TimeoutExpired) as error:
            raise _Unavailable(f"bwrap does not run: {error}") from None
        self._bwrap_options = set(re.findall(r"^\s+(--[a-z0-9-]+)", usage, re.M))
        if "--ro-bind-data" not in self._bwrap_options:
            raise _Unavailable("this bwrap is too old (no --ro-bind-data): bubblewrap >= 0.4")

        configured = getattr(settings, "EXECUTION_PYTHON", "/usr/bin/python3")
        python = _which(configured)
        if python is None or not python.startswith("/usr/"):
            raise _Unavailable(
                "EXECUTION_PYTHON must name a Python 3 under /usr (the only host directory the "
                f"sandbox sees): {configured!r} is " + (python or "not found")
            )
        self._interpreters["python"] = Interpreter(python, ("-I", "-S", "-B", "-X", "utf8"))
        self._interpreters["sql"] = self._interpreters["python"]
        node = _which(getattr(settings, "EXECUTION_NODE", "/usr/bin/node"))
        if node is None or not node.startswith("/usr/"):
            self._disabled_languages["javascript"] = (
                "JavaScript is not run on this server: node is not installed under /usr "
                "(apt-get install nodejs)"
            )
        else:
            self._interpreters["javascript"] = Interpreter(node, ())

        for language, filename in HARNESSES.items():
            self._harness_sources[language] = (HARNESS_DIR / filename).read_bytes()

        if os.geteuid() == 0:
            name = getattr(settings, "EXECUTION_USER", "nobody") or "nobody"
            try:
                entry = pwd.getpwnam(name) if not name.isdigit() else pwd.getpwuid(int(name))
            except KeyError:
                raise _Unavailable(f"EXECUTION_USER={name!r} is not a user of this host") from None
            if entry.pw_uid == 0 or entry.pw_gid == 0:
                raise _Unavailable(f"EXECUTION_USER={name!r} must not be root or in group root")
            # util-linux's setpriv drops to the user before bwrap runs: no preexec_fn (the app is
            # threaded), and not subprocess's user=/group= either, which uvloop (the production
            # server's event loop) does not accept.
            setpriv = _which("setpriv")
            if setpriv is None:
                raise _Unavailable("setpriv is missing (apt-get install util-linux)")
            self._drop = [
                setpriv,
                f"--reuid={entry.pw_uid}",
                f"--regid={entry.pw_gid}",
                "--clear-groups",
                "--",
            ]

        self._sandbox_args = self._sandbox_arguments()

    def _sandbox_arguments(self) -> list[str]:
        """bwrap's options shared by every run (the per-run /tmp size and harness come later)."""
        args = [
            "--unshare-all",  # user, ipc, pid, net (no --share-net: no network), uts, cgroup
            "--unshare-user",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--hostname",
            "sandbox",
            "--clearenv",
            "--setenv",
            "PATH",
            "/usr/bin:/bin",
            "--setenv",
            "HOME",
            SANDBOX_TMP,
            "--setenv",
            "TMPDIR",
            SANDBOX_TMP,
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--ro-bind",
            "/usr",
            "/usr",
        ]
        if "--disable-userns" in self._bwrap_options:
            args.append("--disable-userns")  # no user namespaces of its own inside
        local = Path("/usr/local")
        programs = [self._prlimit, self._timeout, *(i.path for i in self._interpreters.values())]
        uses_local = any((program or "").startswith("/usr/local/") for program in programs)
        if local.is_dir() and not uses_local:
            args += ["--tmpfs", "/usr/local"]  # admins' scripts and configuration live there
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            path = Path(top)
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), top]
            elif path.is_dir():  # a system without merged /usr
                args += ["--ro-bind", top, top]
        args += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev"]
        args += ["--dir", SANDBOX_HARNESS_DIR]
        return args

    # --- the interface ---------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return not self._reason

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def languages(self) -> frozenset[str]:
        if self._reason:
            return frozenset()
        return frozenset(HARNESSES) - set(self._disabled_languages)

    def probe(self) -> str:
        """A trivial program in each language through the real sandbox. "" if Python (and so
        SQL) works; a language that fails alone (node) is turned off with a warning."""
        if self._reason:
            return self._reason
        for language, (code, entry_point, case, expected) in PROBES.items():
            if language not in self.languages:
                continue
            report = self.run(
                language=language,
                code=code,
                entry_point=entry_point,
                schema="",
                cases=[{"name": "probe", **case}],
                limits=Limits(cpu_seconds=5, wall_seconds=15),
            )
            if report.completed and report.cases[0].ok and report.cases[0].value == expected:
                continue
            detail = report.error or report.stderr.strip() or f"verdict {report.verdict}"
            if report.cases and not report.cases[0].ok:
                detail = report.cases[0].error
            if language == "javascript":
                message = f"JavaScript is not run on this server: the probe failed: {detail}"
                logger.warning("Code execution: %s", message)
                self._disabled_languages[language] = message
                continue
            reason = f"the sandbox probe failed ({language}): {detail}"
            if "bwrap" in detail or "namespace" in detail:
                reason += USERNS_HINT
            self._reason = reason
            return reason
        return ""

    def command(self, language: str, limits: Limits, harness_fd: int) -> list[str]:
        """The whole command line of one run: bwrap, then inside timeout, prlimit, the harness."""
        interpreter = self._interpreters[language]
        data_mb = limits.memory_mb + RUNTIME_DATA_MB.get(language, 32)
        address_mb = data_mb + RUNTIME_RESERVED_MB.get(language, 128)
        harness = f"{SANDBOX_HARNESS_DIR}/{HARNESSES[language]}"
        tmp_bytes = max(limits.file_size_bytes, 64 * 1024)
        rlimits = [
            f"--cpu={limits.cpu_rlimit}:{limits.cpu_rlimit + 1}",  # SIGXCPU, then SIGKILL
            f"--data={data_mb << 20}",
            f"--nproc={limits.processes}",
            f"--fsize={limits.file_size_bytes}",
            f"--nofile={limits.open_files}",
            "--core=0",
        ]
        program = [interpreter.path, *interpreter.args]
        if language == "javascript":
            # V8 sizes its heap from this, so a big allocation fails as V8's "heap out of
            # memory" before RLIMIT_DATA; one V8 worker thread instead of one per core.
            program += [f"--max-old-space-size={limits.memory_mb}", "--v8-pool-size=1"]
            address_mb += limits.memory_mb  # V8 reserves address space in proportion
        else:
            rlimits.append(f"--stack={PYTHON_STACK_MB << 20}")
            address_mb += PYTHON_STACK_MB
        rlimits.append(f"--as={address_mb << 20}")
        return [
            *self._nice,
            *self._drop,
            self._bwrap or "bwrap",
            *self._sandbox_args,
            "--ro-bind-data",
            str(harness_fd),
            harness,
            # A /tmp of at most the file size limit (without --size, RLIMIT_FSIZE bounds each
            # file but not their number).
            *(["--size", str(tmp_bytes)] if "--size" in self._bwrap_options else []),
            "--tmpfs",
            SANDBOX_TMP,
            "--remount-ro",
            "/",
            "--chdir",
            SANDBOX_TMP,
            "--",
            self._timeout or "timeout",
            "--signal=KILL",
            f"{limits.wall_seconds + 2:g}s",  # the run ends even if the app died meanwhile
            self._prlimit or "prlimit",
            *rlimits,
            "--",
            *program,
            harness,
        ]

    async def arun(
        self,
        *,
        language: str,
        code: str,
        entry_point: str,
        schema: str,
        cases: Sequence[Mapping[str, Any]],
        limits: Limits,
    ) -> RunReport:
        if self._reason:
            return RunReport(verdict=Verdict.DISABLED, error=f"Code is not run: {self._reason}.")
        if language not in HARNESSES:
            raise ValueError(f"unknown language {language!r}")
        if language in self._disabled_languages:
            return RunReport(verdict=Verdict.DISABLED, error=self._disabled_languages[language])
        request = {
            "language": language,
            "code": code,
            "entry_point": entry_point,
            "schema": schema,
            # Only the inputs: expected values never enter the sandbox.
            "cases": [
                {"name": str(case.get("name", "")), "setup": str(case.get("setup") or "")}
                if language == "sql"
                else {"name": str(case.get("name", "")), "args": list(case.get("args") or [])}
                for case in cases
            ],
            "limits": {
                "cpu_seconds": limits.cpu_seconds,
                "memory_mb": limits.memory_mb,
                "output_bytes": limits.output_bytes,
            },
        }
        payload = json.dumps(request).encode()
        async with self._slots.get():
            report = await self._run(language, payload, len(cases), limits)
        SANDBOX_RUNS.labels(language, report.verdict).inc()
        return report

    # --- one run ---------------------------------------------------------------------------

    async def _run(self, language: str, payload: bytes, count: int, limits: Limits) -> RunReport:
        # The harness reaches bwrap through a memory file descriptor (--ro-bind-data), so the
        # app's own directory never needs to be readable by EXECUTION_USER.
        harness_fd = os.memfd_create("harness", os.MFD_CLOEXEC)
        started = time.monotonic()
        try:
            os.write(harness_fd, self._harness_sources[language])
            os.lseek(harness_fd, 0, os.SEEK_SET)
            try:
                process = await asyncio.create_subprocess_exec(
                    *self.command(language, limits, harness_fd),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    pass_fds=(harness_fd,),
                    start_new_session=True,  # its own process group, killed as one
                    cwd="/",
                    env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                )
            except OSError as error:
                return RunReport(
                    verdict=Verdict.SANDBOX_FAILURE,
                    error=f"the sandbox could not start: {error}",
                    wall_ms=_ms_since(started),
                )
        finally:
            os.close(harness_fd)

        stdout = _Capped(limits.output_bytes + OUTPUT_SLACK)
        stderr = _Capped(STDERR_CAP)
        killed_for = ""

        def kill(why: str) -> None:
            nonlocal killed_for
            killed_for = killed_for or why
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)

        async def feed() -> None:
            assert process.stdin is not None
            try:
                process.stdin.write(payload)
                await process.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the harness died before reading it all: its exit says why
            finally:
                process.stdin.close()

        async def read(stream: asyncio.StreamReader | None, into: _Capped, why: str) -> None:
            # To the end, past the cap too: the pipe must see its EOF (the kill brings it soon).
            assert stream is not None
            while chunk := await stream.read(65536):
                if not into.add(chunk):
                    kill(why)

        async def settle() -> None:
            """The sandbox is gone (bwrap's exit ends its PID namespace, and everything in it),
            so its pipes reach their EOF at once: read them to the end, reap the process, and
            leave nothing open, even when the run was cancelled."""
            rest = asyncio.gather(*tasks, process.wait())
            try:
                await asyncio.wait_for(asyncio.shield(rest), SETTLE_SECONDS)
            except TimeoutError:
                kill("wall")
                rest.cancel()

        tasks = [
            asyncio.ensure_future(feed()),
            asyncio.ensure_future(read(process.stdout, stdout, "output")),
            asyncio.ensure_future(read(process.stderr, stderr, "output")),
        ]
        try:
            async with asyncio.timeout(limits.wall_seconds):
                await process.wait()
        except TimeoutError:
            kill("wall")
        except asyncio.CancelledError:  # the request went away: nothing stays running
            kill("cancelled")
            await settle()
            raise
        await settle()
        return _report(
            count=count,
            stdout=bytes(stdout.data),
            stderr=bytes(stderr.data).decode(errors="replace"),
            returncode=process.returncode,
            killed_for=killed_for,
            limits=limits,
            wall_ms=_ms_since(started),
        )


class _Unavailable(Exception):
    pass


class _Capped:
    """Bytes read from a pipe, up to a cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()

    def add(self, chunk: bytes) -> bool:
        room = self.cap - len(self.data)
        self.data += chunk[: max(room, 0)]
        return len(chunk) <= room


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _report(
    *,
    count: int,
    stdout: bytes,
    stderr: str,
    returncode: int | None,
    killed_for: str,
    limits: Limits,
    wall_ms: float,
) -> RunReport:
    """A run's report from what its harness wrote and how it ended."""
    compiled: dict[str, Any] | None = None
    results: dict[int, CaseResult] = {}
    limit_hit = ""
    limit_case: int | None = None
    for raw in stdout.split(b"\n"):
        try:
            message = json.loads(raw)
        except ValueError:
            continue  # the last, cut line of a killed run
        if not isinstance(message, dict):
            continue
        if "compiled" in message:
            if compiled is None:
                compiled = message
                limit_hit = str(message.get("limit") or "")
            continue
        index = message.get("case")
        if not isinstance(index, int) or not 0 <= index < count or index in results:
            continue
        results[index] = _case(index, message)
        if message.get("limit") and not limit_hit:
            limit_hit, limit_case = str(message["limit"]), index
    cases = tuple(results[i] for i in sorted(results))
    tail = stderr[-2000:]
    loaded = compiled is not None and compiled.get("compiled") is True
    first_missing = next((i for i in range(count) if i not in results), None) if loaded else None
    stopped = limit_case if limit_case is not None else first_missing
    base: dict[str, Any] = {"cases": cases, "wall_ms": wall_ms, "stderr": tail}

    if compiled is not None and not loaded and not limit_hit:
        line = compiled.get("line")
        return RunReport(
            verdict=Verdict.SYNTAX_ERROR,
            error=str(compiled.get("error") or "the code did not load"),
            line=line if isinstance(line, int) else None,
            **base,
        )
    if returncode is not None and returncode < 0:
        signal_number = -returncode  # killed by the app
    elif returncode is not None and returncode > 128:
        signal_number = returncode - 128  # bwrap reports a signalled child as 128 + signal
    else:
        signal_number = 0
    if killed_for == "output" or limit_hit == "output":
        error = f"Output limit exceeded (more than {limits.output_bytes} bytes)"
        return RunReport(verdict=Verdict.OUTPUT_LIMIT, error=error, stopped_case=stopped, **base)
    if limit_hit == "memory" or (returncode != 0 and MEMORY_PATTERN.search(stderr)):
        error = f"Memory limit exceeded ({limits.memory_mb} MB)"
        return RunReport(verdict=Verdict.MEMORY_LIMIT, error=error, stopped_case=stopped, **base)
    if killed_for == "wall" or limit_hit == "time" or signal_number in CPU_SIGNALS:
        error = f"Time limit exceeded ({limits.cpu_rlimit} s of CPU, {limits.wall_seconds:g} s)"
        return RunReport(verdict=Verdict.TIME_LIMIT, error=error, stopped_case=stopped, **base)
    if compiled is None and SANDBOX_ERROR.search(tail):
        # bwrap, prlimit or timeout could not set the sandbox up: not the candidate's doing.
        error = SANDBOX_ERROR.findall(tail)[-1].strip()
        return RunReport(verdict=Verdict.SANDBOX_FAILURE, error=error, **base)
    if compiled is None or first_missing is not None or returncode != 0:
        how = f"killed by {_signal_name(signal_number)}" if signal_number else f"exit {returncode}"
        if signal_number == signal.SIGSEGV:
            how += ": often a recursion too deep"
        error = f"The program stopped before the end of the tests ({how})"
        return RunReport(verdict=Verdict.CRASHED, error=error, stopped_case=stopped, **base)
    return RunReport(verdict=Verdict.COMPLETED, **base)


def _case(index: int, message: dict[str, Any]) -> CaseResult:
    line = message.get("line")
    ms = message.get("ms")
    value: JSON = message.get("value")
    return CaseResult(
        case=index,
        ok=message.get("ok") is True,
        value=value,
        error=str(message.get("error") or ""),
        line=line if isinstance(line, int) and not isinstance(line, bool) else None,
        stdout=str(message.get("stdout") or ""),
        ms=float(ms) if isinstance(ms, (int, float)) else 0.0,
    )
