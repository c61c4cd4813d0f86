"""Mockroom's Python harness. Runs INSIDE the sandbox, on its /usr/bin/python3: standard library
only, nothing newer than Python 3.11 (the protocol: interviews/execution/harness/__init__.py).

The candidate's code is compiled as `solution.py` and executed in a fresh module; then
`entry_point(*args)` is called once per case, with print() captured per case.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

SOLUTION = "solution.py"
PRINT_CAP = 4096  # characters of print() output kept per case
# Recursive solutions over inputs of 10^4 must not hit Python's 1,000. The sandbox gives Python a
# 64 MB stack: 100,000 levels through functools.lru_cache fit in it; half of that leaves room for
# recursion through other C code.
RECURSION_LIMIT = 50_000


class OutputLimit(BaseException):
    """Raised out of print() once the run printed more than its budget (a BaseException, so that
    the candidate's `except Exception` does not swallow it)."""


class Unsupported(Exception):
    """A returned value that is not JSON."""


class MissingEntryPoint(Exception):
    """The code loaded but defines no function of the expected name."""


class Protocol:
    """The JSON-lines stream to the app, on the original stdout. File descriptor 1 then points to
    stderr, so a candidate's raw writes (os.write(1, ...)) cannot interleave with it."""

    def __init__(self, budget: int) -> None:
        self.pid = os.getpid()
        self.fd = os.dup(1)
        os.dup2(2, 1)
        self.budget = budget
        self.sent = 0
        self.dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode

    def encode(self, message: dict[str, Any]) -> bytes:
        return (self.dumps(message) + "\n").encode()

    def send(self, message: dict[str, Any] | bytes) -> None:
        if os.getpid() != self.pid:  # a process the candidate forked never speaks the protocol
            os._exit(0)
        data = message if isinstance(message, bytes) else self.encode(message)
        self.sent += len(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def fits(self, data: bytes) -> bool:
        """Whether `data` still fits in the run's output budget (with room for a last line)."""
        return self.sent + len(data) + 512 <= self.budget


class Capture(io.TextIOBase):
    """sys.stdout and sys.stderr during the candidate's code: keeps the first PRINT_CAP characters
    of each case, counts everything against the run's output budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.total = 0
        self.parts: list[str] = []
        self.kept = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.total += len(text)
        if self.total > self.budget:
            raise OutputLimit
        room = PRINT_CAP - self.kept
        if room > 0:
            self.parts.append(text[:room])
            self.kept += min(room, len(text))
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    @property
    def over_budget(self) -> bool:
        return self.total > self.budget

    def take(self) -> str:
        text = "".join(self.parts)
        if self.dropped:
            text += f"\n... ({self.dropped} more characters not shown)"
        self.parts, self.kept, self.dropped = [], 0, 0
        return text


def describe(error: BaseException) -> str:
    """`ZeroDivisionError: division by zero`, at most 1,000 characters."""
    name = type(error).__name__
    if isinstance(error, SyntaxError):
        message = error.msg or ""
    else:
        try:
            message = str(error)
        except Exception:
            message = ""
    return (f"{name}: {message}" if message else name)[:1000]


def line_of(error: BaseException) -> int | None:
    """The line of the candidate's code closest to where `error` was raised."""
    if isinstance(error, SyntaxError) and error.filename == SOLUTION:
        return error.lineno
    line = None
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename == SOLUTION:
            line = lineno
    return line


HINTS = {
    "set": "return a list",
    "frozenset": "return a list",
    "generator": "return a list: wrap it in list(...)",
    "map": "return a list: wrap it in list(...)",
    "filter": "return a list: wrap it in list(...)",
    "range": "return a list: wrap it in list(...)",
    "zip": "return a list: wrap it in list(...)",
    "dict_keys": "return a list: wrap it in list(...)",
    "dict_values": "return a list: wrap it in list(...)",
    "dict_items": "return a list: wrap it in list(...)",
    "Decimal": "return an int or a float",
    "Fraction": "return an int or a float",
    "bytes": "return a str",
}


def to_json(value: object, depth: int = 0) -> object:
    """The returned value as JSON data (tuples become lists), or Unsupported."""
    if depth > 200:
        raise Unsupported("Return value not supported: nested more than 200 levels deep")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Unsupported(f"Return value not supported: {value!r} is not a JSON number")
        return float(value)
    if isinstance(value, (list, tuple)):
        return [to_json(item, depth + 1) for item in value]
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise Unsupported(
                    f"Return type not supported: a dict key of type {type(key).__name__} "
                    "(JSON object keys are strings)"
                )
            result[str(key)] = to_json(item, depth + 1)
        return result
    name = type(value).__name__
    hint = HINTS.get(name)
    raise Unsupported(f"Return type not supported: {name}" + (f" ({hint})" if hint else ""))


def load(code: str, entry_point: str) -> Callable[..., object]:
    """The candidate's function: `code` run as a fresh module named `solution`."""
    compiled = compile(code, SOLUTION, "exec", dont_inherit=True)
    module = types.ModuleType("solution")
    module.__file__ = SOLUTION
    sys.modules["solution"] = module  # dataclasses and typing look classes' modules up there
    exec(compiled, module.__dict__)  # noqa: S102  (inside the sandbox: this is its purpose)
    function = module.__dict__.get(entry_point)
    if function is None and isinstance(module.__dict__.get("Solution"), type):
        function = getattr(module.__dict__["Solution"](), entry_point, None)  # LeetCode's style
    if not callable(function):
        raise MissingEntryPoint(
            f"no function named {entry_point!r} is defined (keep the starter's name)"
        )
    return function  # type: ignore[no-any-return]


def main() -> int:
    request = json.loads(sys.stdin.buffer.read().decode())
    limits = request.get("limits") or {}
    budget = int(limits.get("output_bytes", 1 << 20))
    protocol = Protocol(budget)
    capture = Capture(budget)
    sys.stdin = io.StringIO("")
    sys.stdout = sys.stderr = capture
    sys.setrecursionlimit(RECURSION_LIMIT)

    stopped = ""
    try:
        function = load(request["code"], request["entry_point"])
    except MemoryError:
        stopped = "memory"
    except MissingEntryPoint as error:
        protocol.send({"compiled": False, "error": f"NameError: {error}", "line": None})
        return 0
    except BaseException as error:  # a SyntaxError, or anything its top level raised
        if os.getpid() != protocol.pid:
            os._exit(0)
        protocol.send({"compiled": False, "error": describe(error), "line": line_of(error)})
        return 0
    if stopped:
        protocol.send({"compiled": False, "error": "MemoryError", "limit": "memory"})
        return 0
    protocol.send({"compiled": True})

    for index, case in enumerate(request["cases"]):
        args = case.get("args") or []
        result: dict[str, Any] = {"case": index}
        sys.stdout = sys.stderr = capture  # whatever an earlier case did with them
        started = time.perf_counter()
        try:
            value = function(*args)
        except OutputLimit:
            stopped = "output"
        except MemoryError:
            stopped = "memory"
        except BaseException as error:  # SystemExit and KeyboardInterrupt are the candidate's too
            result.update(ok=False, error=describe(error), line=line_of(error))
        else:
            result["ok"] = True
        result["ms"] = round((time.perf_counter() - started) * 1000, 3)
        if os.getpid() != protocol.pid:
            os._exit(0)
        if capture.over_budget:
            stopped = "output"
        if stopped:
            # The exception (and the memory its frames held) is gone: reporting is safe now.
            message = {
                "memory": "MemoryError: the memory limit was exceeded",
                "output": "Output limit exceeded: the code printed too much",
            }[stopped]
            protocol.send(
                {
                    **result,
                    "ok": False,
                    "error": message,
                    "limit": stopped,
                    "stdout": capture.take(),
                }
            )
            return 0
        if result["ok"]:
            try:
                result["value"] = to_json(value)
            except Unsupported as error:
                result.update(ok=False, error=str(error), line=None)
            except (RecursionError, ValueError) as error:  # a cycle; an int too long to print
                result.update(ok=False, error=f"Return value not supported: {describe(error)}")
            del value
        result["stdout"] = capture.take()
        data = protocol.encode(result)
        if not protocol.fits(data):
            too_big = f"Output limit exceeded: the result is {len(data)} bytes as JSON"
            protocol.send({"case": index, "ok": False, "error": too_big, "limit": "output"})
            return 0
        protocol.send(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
