"""The harnesses that run inside the sandbox, one per language (never imported by the app).

Each reads one JSON object on stdin:

    {"language": "python", "code": "...", "entry_point": "f", "schema": "",
     "cases": [{"name": "...", "args": [...]} or {"name": "...", "setup": "..."}],
     "limits": {"cpu_seconds": 2, "memory_mb": 128, "output_bytes": 1048576}}

and writes JSON lines on its original stdout, each flushed as soon as it is known:

    {"compiled": true}            or  {"compiled": false, "error": "SyntaxError: ...", "line": 2}
    {"case": 0, "ok": true, "value": <JSON>, "stdout": "...", "ms": 1.2}
    {"case": 1, "ok": false, "error": "ZeroDivisionError: division by zero", "line": 3,
     "stdout": "...", "ms": 0.4}

A case line may carry "limit": "time" | "memory" | "output" when the harness itself saw a limit
hit (a MemoryError, a query interrupted, too much printed); the harness then stops. A case with no
line is the one running when the sandbox killed the run. The candidate's raw writes to file
descriptor 1 never reach the protocol stream: they go to stderr, which the app caps.

python_runner.py and sql_runner.py run on the sandbox's /usr/bin/python3 (Debian 12: 3.11), so they
use the standard library only and no syntax newer than 3.11; node_runner.js runs on /usr/bin/node.
"""
