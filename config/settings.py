"""Mockroom settings: one module, driven by environment variables (see .env.example).

Production differs from development by environment only. Every variable is listed, with its
default, in .env.example and in the README.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from config.limits import parse_rates
from config.logging import log_format
from interviews.budget import hold_ttl_seconds, worst_case_seconds

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
env.read_env(BASE_DIR / ".env", overwrite=False)
# Our variables set to the empty string (NAME= in a .env file) mean "unset": use the default.
SETTINGS_FROM_ENV = (
    "SECRET_KEY DEBUG ALLOWED_HOSTS CSRF_TRUSTED_ORIGINS DATABASE_URL CONN_MAX_AGE "
    "DB_POOL_MAX_SIZE DB_POOL_MIN_SIZE DB_POOL_TIMEOUT DB_CONNECT_TIMEOUT DB_STATEMENT_TIMEOUT_MS "
    "DB_DISABLE_SERVER_SIDE_CURSORS DB_PREPARED_STATEMENTS "
    "LLM_MAX_CONCURRENCY LLM_DAILY_CALL_BUDGET "
    "SESSION_COOKIE_SECURE CSRF_COOKIE_SECURE SECURE_SSL_REDIRECT BEHIND_TLS_PROXY LOG_LEVEL "
    "SECURE_HSTS_SECONDS SECURE_HSTS_INCLUDE_SUBDOMAINS SECURE_HSTS_PRELOAD ADMIN_URL "
    "WELCOME_TOKENS HOLD_TTL_SECONDS OPENAI_API_KEY OPENAI_BASE_URL OPENAI_MODEL QUESTION_SOURCE "
    "LLM_TIMEOUT_SECONDS LLM_MAX_RETRIES LLM_MAX_REGENERATIONS EMAIL_URL DEFAULT_FROM_EMAIL "
    "REDIS_URL RATE_LIMITS RATE_LIMIT_QUESTIONS RATE_LIMIT_FEEDBACK LLM_MAX_IN_FLIGHT_PER_USER "
    "ACCOUNT_EMAIL_VERIFICATION STAFF_MFA_REQUIRED RATE_LIMIT_SIGNUP RATE_LIMIT_LOGIN_FAILED "
    "MOCK_SECONDS_PER_MINUTE PREFETCH PREFETCH_MAX_AGE_SECONDS RATE_LIMIT_CODE_RUNS "
    "RECORDING_MAX_BYTES"
).split()


def unset_if_empty(names: str) -> None:
    """NAME= (the empty string) in the environment or .env means "unset": use the default."""
    for name in names.split():
        if env.ENVIRON.get(name) == "":
            del env.ENVIRON[name]


unset_if_empty(" ".join(SETTINGS_FROM_ENV))

DEBUG = env.bool("DEBUG", default=False)

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="insecure-development-key-never-used-in-production")
else:
    try:
        SECRET_KEY = env.str("SECRET_KEY")
    except ImproperlyConfigured:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off. Set it in the environment or in .env "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))' makes one)."
        ) from None

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "servestatic",
    "django_htmx",
    "django_tasks_db",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "accounts",
    "ledger",
    "interviews",
    "payments",
    "config",
]

# Django's own middleware come through config.middleware: the same classes, whose hooks run in
# the event loop under ASGI where they do no I/O (see that module, and config.asgi).
MIDDLEWARE = [
    # First, so it counts what every other middleware answers too (mockroom_http_requests).
    "config.metrics.requests_counted_middleware",
    # The request id (X-Request-ID) on every log line of the request and in its response.
    "config.requestid.request_id_middleware",
    "config.middleware.SecurityMiddleware",
    "config.middleware.private_pages_middleware",
    # ServeStatic (WhiteNoise's async-capable successor): a sync-only middleware here would
    # put every request of the ASGI server through a thread, the async question view included.
    "servestatic.middleware.ServeStaticMiddleware",
    "config.middleware.SessionMiddleware",
    "config.middleware.CommonMiddleware",
    "config.middleware.CsrfViewMiddleware",
    "config.middleware.AuthenticationMiddleware",
    "config.middleware.LoginRequiredMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "config.middleware.MessageMiddleware",
    "accounts.middleware.staff_mfa_middleware",
    "config.middleware.XFrameOptionsMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "ledger.middleware.balance_badge_middleware",
]
# Django's deploy checks look for these three middleware by dotted path; mockroom.W003 asks the
# same of the classes listed above (config.checks).
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "ledger.context_processors.token_balance",
                "payments.context_processors.payments",
            ],
        },
    },
]

# Database: a SQLite file by default (zero setup); PostgreSQL in production and in the tests.
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite has no row locks: IMMEDIATE makes writers queue for the write lock at BEGIN
    # instead of failing with "database is locked" half-way through a ledger transaction.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    _db = DATABASES["default"]
    _db_options = _db.setdefault("OPTIONS", {})
    # Give up on an unreachable server quickly (the request becomes a 503, not a hang), and stop
    # any statement that runs away. 0 leaves the server's (or the role's) setting alone, as
    # PgBouncer in transaction mode needs (it refuses startup options).
    _db_options.setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=5))
    if _statement_timeout := env.int("DB_STATEMENT_TIMEOUT_MS", default=15_000):
        _db_options.setdefault("options", f"-c statement_timeout={_statement_timeout}")
    # Each app process borrows connections from a pool of at most DB_POOL_MAX_SIZE for the
    # milliseconds a query or a ledger transaction takes, and waits at most DB_POOL_TIMEOUT
    # seconds for one (then the request is a 503). Processes x DB_POOL_MAX_SIZE bounds the
    # connections the app opens, whatever the load. 0 turns the pool off (CONN_MAX_AGE applies).
    _pool_max = env.int("DB_POOL_MAX_SIZE", default=4)
    if _pool_max > 0:
        from config.pool import check_connection

        _db_options["pool"] = {
            "min_size": min(env.int("DB_POOL_MIN_SIZE", default=1), _pool_max),
            "max_size": _pool_max,
            "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
            # CONN_HEALTH_CHECKS' check, at most once a second per connection (config.pool).
            "check": check_connection,
        }
        _db["CONN_MAX_AGE"] = 0
    else:
        _db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    _db["CONN_HEALTH_CHECKS"] = True
    # Behind PgBouncer in transaction mode, server-side cursors (QuerySet.iterator()) cannot span
    # transactions: set this to true there.
    _db["DISABLE_SERVER_SIDE_CURSORS"] = env.bool("DB_DISABLE_SERVER_SIDE_CURSORS", default=False)
    # Prepared statements (README, "Serving"): the parameters bound by the server, and a statement
    # run a few times on a connection prepared there once (psycopg's prepare_threshold): the
    # database no longer parses and plans each of a question's statements again. Behind PgBouncer
    # in transaction mode older than 1.21 (or without max_prepared_statements), set this to false.
    if env.bool("DB_PREPARED_STATEMENTS", default=True):
        _db_options.setdefault("server_side_binding", True)
        _db_options.setdefault("prepare_threshold", 5)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "interviews:dashboard"
LOGOUT_REDIRECT_URL = "home"

# Accounts (django-allauth): email and password, verified email, two-factor (TOTP).
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
# "mandatory": an account cannot log in, and gets no welcome tokens, until its email address is
# verified; "optional": it can log in and browse at once, and gets its tokens when verified;
# "none": no verification, the tokens come at signup (the default under DEBUG, for `make run`).
ACCOUNT_EMAIL_VERIFICATION = env.str(
    "ACCOUNT_EMAIL_VERIFICATION", default="none" if DEBUG else "mandatory"
)
if ACCOUNT_EMAIL_VERIFICATION not in {"mandatory", "optional", "none"}:
    raise ImproperlyConfigured(
        f"ACCOUNT_EMAIL_VERIFICATION={ACCOUNT_EMAIL_VERIFICATION!r}: use mandatory, optional "
        "or none."
    )
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_CHANGE_EMAIL = True
ACCOUNT_EMAIL_NOTIFICATIONS = True
ACCOUNT_LOGOUT_REDIRECT_URL = "home"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Mockroom] "
ACCOUNT_PASSWORD_INPUT_RENDER_VALUE = False
ACCOUNT_REAUTHENTICATION_TIMEOUT = 300
# Links in emails: https whenever the session cookie is HTTPS-only (production).
ACCOUNT_DEFAULT_HTTP_PROTOCOL = (
    "https" if env.bool("SESSION_COOKIE_SECURE", default=not DEBUG) else "http"
)
# Behind one proxy, the client's address is the last X-Forwarded-For entry (the proxy's own).
ALLAUTH_TRUSTED_PROXY_COUNT = 1 if env.bool("BEHIND_TLS_PROXY", default=False) else 0
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Mockroom"
# Staff must turn on two-factor authentication before the admin opens for them.
STAFF_MFA_REQUIRED = env.bool("STAFF_MFA_REQUIRED", default=not DEBUG)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "servestatic.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Security headers. A strict CSP with nonces: no inline handlers, no CDN.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    # The nonce admits the <style> elements CodeMirror injects (static/js/code-editor.js passes
    # it on); style attributes stay refused, since nonces never apply to them.
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "object-src": [CSP.NONE],
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# HTTP Strict Transport Security: browsers refuse plain HTTP to this site for this long. Set it
# once the site is served over HTTPS only (a year: 31536000).
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto and appends the client's address
# to X-Forwarded-For (the rate limits count per address: config.limits.client_ip).
BEHIND_TLS_PROXY = env.bool("BEHIND_TLS_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None

# Logs (README, "Logs and error reports"): LOG_FORMAT=text (the default: one readable line) or
# json (one JSON object a line: timestamp, level, logger, message, request_id, exc_info), for
# every process; gunicorn's own lines follow it too (deploy/gunicorn.conf.py). A line never
# carries an answer, a transcript, code, a prompt or a password (config.logging).
unset_if_empty("LOG_FORMAT SENTRY_DSN SENTRY_ENVIRONMENT SENTRY_RELEASE SENTRY_TRACES_SAMPLE_RATE")
try:
    LOG_FORMAT = log_format(env.str("LOG_FORMAT", default="text"))
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
_log_handler = {
    "class": "logging.StreamHandler",
    "formatter": LOG_FORMAT,
    "filters": ["request_id"],
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {
            "()": "config.logging.TextFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "filters": {
        "request_id": {"()": "config.logging.RequestIdFilter"},
        "one_line": {"()": "config.logging.OneLine"},
    },
    "handlers": {
        "console": _log_handler,
        "console_one_line": {**_log_handler, "filters": ["request_id", "one_line"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "httpx2": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
        # Stripe's client logs every call at INFO; our own lines say what a payment did.
        "stripe": {"level": "WARNING"},
        # SQL statements with their parameters (the answers stored): never, even at DEBUG.
        "django.db.backends": {"level": "INFO"},
        # A request for a host not in ALLOWED_HOSTS (scanners do this all day): one line each.
        "django.security.DisallowedHost": {"handlers": ["console_one_line"], "propagate": False},
    },
}

# Error reports (config/sentry.py) to Sentry or any server speaking its protocol (GlitchTip,
# self-hosted Sentry) when SENTRY_DSN is set, from the web server and the task workers alike;
# never with a request's body, a local variable, a cookie or what a candidate wrote.
# SENTRY_TRACES_SAMPLE_RATE: the share of requests also sent as performance traces (0: none).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="production")
SENTRY_RELEASE = env.str("SENTRY_RELEASE", default="")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
if SENTRY_DSN:
    from config.sentry import sentry_init

    sentry_init(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        release=SENTRY_RELEASE,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
    )

# Background work (see config/schedule.py): tasks are rows in this database, run by
# `manage.py db_worker` and enqueued on schedule by `manage.py run_scheduler` (`make worker`).
# Three queues: "default" for the sweepers and alerts, "speech" for spoken answers' recordings to
# transcribe, "prefetch" for the next questions to prepare
# (each waits seconds on the model, so they have workers of their own: PREFETCH_WORKERS).
TASKS = {
    "default": {
        # django-tasks-db's, whose tasks carry the request id that enqueued them.
        "BACKEND": "config.requestid.DatabaseBackend",
        "QUEUES": ["default", "prefetch", "speech"],
    }
}

# The cache holds the rate and in-flight limits' counters, so every app process must share it:
# Redis in production (REDIS_URL, e.g. redis://127.0.0.1:6379/0), this process's memory for
# `make run` and the tests (then each process counts alone: a deploy check warns).
REDIS_URL = env.str("REDIS_URL", default="")
CACHES = {
    "default": (
        {
            # Django's Redis cache, with one client (and connection pool) per process instead
            # of one per request (config.cache).
            "BACKEND": "config.cache.RedisCache",
            "LOCATION": REDIS_URL,
            # A Redis that does not answer must not hold requests up (the limits then let
            # requests through, see config.limits).
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "mockroom"}
    )
}
# Sessions are read on every request. With Redis they are read from it (one round trip, no
# query) and written to the database too, which stays the record (Django's cached_db; a read
# that fails in Redis falls back to the database). Without Redis, from the database: a cache
# in one process's memory is not shared with the other processes.
SESSION_ENGINE = (
    "django.contrib.sessions.backends.cached_db"
    if REDIS_URL
    else "django.contrib.sessions.backends.db"
)

# Email: the ledger check's alerts to staff. EMAIL_URL as django-environ reads it, e.g.
# smtp+tls://user:password@smtp.example.com:587. Default: a mail server on this machine, like
# Django's; under DEBUG, the console.
_email = env.email_url("EMAIL_URL", default="consolemail://" if DEBUG else "smtp://localhost:25")
_mailer = {"BACKEND": _email["EMAIL_BACKEND"]}
if _email["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend":
    _mailer["OPTIONS"] = {
        "host": _email["EMAIL_HOST"] or "localhost",
        "port": _email["EMAIL_PORT"] or 25,
        "username": _email["EMAIL_HOST_USER"] or "",
        "password": _email["EMAIL_HOST_PASSWORD"] or "",
        "use_tls": _email.get("EMAIL_USE_TLS", False),
        "use_ssl": _email.get("EMAIL_USE_SSL", False),
        "timeout": 30,
    }
MAILERS = {"default": _mailer}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="mockroom@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Mockroom ---------------------------------------------------------------------------------

# Where the staff admin lives: another path than the default keeps most scanners away.
ADMIN_URL = env.str("ADMIN_URL", default="admin/").strip("/") + "/"

# Prometheus metrics (config/metrics.py, README "Metrics"): GET /metrics answers only a request
# with "Authorization: Bearer <METRICS_TOKEN>", and is a 404 for anyone else (and for everyone
# while it is unset). PROMETHEUS_MULTIPROC_DIR is the directory where every process keeps its
# counts (read by prometheus_client from the environment; `make serve` sets one of its own when
# it is unset); unset in a process, its counts stay in its memory.
unset_if_empty("METRICS_TOKEN PROMETHEUS_MULTIPROC_DIR")
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")

# Tokens an account receives when its email address is first verified (at signup when
# ACCOUNT_EMAIL_VERIFICATION is none), once per mailbox.
WELCOME_TOKENS = env.int("WELCOME_TOKENS", default=10)

# How many seconds a "minute" of a mock interview's answer time lasts: 60, except to try a mock
# interview's countdown and time-out in seconds (tests, a demo). Never below 1.
MOCK_SECONDS_PER_MINUTE = max(1, env.int("MOCK_SECONDS_PER_MINUTE", default=60))

OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="") or None
OPENAI_MODEL = env.str("OPENAI_MODEL", default="gpt-4o-mini")
QUESTION_SOURCE = env.str("QUESTION_SOURCE", default="openai" if OPENAI_API_KEY else "bank")
# One HTTP attempt's timeout, and the retries the client may add to it.
LLM_TIMEOUT_SECONDS = env.float("LLM_TIMEOUT_SECONDS", default=20.0)
LLM_MAX_RETRIES = env.int("LLM_MAX_RETRIES", default=1)
# Regenerations after an invalid or duplicate question, at no cost to the candidate.
LLM_MAX_REGENERATIONS = env.int("LLM_MAX_REGENERATIONS", default=2)
# How long a reservation may stay pending before it is freed (a crashed request's token comes
# back then). By default just long enough for the slowest possible generation (interviews.budget);
# a system check refuses a value the worst case does not fit in.
HOLD_TTL_SECONDS = env.int(
    "HOLD_TTL_SECONDS",
    default=hold_ttl_seconds(
        worst_case=worst_case_seconds(
            timeout=LLM_TIMEOUT_SECONDS,
            max_retries=LLM_MAX_RETRIES,
            regenerations=LLM_MAX_REGENERATIONS,
        )
        if QUESTION_SOURCE == "openai"
        else 0
    ),
)
# Model calls (questions and feedback) a day, all servers together; past it, questions and
# feedback answer 503 "not charged" until midnight UTC. 0: no limit.
LLM_DAILY_CALL_BUDGET = env.int("LLM_DAILY_CALL_BUDGET", default=0)
# Model calls (questions and feedback) in flight at once in one app process. Past it a request
# is refused at once with 503 "not charged": overload becomes clear refusals, not a queue.
LLM_MAX_CONCURRENCY = env.int("LLM_MAX_CONCURRENCY", default=300)

# Rate limits on the paths that spend money, in the shared cache (README, "Limits"): requests a
# period per user and per client address, in django-allauth's syntax (amount/period/key).
# RATE_LIMITS=false turns every rate limit off, ours and allauth's (load tests sign up hundreds
# of candidates from one address); the in-flight limit below stays.
RATE_LIMITS_ENABLED = env.bool("RATE_LIMITS", default=True)
RATE_LIMIT_QUESTIONS = env.str("RATE_LIMIT_QUESTIONS", default="20/m/user,300/m/ip")
RATE_LIMIT_FEEDBACK = env.str("RATE_LIMIT_FEEDBACK", default="20/m/user,300/m/ip")
# A spoken answer's upload: the most bytes taken (413 past it). Five minutes of the browser's
# Opus take about 1.5 MB, of Safari's AAC about 5 MB.
RECORDING_MAX_BYTES = env.int("RECORDING_MAX_BYTES", default=8_000_000)
# "Run the examples" on a coding problem: free, each run a sandboxed process.
RATE_LIMIT_CODE_RUNS = env.str("RATE_LIMIT_CODE_RUNS", default="15/m/user,300/m/ip")
for _name in ("RATE_LIMIT_QUESTIONS", "RATE_LIMIT_FEEDBACK", "RATE_LIMIT_CODE_RUNS"):
    parse_rates(globals()[_name], setting=_name)  # a bad rate stops the start, naming it
# django-allauth's limits (the rest keep allauth's defaults): signups per address, and failed
# logins per address and per account ("key": the email tried), checked before the password is.
RATE_LIMIT_SIGNUP = env.str("RATE_LIMIT_SIGNUP", default="5/m/ip,30/h/ip")
RATE_LIMIT_LOGIN_FAILED = env.str("RATE_LIMIT_LOGIN_FAILED", default="10/m/ip,5/5m/key")
for _name in ("RATE_LIMIT_SIGNUP", "RATE_LIMIT_LOGIN_FAILED"):
    parse_rates(globals()[_name], setting=_name, keys=("ip", "key"))
ACCOUNT_RATE_LIMITS = (
    {"signup": RATE_LIMIT_SIGNUP, "login_failed": RATE_LIMIT_LOGIN_FAILED}
    if RATE_LIMITS_ENABLED
    else False
)
# Model calls (questions and feedback) one candidate may have in flight at once, all processes
# together; another one is refused at once with 429 "not charged". 0: no limit.
LLM_MAX_IN_FLIGHT_PER_USER = env.int("LLM_MAX_IN_FLIGHT_PER_USER", default=1)

# The next question of a session is prepared in the background (the task worker) when one is
# delivered, so that it arrives at once when asked: not charged until then, discarded after
# PREFETCH_MAX_AGE_SECONDS or when the session ends. Its model call counts in the daily budget,
# never in the candidate's limits. false: every question is generated when asked.
PREFETCH = env.bool("PREFETCH", default=True)
PREFETCH_MAX_AGE_SECONDS = env.int("PREFETCH_MAX_AGE_SECONDS", default=600)

# Candidates' code runs in a sandbox, never in the app's process (interviews/execution/):
# "bubblewrap" (Debian's bwrap: no network, no host files, rlimits) or "off" (code is not run,
# and the page says so). A sandbox that fails its start-up probe turns itself off with a warning.
# At most EXECUTION_CONCURRENCY runs at once per app process; an app running as root starts the
# sandbox as EXECUTION_USER. The interpreters must live under /usr (the sandbox sees only /usr).
unset_if_empty(
    "EXECUTION_BACKEND EXECUTION_CONCURRENCY EXECUTION_USER EXECUTION_PYTHON EXECUTION_NODE"
)
EXECUTION_BACKEND = env.str("EXECUTION_BACKEND", default="bubblewrap")
if EXECUTION_BACKEND not in {"bubblewrap", "off"}:
    raise ImproperlyConfigured(f"EXECUTION_BACKEND={EXECUTION_BACKEND!r}: use bubblewrap or off.")
EXECUTION_CONCURRENCY = max(1, env.int("EXECUTION_CONCURRENCY", default=2))
EXECUTION_USER = env.str("EXECUTION_USER", default="nobody")
EXECUTION_PYTHON = env.str("EXECUTION_PYTHON", default="/usr/bin/python3")
EXECUTION_NODE = env.str("EXECUTION_NODE", default="/usr/bin/node")

# Spoken answers' transcription (interviews/speech/engines.py): "openai" (the transcriptions
# endpoint of OpenAI, or of any OpenAI-compatible server at TRANSCRIBE_BASE_URL), "local"
# (faster-whisper on this server's CPU: `make voice` installs it) or "off" (no record button).
# Unset: openai when TRANSCRIBE_API_KEY, OPENAI_API_KEY or TRANSCRIBE_BASE_URL is set, else local.
# The base URL and key default to OPENAI_BASE_URL and OPENAI_API_KEY where they are used.
unset_if_empty(
    "TRANSCRIBE_BACKEND TRANSCRIBE_MODEL TRANSCRIBE_BASE_URL TRANSCRIBE_API_KEY "
    "TRANSCRIBE_LANGUAGE TRANSCRIBE_TIMEOUT_SECONDS WHISPER_MODEL TRANSCRIBE_MAX_SECONDS"
)
TRANSCRIBE_BACKEND = env.str("TRANSCRIBE_BACKEND", default="")
if TRANSCRIBE_BACKEND not in {"", "openai", "local", "off"} and "." not in TRANSCRIBE_BACKEND:
    raise ImproperlyConfigured(
        f"TRANSCRIBE_BACKEND={TRANSCRIBE_BACKEND!r}: use openai, local or off."
    )
TRANSCRIBE_MODEL = env.str("TRANSCRIBE_MODEL", default="gpt-transcribe")
TRANSCRIBE_BASE_URL = env.str("TRANSCRIBE_BASE_URL", default="") or None
TRANSCRIBE_API_KEY = env.str("TRANSCRIBE_API_KEY", default="")
# An ISO-639-1 code (e.g. en); unset, the model detects the language.
TRANSCRIBE_LANGUAGE = env.str("TRANSCRIBE_LANGUAGE", default="")
# One HTTP attempt to the transcription server (one retry may follow).
TRANSCRIBE_TIMEOUT_SECONDS = env.float("TRANSCRIBE_TIMEOUT_SECONDS", default=60.0)
# The local engine's model: a name (tiny.en, base.en, small.en...) fetched on first use, which
# needs network, or the directory of a CTranslate2 Whisper model.
WHISPER_MODEL = env.str("WHISPER_MODEL", default="base.en")
# The longest recording, in seconds (a mock interview's answer time caps it further).
TRANSCRIBE_MAX_SECONDS = env.int("TRANSCRIBE_MAX_SECONDS", default=300)

# Token packs sold through Stripe Checkout (payments/, README "Buying tokens"). "stripe" when
# STRIPE_SECRET_KEY is set, otherwise "none" (nothing is sold: staff grant tokens). "fake" is a
# local checkout page for development and demos; with DEBUG off it stops the server (a system
# check). STRIPE_API_BASE points the client at another server (tests).
unset_if_empty(
    "PAYMENTS_PROVIDER STRIPE_SECRET_KEY STRIPE_WEBHOOK_SECRET STRIPE_API_BASE TOKEN_PACKS "
    "RATE_LIMIT_PURCHASES STRIPE_MAX_NETWORK_RETRIES"
)
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
PAYMENTS_PROVIDER = env.str("PAYMENTS_PROVIDER", default="stripe" if STRIPE_SECRET_KEY else "none")
if PAYMENTS_PROVIDER not in {"stripe", "fake", "none"}:
    raise ImproperlyConfigured(
        f"PAYMENTS_PROVIDER={PAYMENTS_PROVIDER!r}: use stripe, fake or none."
    )
# The packs on sale: unset, the ones in payments/packs.py. A JSON list of objects with code,
# tokens, amount (in the currency's minor units: cents) and currency, e.g.
# [{"code": "small", "tokens": 20, "amount": 500, "currency": "usd"}].
TOKEN_PACKS = env.json("TOKEN_PACKS", default=None)
# Checkouts started, per user and per client address (card-testing protection).
RATE_LIMIT_PURCHASES = env.str("RATE_LIMIT_PURCHASES", default="5/m/user,20/h/user,30/h/ip")
