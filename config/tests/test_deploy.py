"""The deployment files (deploy/) run what `make serve` and `make worker` run, and are valid.

The processes are read from the Makefile's recipes, so a queue added to `make worker` and not to
the Procfile, the compose file or the systemd units fails here. No database is needed.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
GUNICORN_CONFIG = "deploy/gunicorn.conf.py"
ASGI_APP = "config.asgi:application"


# --- what a command line runs -----------------------------------------------------------------


def process_kind(argv: list[str]) -> str | None:
    """The kind of long-running process a command line starts: "gunicorn config.asgi:application",
    "run_scheduler", "db_worker --queue-name speech"... None for anything else."""
    if any(Path(arg).name == "gunicorn" for arg in argv):
        app = [arg for arg in argv if re.fullmatch(r"[\w.]+:\w+", arg)]
        return f"gunicorn {app[-1]}" if app else "gunicorn"
    if "manage.py" not in argv:
        return None
    rest = argv[argv.index("manage.py") + 1 :]
    if not rest:
        return None
    if rest[0] == "db_worker":
        queue = "default"  # db_worker's own default
        for i, arg in enumerate(rest):
            if arg == "--queue-name" and i + 1 < len(rest):
                queue = rest[i + 1]
            elif arg.startswith("--queue-name="):
                queue = arg.split("=", 1)[1]
        return f"db_worker --queue-name {queue}"
    return " ".join(rest)


def shell_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line (split at && || ; & and `exec`)."""
    commands = []
    for part in re.split(r"&&|\|\||;|&", line):
        argv = shlex.split(part)
        if argv and argv[0] == "exec":
            argv = argv[1:]
        if argv:
            commands.append(argv)
    return commands


def long_running(kinds: list[str | None]) -> list[str]:
    """Without the preconditions (`check`, `migrate --check`) and what is not a process of ours."""
    return [kind for kind in kinds if kind and not kind.startswith(("migrate", "check"))]


# --- the Makefile -----------------------------------------------------------------------------


