"""gunicorn's configuration for the production server: `make serve` runs

    gunicorn -c deploy/gunicorn.conf.py config.asgi:application

WEB_CONCURRENCY (2) uvicorn (ASGI) workers on 0.0.0.0:PORT (8000), the access log on stdout, 60 s
for requests in progress to finish on a stop, no control socket. Options given on the command
line after it override these (a test binds a port of its own).

Metrics (README, "Metrics"): every worker keeps its counts in a file of PROMETHEUS_MULTIPROC_DIR,
set here before any worker starts (and imports prometheus_client), so a scrape served by any
worker adds up all of them. Unset, the server makes a private directory of its own under the
system's temporary directory, removed when it stops. The directory's counts are wiped when the
server starts (they belong to a previous run), and a worker that exits is marked dead: its
counters stay in every later scrape, its in-flight gauge goes.

Tracing (README, "Tracing (optional)"): with OTEL_EXPORTER_OTLP_ENDPOINT set, each worker starts
OpenTelemetry after the fork (post_fork).
"""

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import environ

from config.logging import gunicorn_logconfig_dict  # no Django in it: safe before the settings

# The settings read .env the same way (the environment wins); the server needs PORT,
# WEB_CONCURRENCY and PROMETHEUS_MULTIPROC_DIR before it starts its workers.
environ.Env.read_env(Path(__file__).resolve().parent.parent / ".env", overwrite=False)

worker_class = "uvicorn_worker.UvicornWorker"
bind = f"0.0.0.0:{os.environ.get('PORT') or 8000}"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
graceful_timeout = 60
accesslog = "-"
control_socket_disable = True
# LOG_FORMAT=json: gunicorn's own lines, uvicorn's and the access log as JSON objects too.
logconfig_dict = gunicorn_logconfig_dict()

# Marks a directory this server made itself (removed when it stops), kept in the environment so
# that a reload (HUP), which reads this file again, still knows.
TEMPORARY = "MOCKROOM_METRICS_DIR_TEMPORARY"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mockroom-metrics-")
    os.environ[TEMPORARY] = os.environ["PROMETHEUS_MULTIPROC_DIR"]


def metrics_dir() -> Path:
    return Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_starting(server: Any) -> None:
    """Start counting from zero: an earlier run's files would add their counts to this run's.
    Only prometheus_client's files (*.db) are removed, whatever else the directory holds."""
    directory = metrics_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.db"):
        path.unlink(missing_ok=True)


def post_fork(server: Any, worker: Any) -> None:
    """Tracing (README, "Tracing (optional)"), when OTEL_EXPORTER_OTLP_ENDPOINT is set: started
    in each worker, before it imports the application (its exporter's thread and instrumented
    connections belong to the worker); unset, nothing is imported."""
    from config.tracing import tracing_init

    tracing_init()


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited (or was killed): its counters stay, its live gauges go."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(metrics_dir()))


def on_exit(server: Any) -> None:
    if os.environ.get(TEMPORARY) == os.environ["PROMETHEUS_MULTIPROC_DIR"]:
        shutil.rmtree(metrics_dir(), ignore_errors=True)
