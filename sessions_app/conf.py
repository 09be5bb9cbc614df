"""The apps' settings: one `AGENTOS` dict in the host's settings, with a default for every key.

A host site sets only what it changes. Values are read on access (not cached at import) so tests
and `override_settings` see changes.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Longest user message accepted by any edge, in characters.
    "MAX_MESSAGE_CHARS": 32_000,
    # How long a process keeps an agent (with its model config) cached between runs.
    "AGENT_CACHE_SECONDS": 5.0,
    # A tool call that takes longer is abandoned and reported to the model as an error.
    "TOOL_TIMEOUT_SECONDS": 30.0,
    # Threads that run the engine's database work (start and end of each run) under ASGI; None:
    # 1 on SQLite (one writer at a time anyway), 4 on other databases.
    "DB_THREADS": None,
    # Pin each server process, all its threads, to one CPU (sessions_app.affinity): "" (off), "auto"
    # or a CPU list ("0-3"); processes of one machine take different CPUs. The site's asgi.py applies it.
    "CPU_AFFINITY": "",
    # Where the processes of a machine hold their CPUs' lock files ("": a folder of the temp directory).
    "CPU_LOCK_DIR": "",
    # Where the agent websocket is routed (agents_app.routing) and where the chat page connects.
    "WEBSOCKET_PATH": "ws/agents/",
    # Where the team and workflow websockets are routed (same frames as the agent one).
    "TEAMS_WEBSOCKET_PATH": "ws/teams/",
    "WORKFLOWS_WEBSOCKET_PATH": "ws/workflows/",
    # Images sent with a run's message (sessions_app.images): the largest image in bytes (larger:
    # 413 image_too_large), the most images per message (more: 400 too_many_images), and the types
    # taken, among image/png, image/jpeg, image/gif and image/webp (the types the bytes are checked
    # against; others: 415 unsupported_media_type).
    "IMAGE_MAX_BYTES": 10 * 1024 * 1024,
    "IMAGE_MAX_COUNT": 4,
    "IMAGE_TYPES": ["image/png", "image/jpeg", "image/gif", "image/webp"],
    # Upper bound on history runs an agent may ask for, whatever its admin setting says.
    "MAX_HISTORY_RUNS": 50,
    # Upper bound on history messages sent to a model (the oldest runs of the window are dropped
    # first; per-agent character bound: Agent.history_max_chars).
    "MAX_HISTORY_MESSAGES": 200,
    # Memory (agents_app.memory): the characters of the user's message and of the answer the memory
    # manager reads; the longest session summary kept; the transcript one summary update reads.
    "MEMORY_EXCHANGE_MAX_CHARS": 8_000,
    "SESSION_SUMMARY_MAX_CHARS": 4_000,
    "SESSION_SUMMARY_INPUT_MAX_CHARS": 24_000,
    # Modules imported at start-up so that their @tool functions register.
    "TOOL_MODULES": ["agents_app.tools.builtin"],
    # Modules imported at start-up so that their @step_function workflow functions register.
    "STEP_MODULES": ["agents_app.workflows.builtin"],
    # Provider name -> import path of a agents_app.providers.base.ModelProvider subclass.
    "MODEL_PROVIDERS": {
        "openai": "agents_app.providers.openai_compat.OpenAICompatibleProvider",
        "offline": "agents_app.providers.offline.OfflineProvider",
    },
    # Busy sessions (see Agent.busy_session_policy): how long a queued message waits for the
    # session's running run to end, and after how long a run still marked running no longer makes
    # its session busy (its server process most likely died).
    "SESSION_QUEUE_TIMEOUT_SECONDS": 120.0,
    "RUN_STALE_SECONDS": 900.0,
    # Crash recovery (sessions_app.liveness, agents_app.runtime). With a shared channel layer, each
    # server process writes a heartbeat this often; a run whose process has not beaten for
    # PROCESS_DEAD_SECONDS is taken over (stored as interrupted, keeping what it streamed).
    "PROCESS_HEARTBEAT_SECONDS": 2.0,
    "PROCESS_DEAD_SECONDS": 6.0,
    # A streaming run saves its output and events so far this often (0: only when it ends), so a
    # crash loses at most this much of what it streamed. Runs shorter than this never pay for it.
    "RUN_CHECKPOINT_SECONDS": 1.0,
    # Per-run budgets (agents_app.engine.budget): what one run may use when its agent or team sets no
    # limit of its own (None: no limit). Workflows use these. A run that reaches one ends with
    # `budget_exceeded`, keeping its partial output.
    "RUN_BUDGET": {"MODEL_CALLS": 50, "TOOL_CALLS": 200, "TOKENS": None, "SECONDS": 900},
    # Rate limits on starting runs (agents_app.throttles), DRF rates such as "30/min" or "500/hour",
    # counted in Django's cache (shared across processes when it is Redis): "USER", a user's runs of
    # anything; "RUNNABLE", a user's runs of one agent, team or workflow (which may set its own).
    # Empty lists: no limit.
    "RUN_RATE_LIMITS": {"USER": [], "RUNNABLE": []},
    # How long an Idempotency-Key on a run request keeps answering with the run it started.
    "IDEMPOTENCY_SECONDS": 86_400,
    # Fernet keys that encrypt model API keys at rest (agents_app.secrets), newest first; keys derived
    # from SECRET_KEY and SECRET_KEY_FALLBACKS follow. Empty: the SECRET_KEY one encrypts.
    "ENCRYPTION_KEYS": [],
    # `/readyz` and agno's `/health` (agents_app.health): each dependency's check gives up after this
    # long and counts as failed; the checks run concurrently, so this bounds the whole answer.
    "HEALTH_TIMEOUT_SECONDS": 2.0,
    # agno AgentOS compatible API (agents_app.agno_compat): the URL prefix it is served under
    # ("os" -> /os/agents, ...; "" serves it at the site root like agno's server; None: not served).
    "AGNO_COMPAT_PREFIX": "os",
    # Let callers without a token read the agno routes that describe what this site serves
    # (/config, /health, /info, and the agent, team and workflow lists and details), as agno's
    # RemoteAgent / RemoteTeam / RemoteWorkflow do. Never runs, sessions or memories. Off: a token
    # is needed (docs/configuration.md has the risk).
    "OS_PUBLIC_READ": False,
    # agno's POST /optimize-memories: the model configuration (its name, or "provider:model_id")
    # used when the request names none ("": the request must name one), and how long the request
    # waits for the Celery worker's result before answering 202 with the record's id.
    "MEMORY_OPTIMIZE_MODEL": "",
    "MEMORY_OPTIMIZE_WAIT_SECONDS": 60.0,
    # Deprecated: browser origins allowed to call the agno routes. CORS is django-cors-headers' now
    # (CORS_ALLOWED_ORIGINS, docs/deployment.md#cors); origins listed here are still allowed on the
    # agno routes when the site runs its middleware (agents_app.cors), with a warning (agentos.W003).
    "AGNO_COMPAT_CORS_ORIGINS": [],
    # Scoped API tokens (sessions_app.tokens, docs/api.md#api-tokens): the lifetime of a token created
    # without an expiry, in days (0 or None: it never expires); the longest lifetime one may be given
    # (0 or None: no limit, "never" allowed); the most live (unrevoked, unexpired) tokens per user
    # (0 or None: no limit); how often a token's last use is written (at most), which is also how
    # often an open websocket checks that its token is still live.
    "API_TOKEN_DEFAULT_DAYS": 90,
    "API_TOKEN_MAX_DAYS": None,
    "API_TOKENS_PER_USER": 100,
    "API_TOKEN_LAST_USED_SECONDS": 60.0,
    # How long a process keeps a token it authenticated (DRF's or a scoped API token, with its user;
    # sessions_app.authcache), so that its next requests cost no SQL statement to authenticate. A
    # change made in this process (revoked, deleted, user deactivated) applies at once; one made by
    # another process within this time. 0: no cache, a SELECT per request.
    "AUTH_CACHE_SECONDS": 5.0,
    # Hooks (agents_app.hooks). Modules imported on first use so that their @hook functions register.
    "HOOK_MODULES": ["agents_app.hooks.builtin"],
    # Where hooks run: "auto" (the agent's admin choice, else the decorator's default), "always"
    # (every hook in the background) or "never" (every hook inline). Guardrails always run inline.
    "HOOKS_BACKGROUND": "auto",
    # An in-process Celery worker thread for background hooks: "auto" (when the broker is memory://,
    # i.e. the embedded mode), "true" (also with a real broker), "false" (a `celery worker` runs them).
    "HOOKS_EMBEDDED_WORKER": "auto",
    "HOOKS_EMBEDDED_CONCURRENCY": 2,
    # Backoff between attempts of a failing background hook: base * 2**(attempt - 1), capped.
    "HOOKS_RETRY_BACKOFF_SECONDS": 2.0,
    "HOOKS_RETRY_BACKOFF_MAX_SECONDS": 300.0,
    # A claimed attempt is presumed dead (its worker was killed) after the hook's timeout plus this.
    "HOOKS_LEASE_GRACE_SECONDS": 10.0,
    # The periodic sweep (every HOOKS_SWEEP_INTERVAL_SECONDS, Celery beat or the embedded worker)
    # re-publishes executions left queued this long, and running ones as soon as their lease expired.
    "HOOKS_SWEEP_AFTER_SECONDS": 300.0,
    "HOOKS_SWEEP_INTERVAL_SECONDS": 15.0,
    # How often Celery beat ends the paused runs whose agent's approval timeout has passed (the
    # embedded worker does it with its hook sweep; a continue or a new message in the session ends
    # an overdue run it meets, whatever the schedule).
    "APPROVALS_SWEEP_INTERVAL_SECONDS": 60.0,
    # Who may decide on other users' paused tool calls in the admin's approvals inbox: every staff
    # user (True), or only users with the sessions_app.approve_tool_calls permission (False).
    "APPROVALS_BY_STAFF": True,
    # The model the model-judged builtin hooks call: a ModelConfig name; empty = the agent's own model.
    "HOOKS_JUDGE_MODEL": "",
    # The topics tracker keeps at most this many topics in the session state.
    "HOOKS_MAX_TOPICS": 30,
    # Evals (docs/evals.md): the judge model (a ModelConfig name; empty: the suite's judge, else the
    # target's own model), the user eval runs run as (created if missing, cannot sign in), how often
    # a case whose model call failed is tried again and after how long (scheduled suites: Celery
    # beat's entry agentos-eval-schedules, and the embedded worker's sweep).
    "EVALS_JUDGE_MODEL": "",
    "EVALS_USER": "agentos-evals",
    "EVALS_MAX_RETRIES": 2,
    "EVALS_RETRY_SECONDS": 2.0,
    # A case queued this long is published again (its message was lost); one running this long is
    # presumed dead (its worker was killed) and queued again (agents_app.evals.services.eval_cases_sweep).
    "EVALS_SWEEP_AFTER_SECONDS": 300.0,
    "EVALS_CASE_LEASE_SECONDS": 1800.0,
    # agno's `POST /eval-runs` answers when its case is done, or after this many seconds (then with
    # the eval run as it stands, which `GET /eval-runs/{id}` polls).
    "EVALS_AGNO_WAIT_SECONDS": 300.0,
    # Telemetry and feature flags (used by telemetry_app and by alpha features).
    "API_RUNTIME": "prd",
    "ALPHA_FEATURES": False,
}


class AgentOSSettings:
    """Attribute access to AGENTOS with defaults: `agentos_settings.MAX_MESSAGE_CHARS`."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown AgentOS setting: {name}")
        user = getattr(settings, "AGENTOS", {}) or {}
        return user.get(name, DEFAULTS[name])


agentos_settings = AgentOSSettings()