def make_recipe(target: str) -> str:
    """A target's recipe with its continuation lines joined and make's variables of the
    commands replaced: $(PY) -> python, $(VENV)/bin/X -> X."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"{target}:", line))
    text = ""
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        # A line ending in a backslash goes on; otherwise the next line is another command.
        text += line.strip()[:-1] + " " if line.endswith("\\") else line.strip() + " ; "
    return text.replace("$(PY)", "python").replace("$(VENV)/bin/", "")


def make_processes(target: str) -> Counter[str]:
    """The processes a recipe starts, counted; a `for n in $$(seq $${VAR:-N}); do CMD & done`
    loop starts CMD N times (the variable's default)."""
    recipe = make_recipe(target)
    found: Counter[str] = Counter()
    loop = re.compile(r"for \w+ in \$\$\(seq \$\$\{(\w+):-(\d+)\}\); do (.*?)\bdone\b")
    for match in loop.finditer(recipe):
        for kind in long_running([process_kind(argv) for argv in shell_commands(match[3])]):
            found[kind] += int(match[2])
    rest = loop.sub(" ; ", recipe)
    # Only the commands that run a program of ours: the recipes' other words are shell.
    for command in re.findall(r"(?:python manage\.py|gunicorn)\s[^&;|}]*", rest):
        for kind in long_running([process_kind(shlex.split(command.replace(">/dev/null", "")))]):
            found[kind] += 1
    return found


def make_loop_variable(target: str) -> tuple[str, int]:
    match = re.search(r"for \w+ in \$\$\(seq \$\$\{(\w+):-(\d+)\}\)", make_recipe(target))
    assert match, f"no worker loop in `make {target}`"
    return match[1], int(match[2])


def expected_processes() -> Counter[str]:
    expected = make_processes("serve") + make_processes("worker")
    # The parsing itself: what the Makefile is known to start.
    assert expected[f"gunicorn {ASGI_APP}"] == 1
    assert expected["run_scheduler"] == 1
    assert expected["db_worker --queue-name prefetch"] >= 1
    return expected


def release_commands() -> list[str]:
    """What `make migrate` runs, in order: ["migrate --noinput", "grant_runtime_role ..."]."""
    return [
        " ".join(argv[argv.index("manage.py") + 1 :])
        for argv in shell_commands(make_recipe("migrate"))
        if "manage.py" in argv
    ]


# --- compose.yaml: the YAML it is written in --------------------------------------------------


def read_yaml(text: str) -> Any:
    """A reader for the YAML deploy/compose.yaml is written in (the standard library has none):
    block mappings and sequences, JSON-style flow sequences and quoted scalars, plain scalars,
    anchors (&name), aliases (*name) and merge keys (<<). Anything else fails the test."""
    lines = []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        assert "\t" not in raw, raw
        lines.append((len(raw) - len(raw.lstrip(" ")), raw.strip()))
    anchors: dict[str, Any] = {}

    def scalar(text: str) -> Any:
        if text.startswith("*"):
            return anchors[text[1:]]
        if text.startswith(("[", '"', "{")):
            return json.loads(text)
        if text.startswith("'") and text.endswith("'"):
            return text[1:-1].replace("''", "'")
        return {"true": True, "false": False, "null": None}.get(text, text)

    def block(i: int, indent: int) -> tuple[Any, int]:
        if lines[i][1].startswith("- "):
            items = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                item = lines[i][1][2:]
                if re.match(r"[\w.-]+:(\s|$)", item):  # "- key: value": a mapping item
                    lines[i] = (indent + 2, item)
                    value, i = block(i, indent + 2)
                else:
                    value, i = scalar(item), i + 1
                items.append(value)
            return items, i
        explicit: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        while i < len(lines) and lines[i][0] == indent:
            match = re.fullmatch(r"([\w.<-]+|\"[^\"]+\"):(?:\s+(.*))?", lines[i][1])
            assert match, f"compose.yaml: cannot read {lines[i][1]!r}"
            key, rest = match[1].strip('"'), (match[2] or "")
            anchor = None
            if rest.startswith("&"):
                anchor, _, rest = rest[1:].partition(" ")
            if rest:
                value, i = scalar(rest), i + 1
            elif i + 1 < len(lines) and lines[i + 1][0] > indent:
                value, i = block(i + 1, lines[i + 1][0])
            else:  # "key:" and nothing under it
                value, i = None, i + 1
            if anchor:
                anchors[anchor] = value
            if key == "<<":
                merged.update(value)
            else:
                explicit[key] = value
        return {**merged, **explicit}, i

    document, end = block(0, 0)
    assert end == len(lines), f"compose.yaml: cannot read {lines[end]!r}"
    return document


def compose() -> dict[str, Any]:
    return read_yaml((DEPLOY / "compose.yaml").read_text())


def resolve(value: str) -> str:
    """${VAR:-default} -> default (the value with no .env)."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


# --- the Procfile and the systemd units --------------------------------------------------------


def procfile() -> dict[str, str]:
    entries = {}
    for line in (DEPLOY / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def unit(name: str) -> dict[str, list[str]]:
    """A unit's settings (Key -> values in order); an instance is read from its template with
    %i replaced."""
    template, instance = name, ""
    if match := re.fullmatch(r"(.+@)(.+)(\.\w+)", name):
        template, instance = match[1] + match[3], match[2]
    settings: dict[str, list[str]] = {}
    for line in (UNITS / template).read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value.replace("%i", instance))
    return settings


def target_units() -> list[str]:
    return [name for value in unit("mockroom.target")["Wants"] for name in value.split()]


# --- the processes ---------------------------------------------------------------------------


def test_compose_runs_the_processes_make_serve_and_make_worker_start() -> None:
    services = compose()["services"]
    found: Counter[str] = Counter()
    for name, service in services.items():
        if "command" not in service or one_shot(service) or service.get("profiles"):
            continue
        replicas = int(resolve(service.get("deploy", {}).get("replicas", 1)))
        for kind in long_running([process_kind(service["command"])]):
            found[kind] += replicas
        assert service["restart"] == "unless-stopped", name
        # Started only once the release step succeeded, as `make serve` checks it did.
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert found == expected_processes()
    # The prefetch workers scale with the variable `make worker` reads.
    variable, _ = make_loop_variable("worker")
    assert services["worker-prefetch"]["deploy"]["replicas"].startswith(f"${{{variable}:-")


def test_compose_has_the_database_redis_and_a_one_shot_migrate():
    services = compose()["services"]
    assert services["postgres"]["image"].startswith("docker.io/library/postgres:")
    assert services["redis"]["image"].startswith("docker.io/library/redis:")
    migrate = services["migrate"]
    assert one_shot(migrate)
    assert migrate["command"][:2] == ["sh", "-c"]
    assert [
        " ".join(argv[argv.index("manage.py") + 1 :])
        for argv in shell_commands(migrate["command"][2])
    ] == release_commands()
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}
    # The release step as the schema's owner, the app as the runtime role (README, "Database
    # roles").
    assert "mockroom_owner" in migrate["environment"]["DATABASE_URL"]
    assert migrate["environment"]["DATABASE_RUNTIME_ROLE"] == "mockroom_app"
    for name in ("web", "scheduler", "worker-default"):
        assert "mockroom_app" in services[name]["environment"]["DATABASE_URL"], name
        assert services[name]["env_file"] == [{"path": "../.env", "required": True}]
        assert services[name]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert services["web"]["healthcheck"]["test"] == ["CMD", "python", "deploy/healthcheck.py"]


def test_the_procfile_runs_the_processes_make_serve_and_make_worker_start():
    entries = procfile()
    kinds = {
        name: long_running([process_kind(argv) for argv in shell_commands(command)])
        for name, command in entries.items()
        if name != "release"
    }
    assert all(len(found) == 1 for found in kinds.values()), kinds
    # One entry per kind of process; a runner scales each (prefetch to PREFETCH_WORKERS).
    assert sorted(found[0] for found in kinds.values()) == sorted(expected_processes())
    release = [argv for argv in shell_commands(entries["release"]) if "manage.py" in argv]
    assert [" ".join(argv[argv.index("manage.py") + 1 :]) for argv in release] == (
        release_commands()
    )


def test_the_systemd_units_run_the_processes_make_serve_and_make_worker_start() -> None:
    found: Counter[str] = Counter()
    for name in target_units():
        settings = unit(name)
        [command] = settings["ExecStart"]
        for kind in long_running([process_kind(shlex.split(command))]):
            found[kind] += 1
        # Like `make serve` and `make worker`: never on a database that is not migrated.
        assert settings["ExecStartPre"] == [
            "/opt/mockroom/.venv/bin/python manage.py migrate --check"
        ], name
        assert settings["EnvironmentFile"] == ["/etc/mockroom/mockroom.env"], name
        assert settings["User"] == ["mockroom"], name
    assert found == expected_processes()
    release = unit("mockroom-migrate.service")
    assert release["Type"] == ["oneshot"]
    assert [
        " ".join(shlex.split(command)[2:]) for command in release["ExecStart"]
    ] == release_commands()


def test_every_web_command_uses_the_gunicorn_config_make_serve_uses():
    serve = make_recipe("serve")
    assert f"gunicorn -c {GUNICORN_CONFIG} {ASGI_APP}" in serve
    commands = [
        compose()["services"]["web"]["command"],
        shlex.split(unit("mockroom-web.service")["ExecStart"][0]),
        shell_commands(procfile()["web"])[-1],
        json.loads(re.findall(r"^CMD (.*)$", (DEPLOY / "Dockerfile").read_text(), re.M)[-1]),
    ]
    for argv in commands:
        assert Path(argv[0]).name == "gunicorn", argv
        assert argv[1:] == ["-c", GUNICORN_CONFIG, ASGI_APP], argv


# --- systemd ----------------------------------------------------------------------------------


def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    """`systemd-analyze verify` on the units, in a root laid out as they expect: the app in
    /opt/mockroom (its deploy/ scripts, and its .venv's python and gunicorn, stand-ins that exist
    and are executable) and this host's systemd units and /bin/sh, /bin/kill. Any output fails."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    system_units = next(
        (Path(p) for p in ("/usr/lib/systemd/system", "/lib/systemd/system") if Path(p).is_dir()),
        None,
    )
    if system_units is None:
        pytest.skip("this host has no systemd units to verify against")
    root = tmp_path / "root"
    (root / "usr/lib/systemd").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "lib").symlink_to("usr/lib")
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    shutil.copytree(UNITS, root / "etc/systemd/system")
    (root / "usr/bin").mkdir()
    for program in ("sh", "kill"):
        shutil.copy(shutil.which(program) or f"/bin/{program}", root / "usr/bin" / program)
    app = root / "opt/mockroom"
    shutil.copytree(DEPLOY, app / "deploy", ignore=shutil.ignore_patterns("systemd"))
    (app / ".venv/bin").mkdir(parents=True)
    for program in ("python", "gunicorn"):
        (app / ".venv/bin" / program).write_text("#!/bin/sh\n")
        (app / ".venv/bin" / program).chmod(0o755)
    names = sorted(
        {path.name for path in UNITS.iterdir() if "@." not in path.name} | set(target_units())
    )
    assert {"mockroom-web.service", "mockroom-migrate.service", "mockroom-backup.timer"} <= set(
        names
    )
    result = subprocess.run(
        [analyze, "verify", f"--root={root}", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_backup_timer_runs_the_backup_and_its_drill():
    timer = unit("mockroom-backup.timer")
    assert timer["Persistent"] == ["true"]
    service = unit("mockroom-backup.service")
    assert service["Type"] == ["oneshot"]
    [command] = service["ExecStart"]
    assert "/opt/mockroom/deploy/backup.sh" in command
    assert "/opt/mockroom/deploy/restore-drill.sh" in command


# --- the image --------------------------------------------------------------------------------


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def test_the_dockerfile_builds_from_the_lockfile_and_runs_unprivileged():
    text = dockerfile()
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", text, re.M)
    assert [name for _, name in stages] == ["builder", "runtime"]
    assert "--require-hashes" in text
    assert "-r requirements.txt" in text
    # Static files collected at build, with a key that only that command sees.
    collect = next(line for line in text.splitlines() if "collectstatic" in line)
    assert "SECRET_KEY=" in text.split("collectstatic")[0].rsplit("RUN", 1)[1]
    assert collect
    assert not re.search(r"^\s*(ENV|ARG)\b.*SECRET_KEY", text, re.M)
    runtime = text.split(" AS runtime", 1)[1]
    [user] = re.findall(r"^USER (\S+)$", runtime, re.M)
    assert not user.startswith(("root", "0"))
    for package in ("bubblewrap", "nodejs", "util-linux", "python3"):
        assert re.search(rf"\b{package}\b", runtime), package
    assert "HEALTHCHECK" in runtime
    assert "/healthz" in (DEPLOY / "healthcheck.py").read_text()


def test_the_build_context_leaves_out_secrets_and_local_state():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".env", ".venv", ".git", "db.sqlite3*", "staticfiles"):
        assert entry in ignored


def test_the_image_passes_check_deploy(tmp_path):
    """Builds the image with podman from a Debian trixie root filesystem made here (mmdebstrap or
    debootstrap), then runs `manage.py check --deploy` in it with the README's production
    environment."""
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("podman is not installed: the image is not built here")
    bootstrap = shutil.which("mmdebstrap") or shutil.which("debootstrap")
    if bootstrap is None:
        pytest.skip("neither mmdebstrap nor debootstrap is installed: no Debian root filesystem")
    base = "localhost/mockroom-test-debian:trixie"
    tarball = tmp_path / "rootfs.tar"
    if Path(bootstrap).name == "mmdebstrap":
        subprocess.run(
            [bootstrap, "--variant=minbase", "trixie", str(tarball)], check=True, timeout=1800
        )
    else:
        rootfs = tmp_path / "rootfs"
        subprocess.run(
            [bootstrap, "--variant=minbase", "trixie", str(rootfs)], check=True, timeout=1800
        )
        tar = shutil.which("tar") or "/usr/bin/tar"
        subprocess.run([tar, "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
    subprocess.run([podman, "import", str(tarball), base], check=True, timeout=600)
    image = "localhost/mockroom-test:latest"
    subprocess.run(
        [
            podman,
            "build",
            f"--build-arg=BASE_IMAGE={base}",
            "--file=deploy/Dockerfile",
            "-t",
            image,
            ".",
        ],
        cwd=ROOT,
        check=True,
        timeout=3600,
    )
    from config.tests.test_production import PRODUCTION

    environment = [arg for name, value in PRODUCTION.items() for arg in ("-e", f"{name}={value}")]
    check = ["python", "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    result = subprocess.run(
        [podman, "run", "--rm", "--network=none", *environment, image, *check],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    user = subprocess.run(
        [podman, "run", "--rm", "--network=none", image, "id", "-u"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert user.stdout.strip() != "0"


# --- the scripts ------------------------------------------------------------------------------


def test_the_shell_scripts_parse_and_pass_shellcheck():
    scripts = sorted(DEPLOY.glob("*.sh"))
    assert {p.name for p in scripts} >= {"backup.sh", "restore-drill.sh"}
    for script in scripts:
        subprocess.run([shutil.which("bash") or "/bin/bash", "-n", str(script)], check=True)
        if script.name != "pg-tools.sh":  # sourced, not run
            assert os.access(script, os.X_OK), script
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(
        [shellcheck, "-x", *[p.name for p in scripts]],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_the_health_check_asks_healthz_as_the_proxy_would() -> None:
    """deploy/healthcheck.py against a stand-in server: it sends an allowed host and
    X-Forwarded-Proto, and succeeds only on a 200."""
    import http.server
    import threading

    seen: list[dict[str, str]] = []
    status = {"code": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, **dict(self.headers)})
            self.send_response(status["code"])
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PORT": str(server.server_address[1]),
        "ALLOWED_HOSTS": "mockroom.example.com,.example.org",
    }
    try:
        check = [sys.executable, str(DEPLOY / "healthcheck.py")]
        assert subprocess.run(check, env=env, check=False, timeout=30).returncode == 0
        status["code"] = 503
        assert subprocess.run(check, env=env, check=False, timeout=30).returncode == 1
    finally:
        server.shutdown()
        server.server_close()
    assert seen[0]["path"] == "/healthz"
    assert seen[0]["Host"] == "mockroom.example.com"
    assert seen[0]["X-Forwarded-Proto"] == "https"
