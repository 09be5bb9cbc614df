"""Settings for the AgentOS site, read from the environment with django-environ.

Every value has a default that works in the embedded mode (SQLite, in-memory channel layer, no
broker server, offline demo model), so `manage.py runserver` works on a fresh machine. Production
sets DATABASE_URL, REDIS_URL, DJANGO_SECRET_KEY, DJANGO_DEBUG=false and DJANGO_ALLOWED_HOSTS.
Every variable is listed in docs/configuration.md.
"""

import sys
from pathlib import Path

import environ
from corsheaders.defaults import default_headers as cors_default_headers

from agentos_site.logconfig import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env.str(
    "DJANGO_SECRET_KEY",
    default="insecure-embedded-mode-key-change-me-in-production-0123456789",
)
# Former secret keys, still accepted (signed cookies, and stored model API keys until
# `manage.py rotate_encryption_keys` moves them to the new key: docs/models.md#rotating-the-keys).
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# daphne's app only makes `runserver` serve ASGI (websockets included); it imports Twisted, about
# 40 MiB of memory that a process of the production server (uvicorn) or a Celery worker never uses.
_RUNSERVER = sys.argv[1:2] == ["runserver"]
INSTALLED_APPS = [
    *(["daphne"] if _RUNSERVER else []),
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "corsheaders",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "agents_app",
    "sessions_app",
    "telemetry_app",
]

# Django's standard middleware, in versions that run in the event loop under ASGI instead of
# taking a thread hop per hook (agentos_site/middleware.py says why and when they still do).
MIDDLEWARE = [
    # First: every line logged while a request is served carries its id, and so does the response.
    "agentos_site.middleware.RequestIdMiddleware",
    # CORS (django-cors-headers, async-capable: no thread hop) before anything that may answer by
    # itself (the security redirect, CommonMiddleware's), so those answers carry its headers too; a
    # preflight is answered here, before authentication (browsers send it without credentials).
    "corsheaders.middleware.CorsMiddleware",
    "agentos_site.middleware.SecurityMiddleware",
    "agentos_site.middleware.SessionMiddleware",
    "agentos_site.middleware.CommonMiddleware",
    "agentos_site.middleware.CsrfViewMiddleware",
    "agentos_site.middleware.AuthenticationMiddleware",
    "agentos_site.middleware.MessageMiddleware",
    "agentos_site.middleware.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "agentos_site.urls"
ASGI_APPLICATION = "agentos_site.asgi.application"
WSGI_APPLICATION = "agentos_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers proceed while a run is being written; the busy timeout turns brief write
    # contention between concurrent runs into a short wait instead of "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# `collectstatic` writes each file under a content-hashed name with gzip copies next to it
# (servestatic's storage); with DEBUG off the ASGI application serves STATIC_ROOT itself
# (agentos_site/asgi.py), hashed names cached for a year. Until collectstatic has run, names stay
# unhashed (agentos_site/storage.py), as in development.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "agentos_site.storage.StaticFilesStorage"},
}
# Uploaded files (the images sent with runs' messages, sessions_app.RunImage) are written through
# the default storage under MEDIA_ROOT, outside the static files and the checkout's code. Nothing
# serves MEDIA_ROOT: an image reaches its owner (and staff) only through the authenticated
# GET /api/runs/<run_id>/images/<position>, so never point a proxy's public location at it.
# Several server processes need one shared MEDIA_ROOT (a shared volume), or another storage backend
# in STORAGES["default"] (e.g. django-storages' S3).
MEDIA_ROOT = Path(env.str("DJANGO_MEDIA_ROOT", default=str(BASE_DIR / "media")))
MEDIA_URL = "media/"
LOGIN_URL = "admin:login"

# Channels: in-memory for the embedded single process; Redis when several processes serve.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8's default socket timeout (5 s) equals channels_redis's receive block time,
            # so an idle receive would time out; give the socket more room than the block.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 10}],
                # Every key the layer writes starts with it: sites (or test runs) sharing a Redis
                # database keep apart.
                "prefix": env.str("CHANNEL_LAYER_PREFIX", default="asgi"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "agents_app.authentication.BearerOrTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    # The one error map: `code` next to `detail` in every error body, also for views that are not
    # the apps' own (the token endpoint). The apps' views use it whatever this says.
    "EXCEPTION_HANDLER": "sessions_app.api_base.exception_handler",
}

