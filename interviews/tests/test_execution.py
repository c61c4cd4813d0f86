"""The code sandbox (interviews/execution), through the REAL bubblewrap sandbox: what candidates'
code can do (return, fail, print) and what it cannot (loop forever, eat memory, fork without end,
reach the network or the host's files, write outside its /tmp, flood the output). Then the
comparators and the grading, which need no sandbox.

The sandbox must be usable here: elsewhere a test that needs it is skipped with the reason, but
with CI=true an unusable sandbox fails the suite instead (the `sandbox` fixture).
"""

import asyncio
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from interviews.execution import (
    CaseResult,
    CaseStatus,
    DisabledExecutor,
    Executor,
    Limits,
    RunReport,
    Verdict,
    aexecutor_get,
    compare,
    executor_get,
    executor_reset,
    grade,
)
from interviews.execution.base import LoopSemaphores, run_sync
from interviews.execution.bubblewrap import BubblewrapExecutor

QUICK = Limits(cpu_seconds=1, memory_mb=64, wall_seconds=5, output_bytes=64 * 1024)


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unusable(reason: str) -> None:
    if _ci():
        pytest.fail(f"CI=true and the code sandbox is unusable: {reason}", pytrace=False)
    pytest.skip(f"the code sandbox is unusable here: {reason}")


@pytest.fixture(scope="session")
def sandbox() -> BubblewrapExecutor:
    """The real engine, probed once. Unusable: skipped, or failed under CI=true."""
    engine = BubblewrapExecutor()
    reason = engine.reason or engine.probe()
    if reason:
        _unusable(reason)
    return engine


@pytest.fixture(scope="session")
def node_sandbox(sandbox: BubblewrapExecutor) -> BubblewrapExecutor:
    if "javascript" not in sandbox.languages:
        _unusable("JavaScript: node is missing or failed its probe")
    return sandbox


def run(engine: Executor, language: str, code: str, cases, *, limits=QUICK, entry="f", schema=""):
    return engine.run(
        language=language,
        code=code,
        entry_point=entry,
        schema=schema,
        cases=cases,
        limits=limits,
    )


def timed(engine, language, code, cases, **kwargs) -> tuple[RunReport, float]:
    started = time.monotonic()
    report = run(engine, language, code, cases, **kwargs)
    return report, time.monotonic() - started


