"""Running candidates' code: one interface, several engines (like Django's cache and mail backends).

A candidate's code never runs in the app's process. An `Executor` sends it, with the test cases'
inputs (never their expected values), to a harness inside a sandbox, and reads back one result per
case (the protocol is in `interviews/execution/harness/`). Grading, the comparison with the
expected values, happens in the app: `interviews.execution.compare`.

Engines, picked by the EXECUTION_BACKEND setting:

- `bubblewrap` (default): `interviews.execution.bubblewrap.BubblewrapExecutor`, a bwrap sandbox
  with no network, no host files and rlimits.
- `off`: `DisabledExecutor`, which runs nothing and says so.

`executor_get()` builds the configured engine once per process and proves it works by running a
trivial program through the real sandbox; when that fails it logs one warning and hands out a
`DisabledExecutor` carrying the reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import math
import threading
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

type JSON = bool | int | float | str | list[JSON] | dict[str, JSON] | None

LANGUAGES = ("python", "javascript", "sql")

# EXECUTION_BACKEND's values and the engine each names.
ENGINES = {
    "bubblewrap": "interviews.execution.bubblewrap.BubblewrapExecutor",
    "off": "interviews.execution.base.DisabledExecutor",
}


class Verdict(enum.StrEnum):
    """How a run ended, whatever its cases returned."""

    COMPLETED = "completed"  # every case ran and reported (passed or not: compare says)
    SYNTAX_ERROR = "syntax_error"  # the code did not load: a syntax error, or one raised loading it
    TIME_LIMIT = "time_limit_exceeded"
    MEMORY_LIMIT = "memory_limit_exceeded"
    OUTPUT_LIMIT = "output_limit_exceeded"
    CRASHED = "crashed"  # the harness died without reporting (a segfault, os._exit...)
    SANDBOX_FAILURE = "sandbox_failure"  # the sandbox could not run it: not the candidate's fault
    DISABLED = "disabled"  # this server does not run code (EXECUTION_BACKEND=off, no sandbox)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one run (the whole suite of cases) may use.

    `cpu_seconds` is rounded up to whole seconds (RLIMIT_CPU's unit); `memory_mb` is what the
    candidate's code may allocate, on top of the interpreter's own start-up footprint;
    `output_bytes` bounds the harness's output (printed text and returned values together);
    `file_size_bytes` bounds any file written, and the sandbox's whole /tmp.
    """

    cpu_seconds: float = 2.0
    memory_mb: int = 128
    wall_seconds: float = 10.0
    output_bytes: int = 1 << 20
    processes: int = 32
    file_size_bytes: int = 8 << 20
    open_files: int = 64

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "memory_mb", "wall_seconds", "output_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive.")
        # Node alone starts a handful of threads (each counts as a process) and opens a dozen
        # descriptors: below these floors it would not even start.
        if self.processes < 8 or self.open_files < 16 or self.file_size_bytes < 0:
            raise ValueError("Limits need processes >= 8, open_files >= 16, file_size_bytes >= 0.")

    @classmethod
    def for_problem(cls, *, time_limit_ms: int, memory_limit_mb: int) -> Limits:
        """A problem's limits (its `time_limit_ms` is CPU time for the whole hidden suite): the
        wall clock allows for the interpreter's start and a busy machine."""
        cpu = max(1, math.ceil(time_limit_ms / 1000))
        return cls(cpu_seconds=cpu, memory_mb=memory_limit_mb, wall_seconds=2 * cpu + 3)

    @property
    def cpu_rlimit(self) -> int:
        return max(1, math.ceil(self.cpu_seconds))


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One case as the harness reported it: a returned value, or an error."""

    case: int
    ok: bool
    value: JSON = None
    error: str = ""
    line: int | None = None  # in the candidate's code
    stdout: str = ""  # what the call printed, at most 4 KiB
    ms: float = 0.0


@dataclass(frozen=True, slots=True)
class RunReport:
    """A run: its verdict and the cases that reported, in order (fewer than asked when the run
    was stopped: `stopped_case` is the one running then, when known)."""

    verdict: Verdict
    cases: tuple[CaseResult, ...] = ()
    error: str = ""  # the syntax error, the limit hit, why the sandbox failed...
    line: int | None = None  # with a syntax error
    stopped_case: int | None = None
    wall_ms: float = 0.0
    stderr: str = field(default="", repr=False)  # the harness's stderr (capped), for logs

    @property
    def completed(self) -> bool:
        return self.verdict is Verdict.COMPLETED


class Executor:
    """The interface every engine implements."""

    # EXECUTION_BACKEND's name for the engine.
    name: ClassVar[str] = ""

    @property
    def available(self) -> bool:
        """Whether this engine runs code at all."""
        raise NotImplementedError

    @property
    def reason(self) -> str:
        """Why it does not (empty when it does)."""
        raise NotImplementedError

    @property
    def languages(self) -> frozenset[str]:
        """The languages it can run now (a subset of LANGUAGES)."""
        raise NotImplementedError

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
        """Run `code` on `cases` ({"name", "args"} for python and javascript, {"name", "setup"}
        for sql; any "expected" is left out, never sent) and report. Never raises for anything
        the candidate's code does; a fault of the sandbox is a SANDBOX_FAILURE verdict."""
        raise NotImplementedError

    def run(
        self,
        *,
        language: str,
        code: str,
        entry_point: str,
        schema: str,
        cases: Sequence[Mapping[str, Any]],
        limits: Limits,
    ) -> RunReport:
        """`arun` for synchronous callers (management commands, tests, a worker's task)."""
        return run_sync(
            self.arun(
                language=language,
                code=code,
                entry_point=entry_point,
                schema=schema,
                cases=cases,
                limits=limits,
            )
        )

    def probe(self) -> str:
        """Run a trivial program through the engine: "" when it works, else why not."""
        return ""