# CORS (django-cors-headers; docs/deployment.md#cors): browser pages of these origins may call the REST
# API and the agno routes (agno's Agent UI: http://localhost:3000 in development). Default: none. Exact
# origins (scheme://host[:port]), and/or regular expressions; comma-separated in the environment.
CORS_ALLOWED_ORIGINS = env.list("DJANGO_CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOWED_ORIGIN_REGEXES = env.list("DJANGO_CORS_ALLOWED_ORIGIN_REGEXES", default=[])
# Only the APIs: /api/ and the agno routes (AGENTOS["AGNO_COMPAT_PREFIX"], /os/ here); change it with the prefix.
CORS_URLS_REGEX = env.str("DJANGO_CORS_URLS_REGEX", default=r"^/(api|os)/")
# Clients authenticate with a token header, not cookies: no credentialed cross-origin requests.
CORS_ALLOW_CREDENTIALS = False
# What a browser client may send besides the defaults (Authorization, Content-Type...): an
# EventSource's Last-Event-ID, an Idempotency-Key, its own X-Request-ID; and what it may read.
CORS_ALLOW_HEADERS = (*cors_default_headers, "idempotency-key", "last-event-id", "x-request-id")
CORS_EXPOSE_HEADERS = ["X-Request-ID", "Retry-After", "Idempotent-Replayed"]
CORS_PREFLIGHT_MAX_AGE = env.int("DJANGO_CORS_PREFLIGHT_MAX_AGE", default=600)

SPECTACULAR_SETTINGS = {
    "TITLE": "AgentOS for Django API",
    "DESCRIPTION": "Run LLM agents configured in the Django admin; sessions, runs and messages.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Names for choice sets that share a field name (drf-spectacular would otherwise invent names
    # such as `StatusC17Enum` and warn on every schema load; CI fails on schema warnings): one name
    # for the hook-mode choices (a hook row's mode, an agent's memory/summary hook modes); a stored
    # run's status versus the status a finished run answers with; an agent's output content type
    # (text or JSON) versus a team's or workflow's (text only). The lists match the serializers'
    # ChoiceFields; if those change, the warning (and CI) says so.
    "ENUM_NAME_OVERRIDES": {
        "HookModeEnum": "agents_app.models.HookMode",
        "RunStatusEnum": "sessions_app.models.Run.Status",
        "FinishedRunStatusEnum": ["completed", "error", "cancelled"],
        "RunOutputContentTypeEnum": ["str", "json"],
        "TextContentTypeEnum": ["str"],
        "EvalCaseKindEnum": "agents_app.eval_models.EvalCase.Kind",
        "EvalStatusEnum": "agents_app.eval_models.EvalStatus",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Django's cache: rate limits count runs in it, so with several processes it must be shared (Redis:
# DJANGO_CACHE_URL=redis://host:6379/1). Embedded default: local memory (one process).
CACHES = {"default": env.cache_url("DJANGO_CACHE_URL", default="locmemcache://")}
CACHES["default"]["KEY_PREFIX"] = env.str("DJANGO_CACHE_KEY_PREFIX", default="")

# Product settings: one dict, read by the apps through sessions_app.conf with defaults for
# everything not set here.
AGENTOS = {
    "MAX_MESSAGE_CHARS": env.int("AGENTOS_MAX_MESSAGE_CHARS", default=32_000),
    "AGENT_CACHE_SECONDS": env.float("AGENTOS_AGENT_CACHE_SECONDS", default=5.0),
    "TOOL_TIMEOUT_SECONDS": env.float("AGENTOS_TOOL_TIMEOUT_SECONDS", default=30.0),
    # One CPU per server process (docs/deployment.md#one-cpu-per-process): "", "auto" or "0-3".
    "CPU_AFFINITY": env.str("AGENTOS_CPU_AFFINITY", default=""),
    "CPU_LOCK_DIR": env.str("AGENTOS_CPU_LOCK_DIR", default=""),
    # Images with a run's message (docs/api.md#images): bytes per image, images per message, types.
    "IMAGE_MAX_BYTES": env.int("AGENTOS_IMAGE_MAX_BYTES", default=10 * 1024 * 1024),
    "IMAGE_MAX_COUNT": env.int("AGENTOS_IMAGE_MAX_COUNT", default=4),
    "IMAGE_TYPES": env.list("AGENTOS_IMAGE_TYPES", default=["image/png", "image/jpeg", "image/gif", "image/webp"]),
    "API_RUNTIME": env.str("AGENTOS_API_RUNTIME", default="prd"),
    "ALPHA_FEATURES": env.bool("AGENTOS_ALPHA_FEATURES", default=False),
    # Anonymous reads of the agno routes that describe the site (docs/configuration.md): off.
    "OS_PUBLIC_READ": env.bool("AGENTOS_OS_PUBLIC_READ", default=False),
    "MEMORY_OPTIMIZE_MODEL": env.str("AGENTOS_MEMORY_OPTIMIZE_MODEL", default=""),
    "MEMORY_OPTIMIZE_WAIT_SECONDS": env.float("AGENTOS_MEMORY_OPTIMIZE_WAIT_SECONDS", default=60.0),
    # Telemetry (telemetry_app; docs/telemetry.md): run and launch events buffered in the database
    # and uploaded in batches by Celery beat to the collector of AGENTOS_API_RUNTIME (or _URL).
    "TELEMETRY": env.bool("AGENTOS_TELEMETRY", default=False),
    "TELEMETRY_URL": env.str("AGENTOS_TELEMETRY_URL", default=""),
    "TELEMETRY_API_KEY": env.str("AGENTOS_TELEMETRY_API_KEY", default=""),
    "TELEMETRY_BATCH_SIZE": env.int("AGENTOS_TELEMETRY_BATCH_SIZE", default=500),
    "TELEMETRY_FLUSH_INTERVAL_SECONDS": env.float("AGENTOS_TELEMETRY_FLUSH_INTERVAL_SECONDS", default=60.0),
    "METRICS_REFRESH_INTERVAL_SECONDS": env.float("AGENTOS_METRICS_REFRESH_INTERVAL_SECONDS", default=3600.0),
    # Traces exported over OTLP/HTTP (docs/traces-and-metrics.md): on when asked, or when the
    # standard OpenTelemetry endpoint variable is set.
    "OTEL_TRACES": env.bool(
        "AGENTOS_OTEL_TRACES",
        default=bool(
            env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
            or env.str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", default="")
        ),
    ),
    "OTEL_SERVICE_NAME": env.str("OTEL_SERVICE_NAME", default="agentos"),
    "TELEMETRY_TIMEOUT_SECONDS": env.float("AGENTOS_TELEMETRY_TIMEOUT_SECONDS", default=60.0),
    "TELEMETRY_MAX_AGE_SECONDS": env.int("AGENTOS_TELEMETRY_MAX_AGE_SECONDS", default=7 * 24 * 3600),
    "TELEMETRY_MAX_SCHEMA_VERSION": env.int("AGENTOS_TELEMETRY_MAX_SCHEMA_VERSION", default=3),
    "TELEMETRY_INCLUDE_CONTENT": env.bool("AGENTOS_TELEMETRY_INCLUDE_CONTENT", default=False),
    "TELEMETRY_SITE_ID": env.str("AGENTOS_TELEMETRY_SITE_ID", default=""),
    "TELEMETRY_COLLECTOR_MAX_EVENTS": env.int("AGENTOS_TELEMETRY_COLLECTOR_MAX_EVENTS", default=1000),
    "TELEMETRY_COLLECTOR_MAX_BYTES": env.int("AGENTOS_TELEMETRY_COLLECTOR_MAX_BYTES", default=5 * 1024 * 1024),
    # Hooks: `auto` (each agent's admin choice, else the hook's decorator default), `always` or
    # `never` (every hook in the background / inline, whatever agents say; guardrails stay inline).
    "HOOKS_BACKGROUND": env.str("AGENTOS_HOOKS_BACKGROUND", default="auto"),
    # `auto`: a worker thread in each web process when the broker is memory:// (embedded mode).
    "HOOKS_EMBEDDED_WORKER": env.str("AGENTOS_HOOKS_EMBEDDED_WORKER", default="auto"),
    "HOOKS_JUDGE_MODEL": env.str("AGENTOS_HOOKS_JUDGE_MODEL", default=""),
    # The model that judges evals (a ModelConfig name; docs/evals.md).
    "EVALS_JUDGE_MODEL": env.str("AGENTOS_EVALS_JUDGE_MODEL", default=""),
    # How often the hook sweep runs (beat and the embedded worker): a dead worker's hook runs again
    # within its lease (timeout + HOOKS_LEASE_GRACE_SECONDS) plus this.
    "HOOKS_SWEEP_INTERVAL_SECONDS": env.float("AGENTOS_HOOKS_SWEEP_INTERVAL_SECONDS", default=15.0),
    # How often beat ends the paused runs whose approval timeout passed (docs/human-in-the-loop.md).
    "APPROVALS_SWEEP_INTERVAL_SECONDS": env.float("AGENTOS_APPROVALS_SWEEP_INTERVAL_SECONDS", default=60.0),
    # Every staff user may decide on other users' paused tool calls in the admin (False: only those
    # with the sessions_app.approve_tool_calls permission).
    "APPROVALS_BY_STAFF": env.bool("AGENTOS_APPROVALS_BY_STAFF", default=True),
    # Crash recovery (docs/deployment.md): each process's heartbeat period, the silence after which
    # its runs are taken over, and how often a streaming run checkpoints its output and events.
    "PROCESS_HEARTBEAT_SECONDS": env.float("AGENTOS_PROCESS_HEARTBEAT_SECONDS", default=2.0),
    "PROCESS_DEAD_SECONDS": env.float("AGENTOS_PROCESS_DEAD_SECONDS", default=6.0),
    "RUN_CHECKPOINT_SECONDS": env.float("AGENTOS_RUN_CHECKPOINT_SECONDS", default=1.0),
    # Per-run budgets (docs/models.md#per-run-budgets): the defaults for agents and teams that set none.
    "RUN_BUDGET": {
        "MODEL_CALLS": env.int("AGENTOS_RUN_MAX_MODEL_CALLS", default=50),
        "TOOL_CALLS": env.int("AGENTOS_RUN_MAX_TOOL_CALLS", default=200),
        "TOKENS": env.int("AGENTOS_RUN_MAX_TOKENS", default=None),
        "SECONDS": env.int("AGENTOS_RUN_MAX_SECONDS", default=900),
    },
    # Rate limits on starting runs (docs/configuration.md#rate-limits): comma-separated DRF rates.
    "RUN_RATE_LIMITS": {
        "USER": env.list("AGENTOS_RUN_RATE_USER", default=[]),
        "RUNNABLE": env.list("AGENTOS_RUN_RATE_RUNNABLE", default=[]),
    },
    "IDEMPOTENCY_SECONDS": env.int("AGENTOS_IDEMPOTENCY_SECONDS", default=86_400),
    # Model API keys are stored encrypted (docs/models.md#api-keys): comma-separated Fernet keys,
    # newest first. Empty: a key derived from SECRET_KEY (and SECRET_KEY_FALLBACKS) encrypts.
    "ENCRYPTION_KEYS": env.list("AGENTOS_ENCRYPTION_KEYS", default=[]),
    # Prometheus metrics at /metrics (docs/deployment.md#metrics): a scraper sends the token as a
    # Bearer token; without one, only staff users (by their session) may read them.
    "METRICS_ENABLED": env.bool("AGENTOS_METRICS_ENABLED", default=True),
    "METRICS_TOKEN": env.str("AGENTOS_METRICS_TOKEN", default=""),
    # Scoped API tokens (docs/api.md#api-tokens): the lifetime of a token created without an expiry
    # (days; 0: never expires), the longest one may be given (days; 0: no limit), the most live
    # tokens a user may hold (0: no limit), and how often a token's last use is written (seconds).
    "API_TOKEN_DEFAULT_DAYS": env.float("AGENTOS_API_TOKEN_DEFAULT_DAYS", default=90),
    "API_TOKEN_MAX_DAYS": env.float("AGENTOS_API_TOKEN_MAX_DAYS", default=0),
    "API_TOKENS_PER_USER": env.int("AGENTOS_API_TOKENS_PER_USER", default=100),
    "API_TOKEN_LAST_USED_SECONDS": env.float("AGENTOS_API_TOKEN_LAST_USED_SECONDS", default=60.0),
    # How long a process caches a token it authenticated, with its user (seconds; 0: no cache).
    "AUTH_CACHE_SECONDS": env.float("AGENTOS_AUTH_CACHE_SECONDS", default=5.0),
}

# Celery (agentos_site/celery.py reads every CELERY_* setting): background hooks, and the periodic
# sweep that re-enqueues hook executions whose message was lost. The default broker, memory://, needs
# no server: each web process runs a worker thread (embedded mode). Production sets
# CELERY_BROKER_URL=redis://… or amqp://… and runs `celery -A agentos_site worker -B -l info`.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="memory://")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None  # outcomes are recorded in the database (HookExecution)
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged only once it has finished, and requeued if its worker dies meanwhile: with
# the claim in the database, a redelivered task runs a hook again only if the first attempt died.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=570)
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing happens after a run's transaction commits: never hang a response on a dead broker (the
# sweep re-enqueues what could not be published).
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=2.0)
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
# Redis: an unacknowledged task (its worker died) is redelivered after this many seconds.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
# Redis broker: a prefix on every key Celery writes, so that two sites (or a test) can share one
# Redis database without sharing queues.
if env.str("CELERY_BROKER_KEY_PREFIX", default=""):
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = env.str("CELERY_BROKER_KEY_PREFIX")
if CELERY_BROKER_URL.startswith("memory://"):
    # Embedded: the worker thread polls its in-process queue this often (seconds).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.05}
CELERY_BEAT_SCHEDULE = {
    "agentos-hook-executions-sweep": {
        "task": "agents_app.hook_executions_sweep",
        "schedule": AGENTOS["HOOKS_SWEEP_INTERVAL_SECONDS"],
        "options": {"expires": AGENTOS["HOOKS_SWEEP_INTERVAL_SECONDS"]},
    },
    # End the paused runs nobody decided on within their agent's approval timeout (fail closed).
    "agentos-paused-runs-expire": {
        "task": "agents_app.paused_runs_expire",
        "schedule": AGENTOS["APPROVALS_SWEEP_INTERVAL_SECONDS"],
        "options": {"expires": AGENTOS["APPROVALS_SWEEP_INTERVAL_SECONDS"]},
    },
    # Start the eval suites whose schedule (nightly, ...) is due (docs/evals.md).
    "agentos-eval-schedules": {
        "task": "agents_app.eval_schedules_run",
        "schedule": 300.0,
        "options": {"expires": 300.0},
    },
    # Forget Idempotency-Keys older than AGENTOS_IDEMPOTENCY_SECONDS.
    "agentos-run-requests-purge": {
        "task": "agents_app.run_requests_purge",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    # Upload the telemetry buffer (a no-op while AGENTOS_TELEMETRY is off). `expires`: ticks missed
    # while no worker runs are dropped, not piled up.
    "agentos-telemetry-flush": {
        "task": "telemetry_app.flush",
        "schedule": AGENTOS["TELEMETRY_FLUSH_INTERVAL_SECONDS"],
        "options": {"expires": AGENTOS["TELEMETRY_FLUSH_INTERVAL_SECONDS"]},
    },
}
# Recompute the daily metrics of the days that changed (agno's GET /os/metrics; docs/traces-and-metrics.md).
if AGENTOS["METRICS_REFRESH_INTERVAL_SECONDS"] > 0:
    CELERY_BEAT_SCHEDULE["agentos-metrics-refresh"] = {
        "task": "telemetry_app.metrics_refresh",
        "schedule": AGENTOS["METRICS_REFRESH_INTERVAL_SECONDS"],
        "options": {"expires": AGENTOS["METRICS_REFRESH_INTERVAL_SECONDS"]},
    }

# One handler on the root logger, each line printed once; text, or JSON lines carrying the ids of
# the run and the request they were written for (agentos_site/logconfig.py says how).
LOG_FORMAT = env.str("DJANGO_LOG_FORMAT", default="text")
LOGGING = logging_config(level=env.str("DJANGO_LOG_LEVEL", default="WARNING"), fmt=LOG_FORMAT)
if LOG_FORMAT == "json":
    # A Celery worker keeps the site's handler instead of installing its own text one.
    CELERY_WORKER_HIJACK_ROOT_LOGGER = False