def sleepers(seconds: str) -> list[str]:
    """Host processes running `sleep <seconds>`: the tests' sandboxed programs sleep for an odd
    number of seconds of their own, so that other runs on the host do not count."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline[:2] in ([b"sleep", seconds.encode()], [b"/usr/bin/sleep", seconds.encode()]):
            found.append(entry.name)
    return found


def no_sleepers_soon(seconds: str) -> list[str]:
    """The sleepers left after a moment (a killed sandbox's processes die with it)."""
    deadline = time.monotonic() + 2
    while (found := sleepers(seconds)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


@pytest.fixture
def host_listener():
    """A TCP server on the host's 127.0.0.1, accepting: the sandbox must not reach it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    socket.create_connection(("127.0.0.1", port), timeout=2).close()  # reachable from the host
    yield port
    stop.set()
    thread.join(timeout=2)
    server.close()


TWO_SUM = [
    {"name": "first two", "args": [[2, 7, 11, 15], 9], "expected": [0, 1]},
    {"name": "last two", "args": [[3, 2, 4], 6], "expected": [1, 2]},
    {"name": "duplicates", "args": [[3, 3], 6], "expected": [0, 1], "secret": True},
]


# --- Python -------------------------------------------------------------------------------


class TestPython:
    def test_correct(self, sandbox):
        code = (
            "def f(nums, target):\n"
            "    seen = {}\n"
            "    for i, n in enumerate(nums):\n"
            "        if target - n in seen:\n"
            "            print('found', i)\n"
            "            return (seen[target - n], i)\n"
            "        seen[n] = i\n"
        )
        report = run(sandbox, "python", code, TWO_SUM)
        assert report.verdict == Verdict.COMPLETED
        assert [case.value for case in report.cases] == [[0, 1], [1, 2], [0, 1]]  # tuples: lists
        assert report.cases[0].stdout == "found 1\n"
        graded = grade(report, cases=TWO_SUM, comparator="exact")
        assert graded.all_passed
        assert (graded.summary, graded.message) == ("3 of 3 passed", "All 3 tests passed")

    def test_wrong(self, sandbox):
        code = "def f(nums, target):\n    return [0, len(nums) - 1]\n"
        graded = grade(run(sandbox, "python", code, TWO_SUM), cases=TWO_SUM, comparator="exact")
        assert graded.summary == "1 of 3 passed"
        assert graded.message == "Wrong answer on test 'first two': expected [0, 1], got [0, 3]"
        assert graded.first_failure.name == "first two"
        assert graded.first_failure.got_text == "[0, 3]"

    def test_exception_reports_type_message_and_line(self, sandbox):
        code = "def f(values):\n    total = sum(values)\n\n    return total / len(values)\n"
        cases = [
            {"name": "three", "args": [[1, 2, 3]], "expected": 2},
            {"name": "empty input", "args": [[]], "expected": 0},
        ]
        report = run(sandbox, "python", code, cases)
        assert report.verdict == Verdict.COMPLETED
        failed = report.cases[1]
        assert (failed.ok, failed.error, failed.line) == (
            False,
            "ZeroDivisionError: division by zero",
            4,
        )
        assert grade(report, cases=cases, comparator="exact").message == (
            "Runtime error on test 'empty input': ZeroDivisionError: division by zero (line 4)"
        )

    def test_syntax_error(self, sandbox):
        code = "def f(values):\n    x = [\n    return x +\n"
        report = run(sandbox, "python", code, TWO_SUM)
        assert report.verdict == Verdict.SYNTAX_ERROR
        assert report.error.startswith("SyntaxError: ")
        assert report.line in (2, 3)
        graded = grade(report, cases=TWO_SUM, comparator="exact")
        assert graded.message.startswith(f"Syntax error on line {report.line}: ")
        assert {case.status for case in graded.cases} == {CaseStatus.NOT_RUN}

    def test_load_error_and_missing_function(self, sandbox):
        report = run(sandbox, "python", "import numpy\n", TWO_SUM)
        assert report.verdict == Verdict.SYNTAX_ERROR
        graded = grade(report, cases=TWO_SUM, comparator="exact")
        assert graded.message == (
            "Your code did not load: ModuleNotFoundError: No module named 'numpy' (line 1)"
        )
        report = run(sandbox, "python", "def solve(nums, target):\n    pass\n", TWO_SUM)
        assert report.error == (
            "NameError: no function named 'f' is defined (keep the starter's name)"
        )

    def test_unsupported_return_type(self, sandbox):
        report = run(sandbox, "python", "def f(a):\n    return {a}\n", [{"name": "s", "args": [1]}])
        assert report.cases[0].error == "Return type not supported: set (return a list)"

    def test_infinite_loop_is_stopped_at_the_cpu_limit(self, sandbox):
        cases = [
            {"name": "small", "args": [1], "expected": 1},
            {"name": "worst case size", "args": [2], "expected": 2},
        ]
        code = "def f(n):\n    while n > 1:\n        pass\n    return n\n"
        report, elapsed = timed(sandbox, "python", code, cases)
        assert report.verdict == Verdict.TIME_LIMIT
        assert elapsed < 4
        assert [case.case for case in report.cases] == [0]
        graded = grade(report, cases=cases, comparator="exact")
        assert graded.message == "Time limit exceeded on test 'worst case size'"
        assert graded.summary == "1 of 2 passed"

    def test_sleeping_is_stopped_at_the_wall_clock_limit(self, sandbox):
        # The harness becomes `sleep 61.1`, so that its end can be seen from the host.
        code = "import os\ndef f():\n    os.execv('/usr/bin/sleep', ['sleep', '61.1'])\n"
        limits = Limits(cpu_seconds=1, wall_seconds=1.5)
        report, elapsed = timed(sandbox, "python", code, [{"name": "s"}], limits=limits)
        assert report.verdict == Verdict.TIME_LIMIT
        assert elapsed < 3
        assert no_sleepers_soon("61.1") == []

    def test_memory_bomb(self, sandbox):
        code = "def f():\n    hoard = []\n    while True:\n        hoard.append(bytearray(10**6))\n"
        report, elapsed = timed(sandbox, "python", code, [{"name": "bomb"}])
        assert report.verdict == Verdict.MEMORY_LIMIT
        assert elapsed < 3
        assert grade(report, cases=[{"name": "bomb"}], comparator="exact").message == (
            "Memory limit exceeded on test 'bomb'"
        )

    def test_memory_past_the_data_limit_through_a_shared_mapping_fails_too(self, sandbox):
        code = "import mmap\ndef f():\n    m = mmap.mmap(-1, 2 * 10**9)\n    return len(m)\n"
        report = run(sandbox, "python", code, [{"name": "shared"}])
        assert not report.cases[0].ok
        assert "Cannot allocate memory" in report.cases[0].error

    def test_memory_under_the_limit_works(self, sandbox):
        code = "def f():\n    return len(bytearray(40 * 10**6))\n"
        report = run(sandbox, "python", code, [{"name": "40 MB"}])
        assert report.cases[0].value == 40 * 10**6

    def test_deep_recursion_works(self, sandbox):
        code = (
            "from functools import lru_cache\n"
            "@lru_cache(maxsize=None)\n"
            "def depth(n):\n"
            "    return 0 if n == 0 else 1 + depth(n - 1)\n"
            "def f(n):\n"
            "    return depth(n)\n"
        )
        report = run(sandbox, "python", code, [{"name": "deep", "args": [15000]}])
        assert report.cases[0].value == 15000

    def test_fork_bomb_is_contained_and_quick(self, sandbox):
        code = (
            "import os, time\n"
            "def f():\n"
            "    forked = 0\n"
            "    while True:\n"
            "        try:\n"
            "            if os.fork() == 0:\n"
            "                os.execv('/usr/bin/sleep', ['sleep', '61.2'])\n"
            "        except OSError as error:\n"
            "            return [forked, type(error).__name__]\n"
            "        forked += 1\n"
        )
        report, elapsed = timed(sandbox, "python", code, [{"name": "bomb"}])
        assert report.verdict == Verdict.COMPLETED
        forked, error = report.cases[0].value
        assert forked < QUICK.processes
        assert error == "BlockingIOError"
        assert elapsed < 3
        assert no_sleepers_soon("61.2") == []  # the sleeping children died with the sandbox

    def test_network_is_unreachable(self, sandbox, host_listener):
        code = (
            "import socket\n"
            "def f(port):\n"
            "    interfaces = [name for _, name in socket.if_nameindex()]\n"
            "    try:\n"
            "        socket.create_connection(('127.0.0.1', port), timeout=2)\n"
            "    except OSError as error:\n"
            "        return [interfaces, type(error).__name__]\n"
            "    return [interfaces, 'connected']\n"
        )
        report = run(sandbox, "python", code, [{"name": "net", "args": [host_listener]}])
        assert report.cases[0].value == [["lo"], "ConnectionRefusedError"]

    def test_host_files_are_absent(self, sandbox):
        paths = [
            "/etc/passwd",
            "/etc",
            "/work",
            "/root",
            "/home",
            str(django_settings.BASE_DIR),
            str(Path(django_settings.BASE_DIR) / "config" / "settings.py"),
            "/usr/local/bin",
        ]
        code = "import os\ndef f(paths):\n    return [p for p in paths if os.path.exists(p)]\n"
        report = run(sandbox, "python", code, [{"name": "files", "args": [paths]}])
        assert report.cases[0].value == []
        code = "def f():\n    return open('/etc/passwd').read()\n"
        report = run(sandbox, "python", code, [{"name": "passwd"}])
        assert report.cases[0].error.startswith("FileNotFoundError")

    def test_writes_only_in_its_own_small_tmp(self, sandbox):
        code = (
            "def f(path):\n"
            "    with open(path, 'w') as file:\n"
            "        file.write('x')\n"
            "    return path\n"
        )
        # The sandbox's own /tmp and /dev, not the host's:
        places = ["/tmp/ok", "/usr/x", "/x", "/sandbox/x", "/dev/x", "/dev/shm/x", "/proc/x"]  # noqa: S108
        cases = [{"name": place, "args": [place]} for place in places]
        report = run(sandbox, "python", code, cases)
        assert [case.ok for case in report.cases] == [True] + [False] * (len(places) - 1)
        assert not Path("/x").exists()
        big = "def f():\n    open('/tmp/big', 'w').write('x' * (20 * 2**20))\n"
        report = run(sandbox, "python", big, [{"name": "big"}])
        assert report.cases[0].error.startswith(("OSError: [Errno 27]", "OSError: [Errno 28]"))

    def test_output_flood_is_capped(self, sandbox):
        code = "def f():\n    while True:\n        print('spam' * 100)\n"
        report, elapsed = timed(sandbox, "python", code, [{"name": "flood"}])
        assert report.verdict == Verdict.OUTPUT_LIMIT
        assert elapsed < 3
        assert grade(report, cases=[{"name": "flood"}], comparator="exact").message == (
            "Output limit exceeded on test 'flood': too much printed or returned"
        )
        raw = "import os\ndef f():\n    while True:\n        os.write(1, b'x' * 65536)\n"
        report, elapsed = timed(sandbox, "python", raw, [{"name": "raw flood"}])
        assert report.verdict == Verdict.OUTPUT_LIMIT
        assert elapsed < 3

    def test_prints_are_capped_per_case(self, sandbox):
        code = "def f():\n    for i in range(2000):\n        print(i)\n    return 1\n"
        report = run(sandbox, "python", code, [{"name": "chatty"}])
        assert report.cases[0].value == 1
        assert len(report.cases[0].stdout) < 4200
        assert report.cases[0].stdout.endswith("more characters not shown)")

    def test_expected_values_never_enter_the_sandbox(self, sandbox):
        code = (
            "import json, sys\n"
            "def f():\n"
            "    return json.dumps([frame.f_locals.get('request') for frame in\n"
            "                       [sys._getframe(i) for i in range(1, 3)]])\n"
        )
        cases = [{"name": "peek", "args": [], "expected": "THE-EXPECTED-VALUE"}]
        report = run(sandbox, "python", code, cases)
        assert "peek" in report.cases[0].value
        assert "THE-EXPECTED-VALUE" not in report.cases[0].value

    def test_runs_as_an_unprivileged_user_without_capabilities(self, sandbox):
        code = (
            "import os\n"
            "def f():\n"
            "    status = open('/proc/self/status').read().splitlines()\n"
            "    caps = [line.split()[1] for line in status if line.startswith('CapEff')]\n"
            "    return [os.getuid(), caps[0], sorted(os.environ)]\n"
        )
        uid, caps, env = run(sandbox, "python", code, [{"name": "who"}]).cases[0].value
        assert uid != 0
        assert caps == "0000000000000000"
        assert env == ["HOME", "LANG", "PATH", "PWD", "TMPDIR"]


# --- JavaScript ---------------------------------------------------------------------------

# The vm context is not the boundary: code that escapes it reaches Node's `process`, and the
# sandbox around the process must still hold.
ESCAPE = "const host = console.log.constructor('return process')();\n"


class TestJavaScript:
    def test_correct(self, node_sandbox):
        code = (
            "const f = (nums, target) => {\n"
            "  const seen = new Map();\n"
            "  for (let i = 0; i < nums.length; i++) {\n"
            "    if (seen.has(target - nums[i])) { console.log('found', i);"
            " return [seen.get(target - nums[i]), i]; }\n"
            "    seen.set(nums[i], i);\n"
            "  }\n"
            "};\n"
        )
        report = run(node_sandbox, "javascript", code, TWO_SUM)
        assert report.verdict == Verdict.COMPLETED
        assert report.cases[0].stdout == "found 1\n"
        assert grade(report, cases=TWO_SUM, comparator="exact").all_passed

    def test_wrong(self, node_sandbox):
        code = "function f(nums, target) { return [0, nums.length - 1]; }"
        graded = grade(
            run(node_sandbox, "javascript", code, TWO_SUM), cases=TWO_SUM, comparator="exact"
        )
        assert graded.summary == "1 of 3 passed"
        assert graded.message == "Wrong answer on test 'first two': expected [0, 1], got [0, 3]"

    def test_exception_reports_type_message_and_line(self, node_sandbox):
        code = "function f(user) {\n  const name = user.name;\n  return name.length;\n}\n"
        cases = [{"name": "named", "args": [{"name": "ab"}]}, {"name": "no name", "args": [{}]}]
        report = run(node_sandbox, "javascript", code, cases)
        assert report.cases[0].value == 2
        failed = report.cases[1]
        assert failed.error == "TypeError: Cannot read properties of undefined (reading 'length')"
        assert failed.line == 3

    def test_syntax_error(self, node_sandbox):
        report = run(node_sandbox, "javascript", "function f(a) {\n  return a +;\n}\n", TWO_SUM)
        assert report.verdict == Verdict.SYNTAX_ERROR
        assert (report.error, report.line) == ("SyntaxError: Unexpected token ';'", 2)
        graded = grade(report, cases=TWO_SUM, comparator="exact")
        assert graded.message == "Syntax error on line 2: Unexpected token ';'"

    def test_unsupported_return_type(self, node_sandbox):
        report = run(node_sandbox, "javascript", "function f() { return new Set([1]); }", [{}])
        assert report.cases[0].error == "Return type not supported: Set (return an array: [...set])"

    def test_infinite_loop_is_stopped_at_the_cpu_limit(self, node_sandbox):
        report, elapsed = timed(
            node_sandbox, "javascript", "function f() { for (;;) {} }", [{"name": "spin"}]
        )
        assert report.verdict == Verdict.TIME_LIMIT
        assert elapsed < 4
        assert report.stopped_case == 0

    def test_memory_bomb(self, node_sandbox):
        code = "function f() { const a = []; for (;;) a.push(new Array(1e6).fill(1.5)); }"
        report, elapsed = timed(node_sandbox, "javascript", code, [{"name": "heap"}])
        assert report.verdict == Verdict.MEMORY_LIMIT
        assert elapsed < 4
        code = "function f() { const a = []; for (;;) a.push(new ArrayBuffer(1e7)); }"
        report, elapsed = timed(node_sandbox, "javascript", code, [{"name": "buffers"}])
        assert report.verdict == Verdict.MEMORY_LIMIT
        assert elapsed < 4

    def test_memory_under_the_limit_works(self, node_sandbox):
        code = "function f() { return new Array(4e6).fill(1.5).length; }"  # 32 MB of doubles
        assert run(node_sandbox, "javascript", code, [{}]).cases[0].value == 4_000_000

    def test_fork_bomb_is_contained_and_quick(self, node_sandbox):
        code = ESCAPE + (
            "const child = host.mainModule.require('child_process');\n"
            "function f() {\n"
            "  for (let spawned = 0; ; spawned++) {\n"
            "    const c = child.spawn('/usr/bin/sleep', ['61.3']);\n"
            "    c.on('error', () => {});\n"
            "    if (!c.pid) return spawned;\n"
            "  }\n"
            "}\n"
        )
        report, elapsed = timed(node_sandbox, "javascript", code, [{"name": "bomb"}])
        assert elapsed < 4
        if report.verdict == Verdict.COMPLETED:
            assert report.cases[0].value < QUICK.processes
        else:
            assert report.verdict == Verdict.TIME_LIMIT
        assert no_sleepers_soon("61.3") == []

    def test_network_is_unreachable(self, node_sandbox, host_listener):
        code = ESCAPE + (
            "const net = host.mainModule.require('net');\n"
            "function f(port) {\n"
            "  return new Promise((resolve) => {\n"
            "    const s = net.connect(port, '127.0.0.1', () => resolve('connected'));\n"
            "    s.on('error', (e) => resolve(e.code));\n"
            "  });\n"
            "}\n"
        )
        report = run(node_sandbox, "javascript", code, [{"name": "net", "args": [host_listener]}])
        assert report.cases[0].value == "ECONNREFUSED"

    def test_host_files_are_absent(self, node_sandbox):
        paths = ["/etc/passwd", "/work", "/root", str(django_settings.BASE_DIR)]
        code = ESCAPE + (
            "const fs = host.mainModule.require('fs');\n"
            "function f(paths) { return paths.filter((p) => fs.existsSync(p)); }\n"
        )
        report = run(node_sandbox, "javascript", code, [{"name": "files", "args": [paths]}])
        assert report.cases[0].value == []

    def test_writes_only_in_its_own_tmp(self, node_sandbox):
        code = ESCAPE + (
            "const fs = host.mainModule.require('fs');\n"
            "function f(path) { fs.writeFileSync(path, 'x'); return path; }\n"
        )
        places = ["/tmp/ok", "/usr/x", "/x", "/dev/shm/x"]  # noqa: S108  (the sandbox's)
        cases = [{"name": p, "args": [p]} for p in places]
        report = run(node_sandbox, "javascript", code, cases)
        assert [case.ok for case in report.cases] == [True, False, False, False]
        assert "EROFS" in report.cases[1].error

    def test_output_flood_is_capped(self, node_sandbox):
        code = "function f() { for (;;) console.log('spam'.repeat(100)); }"
        report, elapsed = timed(node_sandbox, "javascript", code, [{"name": "flood"}])
        assert report.verdict == Verdict.OUTPUT_LIMIT
        assert elapsed < 3
        # Past the vm, process.stdout queues what the full pipe does not take in Node's own
        # memory (its event loop never runs): the output cap or the memory cap ends it.
        raw = ESCAPE + "function f() { for (;;) host.stdout.write('x'.repeat(65536)); }"
        report, elapsed = timed(node_sandbox, "javascript", raw, [{"name": "raw flood"}])
        assert report.verdict in (Verdict.OUTPUT_LIMIT, Verdict.MEMORY_LIMIT)
        assert elapsed < 3


# --- SQL ----------------------------------------------------------------------------------

SCHEMA = "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL);"
ORDERS = [
    {
        "name": "two customers",
        "setup": "INSERT INTO orders VALUES (1, 'ann', 10), (2, 'bob', 5), (3, 'ann', 2.5);",
        "expected": [["ann", 12.5], ["bob", 5]],
    },
    {"name": "no orders", "setup": "", "expected": []},
    {
        "name": "NULL customer",
        "setup": "INSERT INTO orders VALUES (1, NULL, 3);",
        "expected": [[None, 3.0]],
        "secret": True,
    },
]


def sql(engine, query, cases=ORDERS, **kwargs):
    return run(engine, "sql", query, cases, entry="", schema=SCHEMA, **kwargs)


class TestSQL:
    """SQLite in memory, one SELECT. SQL has no way to fork or open sockets; its ways to reach
    files (ATTACH, load_extension) are refused."""

    def test_correct(self, sandbox):
        query = "SELECT customer, SUM(total) FROM orders GROUP BY customer ORDER BY customer;"
        report = sql(sandbox, query)
        assert report.verdict == Verdict.COMPLETED
        assert report.cases[0].value == [["ann", 12.5], ["bob", 5.0]]
        assert grade(report, cases=ORDERS, comparator="rows").all_passed

    def test_wrong(self, sandbox):
        query = "SELECT customer, MAX(total) FROM orders GROUP BY customer ORDER BY customer"
        graded = grade(sql(sandbox, query), cases=ORDERS, comparator="rows_unordered")
        assert graded.summary == "2 of 3 passed"
        assert graded.message == (
            'Wrong answer on test \'two customers\': expected [["ann", 12.5], ["bob", 5]], '
            'got [["ann", 10.0], ["bob", 5.0]]'
        )

    def test_runtime_error(self, sandbox):
        report = sql(sandbox, "SELECT abs(-9223372036854775807 - 1)")
        assert report.cases[0].error == "integer overflow"
        assert grade(report, cases=ORDERS, comparator="rows").message == (
            "Runtime error on test 'two customers': integer overflow"
        )

    def test_syntax_error(self, sandbox):
        report = sql(sandbox, "SELECT customer,\n  total\nFORM orders")
        assert report.verdict == Verdict.SYNTAX_ERROR
        assert (report.error, report.line) == ('near "orders": syntax error', 3)
        assert grade(report, cases=ORDERS, comparator="rows").message == (
            'Syntax error on line 3: near "orders": syntax error'
        )
        assert sql(sandbox, "SELECT nope FROM orders").error == "no such column: nope"

    @pytest.mark.parametrize(
        "query",
        [
            "DELETE FROM orders",
            "WITH x AS (SELECT 1) DELETE FROM orders",
            "SELECT 1; DROP TABLE orders",
            "ATTACH DATABASE '/etc/passwd' AS host",
            "PRAGMA table_info(orders)",
            "SELECT load_extension('/usr/lib/x.so')",
            "SELECT * FROM pragma_table_info('orders')",
        ],
    )
    def test_anything_but_one_select_is_refused(self, sandbox, query):
        report = sql(sandbox, query)
        if report.verdict == Verdict.SYNTAX_ERROR:  # refused before running
            assert "SELECT" in report.error
        else:  # refused when it ran (load_extension is a function call)
            errors = {case.error for case in report.cases}
            assert errors == {"Only reading is allowed: the answer must be one SELECT statement"}

    def test_runaway_query_is_stopped(self, sandbox):
        query = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT COUNT(*) FROM n"
        )
        report, elapsed = timed(sandbox, "sql", query, ORDERS, entry="", schema=SCHEMA)
        assert report.verdict == Verdict.TIME_LIMIT
        assert elapsed < 4
        assert grade(report, cases=ORDERS, comparator="rows").message == (
            "Time limit exceeded on test 'two customers'"
        )

    def test_memory_bomb(self, sandbox):
        report, elapsed = timed(
            sandbox, "sql", "SELECT length(randomblob(500000000))", ORDERS, entry="", schema=SCHEMA
        )
        assert report.verdict == Verdict.MEMORY_LIMIT
        assert elapsed < 3

    def test_output_flood_is_capped(self, sandbox):
        query = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 1000000) "
            "SELECT i, 'padding padding padding' FROM n"
        )
        report, elapsed = timed(sandbox, "sql", query, ORDERS, entry="", schema=SCHEMA)
        assert report.verdict == Verdict.OUTPUT_LIMIT
        assert elapsed < 3

    def test_host_files_unreachable(self, sandbox):
        report = sql(sandbox, "SELECT readfile('/etc/passwd')")
        assert report.error == "no such function: readfile"


# --- The engine: concurrency, cancellation, configuration ---------------------------------


def test_concurrency_is_bounded_per_process(sandbox, settings):
    settings.EXECUTION_CONCURRENCY = 2
    engine = BubblewrapExecutor()
    code = "import time\ndef f():\n    time.sleep(0.6)\n    return 1\n"

    async def four() -> tuple[list[RunReport], float]:
        started = time.monotonic()
        reports = await asyncio.gather(
            *(
                engine.arun(
                    language="python",
                    code=code,
                    entry_point="f",
                    schema="",
                    cases=[{"name": "nap"}],
                    limits=QUICK,
                )
                for _ in range(4)
            )
        )
        return list(reports), time.monotonic() - started

    reports, elapsed = asyncio.run(four())
    assert [report.cases[0].value for report in reports] == [1, 1, 1, 1]
    assert 1.2 <= elapsed < 3  # two at a time: two rounds of 0.6 s


def test_cancelling_a_run_kills_it(sandbox):
    async def cancelled() -> None:
        task = asyncio.create_task(
            sandbox.arun(
                language="python",
                code="import os\ndef f():\n    os.execv('/usr/bin/sleep', ['sleep', '61.4'])\n",
                entry_point="f",
                schema="",
                cases=[{"name": "nap"}],
                limits=Limits(wall_seconds=20),
            )
        )
        await asyncio.sleep(0.5)
        assert sleepers("61.4")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    assert no_sleepers_soon("61.4") == []


def test_sync_wrapper_works_inside_a_running_loop(sandbox):
    async def inside() -> RunReport:
        return sandbox.run(  # what a sync helper called from async code would do
            language="python",
            code="def f():\n    return 'ok'\n",
            entry_point="f",
            schema="",
            cases=[{"name": "x"}],
            limits=QUICK,
        )

    assert asyncio.run(inside()).cases[0].value == "ok"


def test_loop_semaphores_are_per_event_loop():
    semaphores = LoopSemaphores(2)

    async def get() -> asyncio.Semaphore:
        return semaphores.get()

    first, second = asyncio.run(get()), asyncio.run(get())
    assert first is not second  # a semaphore bound to a closed loop is never reused
    assert run_sync(get()) is not first


@pytest.fixture
def fresh_executor():
    executor_reset()
    yield
    executor_reset()


def test_executor_get_builds_once_and_probes(sandbox, settings, fresh_executor):
    settings.EXECUTION_BACKEND = "bubblewrap"
    executor = executor_get()
    assert isinstance(executor, BubblewrapExecutor)
    assert executor.available
    assert executor_get() is executor
    assert asyncio.run(aexecutor_get()) is executor


def test_executor_off_says_code_is_not_run(settings, fresh_executor):
    settings.EXECUTION_BACKEND = "off"
    executor = executor_get()
    assert isinstance(executor, DisabledExecutor)
    assert not executor.available
    assert "EXECUTION_BACKEND=off" in executor.reason
    report = executor.run(
        language="python", code="", entry_point="f", schema="", cases=TWO_SUM, limits=QUICK
    )
    assert report.verdict == Verdict.DISABLED
    graded = grade(report, cases=TWO_SUM, comparator="exact")
    assert graded.message.startswith("Code is not run: ")
    assert graded.summary == "0 of 3 passed"


def test_a_sandbox_that_fails_its_probe_is_disabled_with_one_warning(
    settings, fresh_executor, caplog
):
    settings.EXECUTION_BACKEND = "bubblewrap"
    settings.EXECUTION_PYTHON = "/nonexistent/python3"
    with caplog.at_level(logging.WARNING, logger="interviews.execution"):
        executor = asyncio.run(aexecutor_get())
    assert isinstance(executor, DisabledExecutor)
    assert "EXECUTION_PYTHON" in executor.reason
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("Code execution is off: EXECUTION_PYTHON")


def test_executor_user_must_exist(settings, fresh_executor):
    if os.geteuid() != 0:
        pytest.skip("EXECUTION_USER applies when the app runs as root")
    settings.EXECUTION_USER = "no-such-user-here"
    assert "EXECUTION_USER" in BubblewrapExecutor().reason
    settings.EXECUTION_USER = "root"
    assert "must not be root" in BubblewrapExecutor().reason


def test_limits_for_a_problem():
    limits = Limits.for_problem(time_limit_ms=1500, memory_limit_mb=256)
    assert (limits.cpu_rlimit, limits.memory_mb, limits.wall_seconds) == (2, 256, 7)
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=0)


# --- Comparators and grading (no sandbox) -------------------------------------------------


class TestComparators:
    @pytest.mark.parametrize(
        ("expected", "got", "equal"),
        [
            ([1, 2], [1, 2], True),
            ([1, 2], (1, 2), True),  # a tuple is a list
            (2, 2.0, True),  # integral floats are integers, as in JSON and JavaScript
            (1, True, False),  # but true is not 1
            (0, False, False),
            (None, 0, False),
            ({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2.0}]}, True),
            ({"a": 1}, {"a": 1, "b": 2}, False),
            ("é", "é", True),
            ([1, 2], [2, 1], False),
            (0.1 + 0.2, 0.3, False),
        ],
    )
    def test_exact(self, expected, got, equal):
        assert compare("exact", expected, got) is equal

    @pytest.mark.parametrize(
        ("expected", "got", "equal"),
        [
            ([1, 2, 2], [2, 1, 2], True),
            ([1, 2, 2], [2, 1, 1], False),  # a multiset, not a set
            ([[1, 2], [3]], [[3], [1, 2]], True),
            ([[1, 2], [3]], [[3], [2, 1]], False),  # only the outer order is free
            ([{"a": 1}, {"b": 2}], [{"b": 2}, {"a": 1}], True),
            ([1, 2], "12", False),
            ([], [], True),
            ([1], [1, 1], False),
        ],
    )
    def test_unordered(self, expected, got, equal):
        assert compare("unordered", expected, got) is equal

    @pytest.mark.parametrize(
        ("expected", "got", "equal"),
        [
            (0.3, 0.1 + 0.2, True),
            (1.0, 1.0000001, True),
            (1.0, 1.00001, False),
            (1e-9, 0.0, True),  # absolute tolerance near zero
            (1e9, 1e9 + 100, True),  # relative tolerance for big numbers
            (1e9, 1e9 + 10_000, False),
            ([0.5, [0.25]], [0.5000000001, [0.25]], True),
            ({"x": 1.5}, {"x": 1.5000001}, True),
            (1.0, True, False),
            ([1.0], [1.0, 2.0], False),
        ],
    )
    def test_float(self, expected, got, equal):
        assert compare("float", expected, got) is equal

    def test_rows(self):
        expected = [["ann", 12.5], ["bob", None]]
        assert compare("rows", expected, [["ann", 12.5000000001], ["bob", None]])
        assert compare("rows", [[1, 2.0]], [[1, 2]])
        assert not compare("rows", expected, [["bob", None], ["ann", 12.5]])  # order matters
        assert not compare("rows", expected, [["ann", 12.5]])
        assert not compare("rows", [[1]], [1])  # rows are arrays
        assert not compare("rows", [[None]], [[0]])

    def test_rows_unordered(self):
        expected = [["ann", 12.5], ["bob", None], ["ann", 12.5]]
        assert compare("rows_unordered", expected, [["bob", None], ["ann", 12.5], ["ann", 12.5]])
        assert compare(
            "rows_unordered", [[1, 0.1 + 0.2], [2, 0.5]], [[2, 0.5], [1, 0.3]]
        )  # tolerant, whatever the order
        assert not compare("rows_unordered", expected, [["bob", None], ["ann", 12.5]])

    def test_unknown_comparator(self):
        with pytest.raises(ValueError, match="unknown comparator"):
            compare("fuzzy", 1, 1)


def report_of(*results: CaseResult, verdict=Verdict.COMPLETED, **kwargs) -> RunReport:
    return RunReport(verdict=verdict, cases=results, **kwargs)


class TestGrading:
    cases = [
        {"name": "empty input", "why": "no events", "args": [[]], "expected": 0},
        {"name": "ties", "args": [[1, 1]], "expected": 3, "secret": True},
        {"name": "worst case size", "args": [[5]], "expected": 1},
    ]

    def test_all_passed(self):
        report = report_of(*(CaseResult(i, True, value) for i, value in enumerate([0, 3, 1])))
        graded = grade(report, cases=self.cases, comparator="exact")
        assert graded.all_passed
        assert graded.first_failure is None
        assert (graded.passed, graded.total) == (3, 3)
        assert graded.message == "All 3 tests passed"

    def test_a_secret_failure_shows_its_name_but_not_its_values(self):
        report = report_of(
            CaseResult(0, True, 0),
            CaseResult(1, True, 2, stdout="input was [1, 1]"),
            CaseResult(2, True, 1),
        )
        graded = grade(report, cases=self.cases, comparator="exact")
        failure = graded.first_failure
        assert (failure.name, failure.status, failure.secret) == ("ties", CaseStatus.WRONG, True)
        assert (failure.expected_text, failure.got_text, failure.stdout) == ("", "", "")
        assert graded.message == "Wrong answer on test 'ties'"
        assert graded.summary == "2 of 3 passed"

    def test_a_secret_error_shows_its_type_only(self):
        report = report_of(
            CaseResult(0, True, 0), CaseResult(1, False, error="KeyError: 'secret'", line=4)
        )
        graded = grade(report, cases=self.cases, comparator="exact")
        assert graded.message == "Runtime error on test 'ties': KeyError (line 4)"

    def test_runtime_error_message(self):
        report = report_of(
            CaseResult(0, False, error="ZeroDivisionError: division by zero", line=4),
            CaseResult(1, True, 3),
            CaseResult(2, True, 1),
        )
        graded = grade(report, cases=self.cases, comparator="exact")
        assert graded.message == (
            "Runtime error on test 'empty input': ZeroDivisionError: division by zero (line 4)"
        )
        assert graded.first_failure.why == "no events"

    def test_limits(self):
        done = CaseResult(0, True, 0), CaseResult(1, True, 3)
        for verdict, message in [
            (Verdict.TIME_LIMIT, "Time limit exceeded on test 'worst case size'"),
            (Verdict.MEMORY_LIMIT, "Memory limit exceeded on test 'worst case size'"),
            (
                Verdict.OUTPUT_LIMIT,
                "Output limit exceeded on test 'worst case size': too much printed or returned",
            ),
        ]:
            graded = grade(
                report_of(*done, verdict=verdict, stopped_case=2),
                cases=self.cases,
                comparator="exact",
            )
            assert graded.message == message
            assert graded.cases[2].status == CaseStatus.NOT_RUN
            assert graded.summary == "2 of 3 passed"
            assert not graded.all_passed
        unknown = grade(
            report_of(verdict=Verdict.MEMORY_LIMIT), cases=self.cases, comparator="exact"
        )
        assert unknown.message == "Memory limit exceeded"

    def test_syntax_and_load_errors(self):
        syntax = report_of(
            verdict=Verdict.SYNTAX_ERROR, error="SyntaxError: invalid syntax", line=3
        )
        assert grade(syntax, cases=self.cases, comparator="exact").message == (
            "Syntax error on line 3: invalid syntax"
        )
        load = report_of(
            verdict=Verdict.SYNTAX_ERROR, error="NameError: name 'x' is not defined", line=2
        )
        assert grade(load, cases=self.cases, comparator="exact").message == (
            "Your code did not load: NameError: name 'x' is not defined (line 2)"
        )

    def test_sandbox_failure_is_not_the_candidates_fault(self):
        failed = report_of(verdict=Verdict.SANDBOX_FAILURE, error="bwrap: No permissions")
        message = grade(failed, cases=self.cases, comparator="exact").message
        assert "not your code" in message

    def test_display_is_json_and_capped(self):
        report = report_of(CaseResult(0, True, list(range(1000))))
        failure = grade(report, cases=self.cases[:1], comparator="exact").first_failure
        assert failure.expected_text == "0"
        assert failure.got_text.startswith("[0, 1, 2")
        assert len(failure.got_text) == 1000
        assert (
            json.loads(
                grade(
                    report_of(CaseResult(0, True, "é")), cases=self.cases[:1], comparator="exact"
                ).first_failure.got_text
            )
            == "é"
        )


def test_the_sandbox_runs_under_uvloop_the_production_servers_loop(sandbox):
    """`make serve` runs uvicorn on uvloop, whose subprocesses take no user=/group= arguments:
    a run started from its loop works (and, as root, still drops to EXECUTION_USER)."""
    import uvloop

    code = "import os\ndef f():\n    return [os.getuid(), os.getgid()]\n"

    async def one():
        return await sandbox.arun(
            language="python",
            code=code,
            entry_point="f",
            schema="",
            cases=[{"name": "who", "args": []}],
            limits=QUICK,
        )

    report = uvloop.run(one())
    assert report.verdict == Verdict.COMPLETED, report
    if os.geteuid() == 0:
        assert report.cases[0].value != [0, 0]