class DisabledExecutor(Executor):
    """Runs nothing, and says so: every run is a DISABLED verdict carrying the reason."""

    name = "off"

    def __init__(self, reason: str = "execution is turned off (EXECUTION_BACKEND=off)") -> None:
        self._reason = reason

    @property
    def available(self) -> bool:
        return False

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def languages(self) -> frozenset[str]:
        return frozenset()

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
        return RunReport(verdict=Verdict.DISABLED, error=f"Code is not run: {self._reason}.")


def run_sync[T](coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from synchronous code. Called from a thread that runs an event
    loop (sync code inside an async view), it runs on a thread of its own instead of failing."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="execution") as pool:
        return pool.submit(asyncio.run, coroutine).result()


class LoopSemaphores:
    """One asyncio.Semaphore of `size` per event loop: a semaphore belongs to the loop that first
    waits on it, and the sync wrapper runs each call in a loop of its own."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._lock:
            semaphore = self._by_loop.get(loop)
            if semaphore is None:
                semaphore = self._by_loop[loop] = asyncio.Semaphore(self.size)
            return semaphore


_executor: Executor | None = None
_executor_lock = threading.Lock()


def executor_build() -> Executor:
    """A new engine as the settings configure it, probed (no caching: see `executor_get`)."""
    backend = getattr(settings, "EXECUTION_BACKEND", "bubblewrap")
    try:
        engine_class = import_string(ENGINES.get(backend, backend))
    except ImportError as error:
        reason = f"EXECUTION_BACKEND={backend!r} cannot be loaded ({error})"
        logger.warning("Code execution is off: %s", reason)
        return DisabledExecutor(reason)
    engine: Executor = engine_class()
    if isinstance(engine, DisabledExecutor):
        return engine
    reason = engine.reason if not engine.available else engine.probe()
    if reason:
        logger.warning("Code execution is off: %s", reason)
        return DisabledExecutor(reason)
    return engine


def executor_get() -> Executor:
    """The engine of this process: built and probed at first use, then reused."""
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = executor_build()
    return _executor


async def aexecutor_get() -> Executor:
    """`executor_get` for async code: the first call probes on a thread, not on the loop."""
    if _executor is not None:
        return _executor
    return await asyncio.to_thread(executor_get)


def executor_reset() -> None:
    """Forget the engine (tests that change the settings): the next call builds it again."""
    global _executor
    with _executor_lock:
        _executor = None
