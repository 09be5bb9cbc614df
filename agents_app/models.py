"""What an operator configures in the admin: model endpoints and agents."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from agents_app.cache import agent_cache_clear
from agents_app.secrets import EncryptedTextField


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Access(models.TextChoices):
    EVERYONE = "everyone", "Every signed-in user"
    RESTRICTED = "restricted", "Only the users and groups below (and staff)"


class SluggedModel(TimeStampedModel):
    """Agents, teams and workflows: named by a `slug` (their id in URLs and events), listed by it,
    and used by every signed-in user or only by some (agents_app.access)."""

    access = models.CharField(
        max_length=16,
        choices=Access.choices,
        default=Access.EVERYONE,
        help_text="Who may see and use it. Anyone else gets a 404, as if it did not exist. Staff always may.",
    )
    allowed_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="+", help_text="With restricted access: these users."
    )
    allowed_groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="+", help_text="With restricted access: the members of these groups."
    )

    class Meta:
        abstract = True
        ordering = ["slug"]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"  # type: ignore[attr-defined]


class ClearsAgentCache:
    """Saving or deleting a row of this model changes what a cached agent would run with."""

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)  # type: ignore[misc]
        agent_cache_clear()

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        result = super().delete(*args, **kwargs)  # type: ignore[misc]
        agent_cache_clear()
        return result


class ModelConfig(TimeStampedModel):
    """One model endpoint. Any OpenAI-compatible server works (OpenAI, Ollama, vLLM, LM Studio,
    OpenRouter); the offline provider needs no server and no key."""

    class Provider(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible API"
        OFFLINE = "offline", "Built-in offline model (no API key, for demos and tests)"

    name = models.CharField(max_length=100, unique=True)
    provider = models.CharField(max_length=32, choices=Provider.choices, default=Provider.OPENAI)
    base_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="Leave empty for api.openai.com; e.g. http://localhost:11434/v1 for Ollama.",
    )
    model_id = models.CharField(max_length=200, help_text="The model name the endpoint expects, e.g. gpt-4o-mini.")
    api_key = EncryptedTextField(
        blank=True,
        help_text=(
            "Stored encrypted, server-side only: never shown again, never returned by the API. Leave empty "
            "to read the key from the environment variable below."
        ),
    )
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", "An environment variable name, e.g. OPENAI_API_KEY.")],
        help_text=(
            "The environment variable holding the key, read when no key is stored. Empty: OPENAI_API_KEY for "
            "the OpenAI-compatible provider."
        ),
    )
    temperature = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    max_tokens = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    timeout_seconds = models.FloatField(default=60.0, validators=[MinValueValidator(0.1), MaxValueValidator(3600)])
    max_retries = models.PositiveSmallIntegerField(default=2, validators=[MaxValueValidator(10)])
    # Prices in any one currency (USD by convention), per million tokens: what a run's cost is made of.
    input_price = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text="Price per million input tokens (not cached).",
    )
    cached_input_price = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Price per million cached input tokens; empty: the input price.",
    )
    output_price = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text="Price per million output tokens.",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(timeout_seconds__gt=0), name="modelconfig_timeout_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_provider_display()}: {self.model_id})"

    def __repr__(self) -> str:
        # Never let the key reach logs or tracebacks through a repr.
        return f"<ModelConfig {self.pk} {self.name!r} provider={self.provider} model_id={self.model_id!r}>"

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        agent_cache_clear()


def validate_json_schema(value: Any) -> None:
    """Reject output schemas that are not valid JSON Schema, at save time rather than mid-run."""
    if value in (None, "", {}):
        return
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(value, dict):
        raise ValidationError("The output schema must be a JSON object.")
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        raise ValidationError(f"Not a valid JSON schema: {exc.message}") from exc
    if value.get("type") != "object":
        raise ValidationError('The output schema must describe an object ("type": "object").')


def validate_state_object(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError('The initial session state must be a JSON object, e.g. {"cart": []}.')


def validate_tool_names(value: Any) -> None:
    from agents_app.tools.registry import tool_registry

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("Tools must be a list of tool names.")
    unknown = sorted(set(value) - set(tool_registry.names()))
    if unknown:
        raise ValidationError(f"Unknown tools: {', '.join(unknown)}. Registered: {', '.join(tool_registry.names())}.")


class HookMode(models.TextChoices):
    """Where an attached hook runs. "default" defers to the hook's decorator (`@hook(background=...)`);
    AGENTOS["HOOKS_BACKGROUND"] (always/never) overrides all three, and guardrails always run inline
    (agents_app.hooks.runner has the precedence)."""

    DEFAULT = "default", "Its default"
    INLINE = "inline", "Inline: the answer waits for it"
    BACKGROUND = "background", "In the background, on a worker"


def clean_parser_model(component: Any) -> None:
    """A parser model turns answers into the output schema: without a schema it has nothing to do."""
    if component.parser_model_id and not component.output_schema:
        raise ValidationError({"parser_model": "A parser model needs an output schema to turn answers into."})


def parse_rates(text: str) -> list[str]:
    """A rate limit as written in the admin: "5/min, 50/hour" -> ["5/min", "50/hour"] (DRF's rate
    syntax); "off" or "" -> []. ValueError if malformed."""
    if not text or text.strip().lower() == "off":
        return []
    rates = [part.strip() for part in text.split(",") if part.strip()]
    for rate in rates:
        count, slash, period = rate.partition("/")
        # DRF's own parse: "<count>/<period>", the period named by its first letter (s, m, h, d).
        if not (count.isdigit() and int(count) >= 1 and slash and period.isalpha() and period[0] in "smhd"):
            raise ValueError(f"{rate!r} is not a rate like 30/min or 500/hour.")
    return rates


def validate_rate_limit(value: Any) -> None:
    try:
        parse_rates(value or "")
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _example_prompts_field(kind: str) -> models.TextField:
    """Prompts the chat page offers before the first message (a click sends one): operators
    know what their agent, team or workflow is good at; a blank page does not say."""
    return models.TextField(
        blank=True,
        help_text=(
            f"One prompt per line, offered on the chat page before the first message to this {kind} "
            f"(with its description). At most {MAX_EXAMPLE_PROMPTS} are shown."
        ),
    )


MAX_EXAMPLE_PROMPTS = 6


def example_prompt_list(text: str) -> list[str]:
    """The non-empty lines of an `example_prompts` field, in order (at most MAX_EXAMPLE_PROMPTS)."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()][:MAX_EXAMPLE_PROMPTS]


def _rate_limit_field(kind: str) -> models.CharField:
    """How often one user may start runs of this agent, team or workflow (agents_app.throttles)."""
    return models.CharField(
        max_length=100,
        blank=True,
        validators=[validate_rate_limit],
        help_text=(
            f'Runs of this {kind} each user may start, e.g. "5/min, 50/hour" ("off": no limit); empty: the '
            "site's default, AGENTOS['RUN_RATE_LIMITS']['RUNNABLE']."
        ),
    )


def _budget_field(kind: str, what: str, *, high: int | None = None) -> models.PositiveIntegerField:
    """One per-run limit of an agent or team (agents_app.engine.budget); empty: the site's default
    (AGENTOS["RUN_BUDGET"])."""
    validators: list[Any] = [MinValueValidator(1)]
    if high is not None:
        validators.append(MaxValueValidator(high))
    return models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=validators,
        help_text=f"{what} one run of this {kind} may use, its member runs' included; empty: the site's default.",
    )


def _parser_model_field(kind: str) -> models.ForeignKey:
    """An agent's or team's parser model: a second (usually cheaper) model that turns the main
    model's free answer into the output schema."""
    return models.ForeignKey(
        ModelConfig,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text=(
            f"With an output schema: the {kind}'s model answers freely (streamed as usual), then this model turns "
            "the answer into the schema. Empty: the main model must answer in the schema itself."
        ),
    )


class Agent(ClearsAgentCache, SluggedModel):
    """An agent as configured by an operator; `slug` is the agent_id used in URLs and events."""

    slug = models.SlugField(max_length=100, unique=True, help_text="The agent id used in URLs and the API.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    example_prompts = _example_prompts_field("agent")
    model = models.ForeignKey(ModelConfig, on_delete=models.PROTECT, related_name="agents")
    instructions = models.TextField(blank=True, help_text="The system prompt: who the agent is and how it answers.")
    tools = models.JSONField(default=list, blank=True, validators=[validate_tool_names])
    output_schema = models.JSONField(
        null=True,
        blank=True,
        validators=[validate_json_schema],
        help_text="Optional JSON schema (an object). When set, every answer is JSON validated against it.",
    )
    history_runs = models.PositiveSmallIntegerField(
        default=3,
        validators=[MaxValueValidator(50)],
        help_text="How many previous runs of the session are sent to the model as context.",
    )
    max_tool_calls = models.PositiveSmallIntegerField(
        default=8,
        validators=[MaxValueValidator(64)],
        help_text="Tool calls allowed per run; then the model must answer without tools.",
    )
    parser_model = _parser_model_field("agent")
    max_model_calls = _budget_field("agent", "Model calls", high=10_000)
    max_run_tokens = _budget_field("agent", "Tokens (input + output)")
    max_run_seconds = _budget_field("agent", "Wall-clock seconds", high=86_400)
    rate_limit = _rate_limit_field("agent")
    is_active = models.BooleanField(default=True, help_text="Inactive agents are hidden and refuse runs.")

    class BusySessionPolicy(models.TextChoices):
        REJECT = "reject", "Reject the new message (409 / an error frame)"
        QUEUE = "queue", "Queue the new message until the running answer ends"
        INTERRUPT = "interrupt", "Stop the running answer, then answer the new message"

    busy_session_policy = models.CharField(
        max_length=16,
        choices=BusySessionPolicy.choices,
        default=BusySessionPolicy.QUEUE,
        help_text=(
            "What happens when a message arrives in a session whose previous run is still going. Runs of a "
            "session never overlap, so the history each one sees is never interleaved. Queued messages wait "
            "at most AGENTOS['SESSION_QUEUE_TIMEOUT_SECONDS']; a stopped run keeps its partial answer."
        ),
    )

    class MemoryMode(models.TextChoices):
        OFF = "off", "Off: nothing is remembered beyond the session's history"
        AGENTIC = "agentic", "Agentic: the model gets tools to add, update and delete the user's memories"
        AUTOMATIC = "automatic", "Automatic: after each run a memory manager extracts memories from the exchange"

    class MemoryScope(models.TextChoices):
        USER = "user", "Shared: the user's memories shared by every agent with this scope"
        AGENT = "agent", "Private: only the memories this agent wrote about the user"

    class PausedSessionPolicy(models.TextChoices):
        REJECT = "reject", "Reject the new message (409 session_paused / an error frame) until someone decides"
        EXPIRE = "expire", "Expire the paused run (its tool calls never run), then answer the new message"

    paused_session_policy = models.CharField(
        max_length=16,
        choices=PausedSessionPolicy.choices,
        default=PausedSessionPolicy.REJECT,
        help_text=(
            "What happens when a message arrives in a session whose last run is paused, waiting for a person to "
            "decide on its tool calls (docs/human-in-the-loop.md)."
        ),
    )
    approval_timeout_seconds = models.PositiveIntegerField(
        default=86_400,
        validators=[MinValueValidator(1), MaxValueValidator(90 * 86_400)],
        help_text=(
            "How long a paused run waits for its tool calls to be decided; then it expires (fail closed: the "
            "pending tool calls never run). Default 24 hours."
        ),
    )

    memory_mode = models.CharField(
        max_length=16,
        choices=MemoryMode.choices,
        default=MemoryMode.OFF,
        help_text=(
            "Automatic extraction runs as a hook after each completed run: in the background on a worker "
            "unless AGENTOS['HOOKS_BACKGROUND'] is never or the memory hook's mode below is inline."
        ),
    )
    memory_scope = models.CharField(max_length=16, choices=MemoryScope.choices, default=MemoryScope.USER)
    memory_context_items = models.PositiveSmallIntegerField(
        default=10,
        validators=[MaxValueValidator(100)],
        help_text="At most this many memories go into the context, the most relevant to the message first.",
    )
    memory_context_chars = models.PositiveIntegerField(
        default=2000,
        validators=[MaxValueValidator(50_000)],
        help_text="At most this many characters of memories go into the context.",
    )
    memory_model = models.ForeignKey(
        ModelConfig,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The model that extracts memories and summarizes sessions; empty: the agent's own model.",
    )
    initial_session_state = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_state_object],
        help_text='The state a new session starts with, e.g. {"cart": []}. Tools and hooks read and change it.',
    )
    session_summaries = models.BooleanField(
        default=False,
        help_text=(
            "When a session outgrows its history window, the runs that leave it are summarized (a hook after "
            "the run, like automatic memory) and the model gets the summary instead of forgetting them."
        ),
    )
    history_max_chars = models.PositiveIntegerField(
        default=24_000,
        validators=[MaxValueValidator(1_000_000)],
        help_text="At most this many characters of history go to the model; the oldest runs are dropped first.",
    )
    # Our internal hooks are planned from the memory settings above, not attached as hook rows; these
    # say only where they run (what `hook_modes` said for them before hooks became rows).
    memory_hook_mode = models.CharField(
        max_length=16,
        choices=HookMode.choices,
        default=HookMode.DEFAULT,
        help_text="Where automatic memory extraction (the agentos_memory hook) runs; its default: in the background.",
    )
    summary_hook_mode = models.CharField(
        max_length=16,
        choices=HookMode.choices,
        default=HookMode.DEFAULT,
        help_text="Where session summaries (the agentos_session_summary hook) are made; its default: in the background.",
    )

    @property
    def agent_id(self) -> str:
        return self.slug

    def clean(self) -> None:
        clean_parser_model(self)

    def fallback_model_list(self) -> list[ModelConfig]:
        """The fallback model configs, in order (from the prefetched rows when the selector loaded them)."""
        return [row.model for row in self.fallbacks.all()]  # type: ignore[attr-defined]

    def tool_requirement_rows(self) -> list[AgentToolRequirement]:
        """The agent's tool-requirement overrides (prefetched when the selector loaded the agent)."""
        return list(self.tool_requirements.all())  # type: ignore[attr-defined]

    def pre_hook_rows(self) -> list[AgentHook]:
        """The hooks before the model, in order (from the prefetched rows when the selector loaded them)."""
        return [row for row in self.hooks.all() if row.phase == "pre"]  # type: ignore[attr-defined]

    def post_hook_rows(self) -> list[AgentHook]:
        """The hooks after the model, in order."""
        return [row for row in self.hooks.all() if row.phase == "post"]  # type: ignore[attr-defined]


HOOK_MAX_RETRIES = 20  # the registry's own bound for @hook(retries=...)
HOOK_MAX_TIMEOUT_SECONDS = 3600.0
HOOK_MAX_POSITION = 999


def validate_hook_setting(*, phase: str, hook: str, mode: str) -> None:
    """One attached hook: registered in code for that phase, and a mode it may run in. Shared by the
    admin inline (AgentHook.clean) and the staff API (AgentAdminSerializer), so both refuse the same
    things with the same words. Raises ValidationError keyed by field ("hook" or "mode")."""
    from agents_app.hooks.registry import hook_registry

    known = hook_registry.names(phase)
    item = hook_registry.get(hook)
    if item is None or item.internal or hook not in known:
        where = "before the model (pre)" if phase == "pre" else "after the model (post)"
        raise ValidationError(
            {"hook": f"Not registered as a hook that runs {where}: {hook}. Registered: {', '.join(known) or 'none'}."}
        )
    if mode not in HookMode.values:
        raise ValidationError({"mode": f"The mode must be one of {', '.join(HookMode.values)}, not {mode!r}."})
    if item.guardrail and mode == HookMode.BACKGROUND:
        raise ValidationError({"mode": f"Hook {hook} is a guardrail: it always runs inline."})


def validate_hook_list(*, phase: str, hooks: list[str]) -> None:
    """The hooks of one phase of one agent (or team), in order: each at most once (a run records one
    execution per hook and phase)."""
    repeated = sorted({name for name in hooks if hooks.count(name) > 1})
    if repeated:
        where = "before" if phase == "pre" else "after"
        raise ValidationError(f"A hook can be attached only once {where} the model: {', '.join(repeated)}.")


class HookPhase(models.TextChoices):
    PRE = "pre", "Before the model"
    POST = "post", "After the model"


class AgentHook(ClearsAgentCache, models.Model):
    """One hook attached to an agent (or, later, a team): which registered hook, before or after the
    model, its place in that phase's order, where it runs, and optional retries/timeout that replace
    the decorator's. Internal hooks (automatic memory, session summaries) are never rows: the engine
    plans them from the agent's memory settings."""

    Phase = HookPhase

    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="hooks")
    team = models.ForeignKey("Team", null=True, blank=True, on_delete=models.CASCADE, related_name="hooks")
    phase = models.CharField(max_length=8, choices=Phase.choices, default=Phase.PRE)
    position = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(HOOK_MAX_POSITION)],
        help_text="The order within the phase: lower runs first.",
    )
    hook = models.CharField(max_length=100, help_text="The name of a hook registered in code with @hook.")
    mode = models.CharField(max_length=16, choices=HookMode.choices, default=HookMode.DEFAULT)
    max_retries = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(HOOK_MAX_RETRIES)],
        help_text="Retries after a failed attempt; empty: the hook's own (usually 2).",
    )
    timeout_seconds = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(HOOK_MAX_TIMEOUT_SECONDS)],
        help_text="Seconds one attempt may take; empty: the hook's own (usually 30).",
    )

    class Meta:
        # "pre" sorts after "post": descending lists the pre-hooks first, as they run.
        ordering = ["-phase", "position", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(agent__isnull=False, team__isnull=True) | models.Q(agent__isnull=True, team__isnull=False)
                ),
                name="agenthook_agent_xor_team",
            ),
            models.CheckConstraint(condition=models.Q(phase__in=["pre", "post"]), name="agenthook_phase_valid"),
            models.UniqueConstraint(fields=["agent", "phase", "position"], name="agenthook_unique_agent_position"),
            models.UniqueConstraint(fields=["team", "phase", "position"], name="agenthook_unique_team_position"),
            models.UniqueConstraint(fields=["agent", "phase", "hook"], name="agenthook_unique_agent_hook"),
            models.UniqueConstraint(fields=["team", "phase", "hook"], name="agenthook_unique_team_hook"),
        ]

    def __str__(self) -> str:
        return f"{self.hook} ({self.phase} #{self.position})"

    def clean(self) -> None:
        # (An inline on a page adding its agent has neither yet; the check constraint guards the rest.)
        if self.agent_id and self.team_id:
            raise ValidationError("A hook belongs to either an agent or a team, not both.")
        validate_hook_setting(phase=self.phase, hook=self.hook, mode=self.mode)


class ToolRequirementKind(models.TextChoices):
    """An agent's override of what a tool's calls need from a person (agents_app.tools.registry)."""

    NONE = "none", "Nothing: run it as soon as the model calls it"
    CONFIRMATION = "confirmation", "Confirmation: a person approves or rejects each call"
    USER_INPUT = "user_input", "User input: a person fills in (or edits) arguments"
    EXTERNAL_EXECUTION = "external_execution", "External execution: the client runs it and sends its result"


def validate_tool_requirement(*, tool: str, requirement: str, user_input_fields: Any) -> None:
    """One override: a registered tool, a known kind, user-input fields that are the tool's
    arguments (only for user input). Shared by the admin inline and the staff API. Raises
    ValidationError keyed by field."""
    from agents_app.tools.registry import tool_registry

    item = tool_registry.get(tool)
    if item is None:
        raise ValidationError({"tool": f"No registered tool {tool!r}. Registered: {', '.join(tool_registry.names())}."})
    if requirement not in ToolRequirementKind.values:
        raise ValidationError({"requirement": f"Must be one of {', '.join(ToolRequirementKind.values)}."})
    if not isinstance(user_input_fields, list) or not all(isinstance(f, str) for f in user_input_fields):
        raise ValidationError({"user_input_fields": "Must be a list of argument names."})
    if user_input_fields and requirement != ToolRequirementKind.USER_INPUT:
        raise ValidationError({"user_input_fields": "Only a user-input requirement has fields to fill in."})
    unknown = [f for f in user_input_fields if f not in item.argument_names()]
    if unknown:
        raise ValidationError(
            {
                "user_input_fields": f"Tool {tool} has no argument {', '.join(unknown)} "
                f"(its arguments: {', '.join(item.argument_names()) or 'none'})."
            }
        )


class AgentToolRequirement(ClearsAgentCache, models.Model):
    """An agent's override of what calls of one of its tools need from a person, replacing the
    tool's `@tool(requires_confirmation=..., requires_user_input=..., external_execution=...)`.
    No row: the tool's own. ("none" lets the agent run a tool its code marks as needing a person.)"""

    Kind = ToolRequirementKind

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="tool_requirements")
    tool = models.CharField(max_length=64, help_text="The name of a registered tool (one of the agent's tools).")
    requirement = models.CharField(max_length=24, choices=ToolRequirementKind.choices)
    user_input_fields = models.JSONField(
        default=list,
        blank=True,
        help_text='For user input: the arguments the user fills in, hidden from the model, e.g. ["amount"]. '
        "Empty: the model fills every argument and the user may edit them.",
    )

    class Meta:
        ordering = ["agent", "tool"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "tool"], name="agenttoolrequirement_unique_tool"),
            models.CheckConstraint(
                condition=models.Q(requirement__in=ToolRequirementKind.values),
                name="agenttoolrequirement_kind_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool}: {self.requirement}"

    def clean(self) -> None:
        validate_tool_requirement(
            tool=self.tool, requirement=self.requirement, user_input_fields=self.user_input_fields
        )

    def as_requirement(self) -> Any:
        """The registry's ToolRequirement this row sets (None for "none")."""
        from agents_app.tools.registry import ToolRequirement

        if self.requirement == ToolRequirementKind.NONE:
            return None
        return ToolRequirement(self.requirement, tuple(self.user_input_fields or ()))


class ModelFallback(ClearsAgentCache, models.Model):
    """One fallback model of an agent (or team), in order: when the main model fails with what a
    retry could cure (5xx, 429, a timeout, a broken connection) after its own retries, the run asks
    the next one."""

    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="fallbacks")
    team = models.ForeignKey("Team", null=True, blank=True, on_delete=models.CASCADE, related_name="fallbacks")
    model = models.ForeignKey(ModelConfig, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField(default=0, help_text="The order: lower is tried first.")

    class Meta:
        ordering = ["position", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(agent__isnull=False, team__isnull=True) | models.Q(agent__isnull=True, team__isnull=False)
                ),
                name="modelfallback_agent_xor_team",
            ),
            models.UniqueConstraint(fields=["agent", "model"], name="modelfallback_unique_agent_model"),
            models.UniqueConstraint(fields=["team", "model"], name="modelfallback_unique_team_model"),
        ]

    def __str__(self) -> str:
        return f"fallback #{self.position}: {self.model_id}"

    def clean(self) -> None:
        if self.agent_id and self.team_id:
            raise ValidationError("A fallback belongs to either an agent or a team, not both.")
        owner = self.agent if self.agent_id else (self.team if self.team_id else None)
        if owner is not None and self.model_id and owner.model_id == self.model_id:
            raise ValidationError({"model": "The main model cannot be its own fallback."})


class HookExecution(TimeStampedModel):
    """One background hook of one run: queued when the run finishes, then claimed, retried and
    finished by a Celery task (agents_app.tasks.hook_execute_task). Unique per (run, hook, phase), so
    recording it twice is impossible, and the status moves only through conditional updates, so a
    redelivered task never runs a hook twice."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    Phase = HookPhase

    run = models.ForeignKey("sessions_app.Run", on_delete=models.CASCADE, related_name="hook_executions")
    hook_name = models.CharField(max_length=100)
    phase = models.CharField(max_length=8, choices=Phase.choices)
    position = models.PositiveSmallIntegerField(default=0, help_text="The hook's place in the agent's list.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Attempts started so far.")
    max_attempts = models.PositiveSmallIntegerField(default=1, help_text="The hook's retries + 1, when queued.")
    timeout_seconds = models.FloatField(
        null=True,
        blank=True,
        help_text="Seconds per attempt, as planned for the run (with the agent's override); empty: the hook's own.",
    )
    error = models.TextField(blank=True, help_text="Why the last attempt failed.")
    duration = models.FloatField(null=True, blank=True, help_text="Seconds the last attempt took.")
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="A retry waits until then (backoff).")
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="A running attempt not finished by then is presumed dead and run again."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["run", "hook_name", "phase"], name="hookexecution_unique_per_run"),
            models.CheckConstraint(
                condition=models.Q(status__in=["queued", "running", "succeeded", "failed"]),
                name="hookexecution_status_valid",
            ),
        ]
        indexes = [models.Index(fields=["status", "updated_at"], name="hookexecution_status_recent")]

    def __str__(self) -> str:
        return f"{self.hook_name} ({self.phase}) of run {self.run_id}: {self.status}"


# ---- Teams and workflows --------------------------------------------------------------------


def _busy_session_policy_field() -> models.CharField:
    """The busy-session setting of a team or workflow: the agents' choices and default."""
    return models.CharField(
        max_length=16,
        choices=Agent.BusySessionPolicy.choices,
        default=Agent.BusySessionPolicy.QUEUE,
        help_text="What happens when a message arrives in a session whose previous run is still going (as for agents).",
    )


class Team(ClearsAgentCache, SluggedModel):
    """Several agents (or other teams) under a leader model; `slug` is the team_id in URLs and events."""

    class Mode(models.TextChoices):
        ROUTE = "route", "Route: the leader hands the message to one member, whose answer is the team's"
        COORDINATE = "coordinate", "Coordinate: the leader delegates sub-tasks to members and writes the answer"
        COLLABORATE = "collaborate", "Collaborate: every member answers, the leader combines their answers"

    slug = models.SlugField(max_length=100, unique=True, help_text="The team id used in URLs and the API.")
    name = models.CharField(max_length=200)
    description = models.TextField(
        blank=True, help_text="What the team is for; shown to a leader that has it as a member."
    )
    example_prompts = _example_prompts_field("team")
    model = models.ForeignKey(
        ModelConfig, on_delete=models.PROTECT, related_name="teams", help_text="The model the leader thinks with."
    )
    instructions = models.TextField(blank=True, help_text="The leader's instructions: how to split and judge the work.")
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.COORDINATE)
    max_depth = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="How deep teams may sit inside teams when this team runs (1: members must be agents).",
    )
    max_member_calls = models.PositiveSmallIntegerField(
        default=8,
        validators=[MinValueValidator(1), MaxValueValidator(32)],
        help_text="Member runs (and delegation calls) allowed per team run; then the leader must answer with what it has.",
    )
    history_runs = models.PositiveSmallIntegerField(
        default=3,
        validators=[MaxValueValidator(50)],
        help_text="How many previous runs of the session the leader sees as context.",
    )
    output_schema = models.JSONField(
        null=True,
        blank=True,
        validators=[validate_json_schema],
        help_text="Optional JSON schema (an object). When set, the team's answer is JSON validated against it.",
    )
    parser_model = _parser_model_field("team")
    max_model_calls = _budget_field("team", "Model calls", high=10_000)
    max_run_tokens = _budget_field("team", "Tokens (input + output)")
    max_run_seconds = _budget_field("team", "Wall-clock seconds", high=86_400)
    rate_limit = _rate_limit_field("team")
    is_active = models.BooleanField(default=True, help_text="Inactive teams are hidden and refuse runs.")
    busy_session_policy = _busy_session_policy_field()

    @property
    def team_id(self) -> str:
        return self.slug

    def clean(self) -> None:
        clean_parser_model(self)


class TeamMember(models.Model):
    """One member of a team: an agent or another team, in the order the leader sees them."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.PROTECT, related_name="team_memberships")
    member_team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="parent_memberships",
        help_text="Another team as a member (instead of an agent).",
    )
    order = models.PositiveSmallIntegerField(default=0)
    role = models.CharField(
        max_length=300, blank=True, help_text="What this member is good at, in plain words, for the leader."
    )

    class Meta:
        ordering = ["team", "order", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(agent__isnull=False, member_team__isnull=True)
                    | models.Q(agent__isnull=True, member_team__isnull=False)
                ),
                name="teammember_agent_xor_team",
            ),
            models.CheckConstraint(condition=~models.Q(member_team=models.F("team")), name="teammember_not_itself"),
            models.UniqueConstraint(fields=["team", "agent"], name="teammember_unique_agent"),
            models.UniqueConstraint(fields=["team", "member_team"], name="teammember_unique_team"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} in {self.team_id}"

    @property
    def member_id(self) -> str:
        return self.agent.slug if self.agent_id else self.member_team.slug  # type: ignore[union-attr]

    def clean(self) -> None:
        if bool(self.agent_id) == bool(self.member_team_id):
            raise ValidationError("Pick either an agent or a team as the member, not both.")
        if self.member_team_id and self.team_id:
            if self.member_team_id == self.team_id:
                raise ValidationError("A team cannot be a member of itself.")
            # A team that (through its members) contains this team would loop forever.
            team_memberships = TeamMember.objects.filter(member_team__isnull=False)
            seen: set[int] = set()
            frontier = {self.member_team_id}
            while frontier:
                if self.team_id in frontier:
                    raise ValidationError("That team already contains this team: the teams would loop.")
                seen |= frontier
                frontier = (
                    set(team_memberships.filter(team_id__in=frontier).values_list("member_team_id", flat=True)) - seen
                )


def validate_step_function_name(value: Any) -> None:
    from agents_app.workflows.registry import step_registry

    if value and step_registry.get(value) is None:
        names = ", ".join(step_registry.names()) or "none"
        raise ValidationError(f"No registered step function {value!r}. Registered: {names}.")


class Workflow(ClearsAgentCache, SluggedModel):
    """Ordered steps; each step's output is the next step's input. `slug` is the workflow_id."""

    slug = models.SlugField(max_length=100, unique=True, help_text="The workflow id used in URLs and the API.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    example_prompts = _example_prompts_field("workflow")
    is_active = models.BooleanField(default=True, help_text="Inactive workflows are hidden and refuse runs.")
    busy_session_policy = _busy_session_policy_field()
    rate_limit = _rate_limit_field("workflow")

    @property
    def workflow_id(self) -> str:
        return self.slug


class WorkflowStep(models.Model):
    """One step. Agent, team and function steps do work; a condition step runs its own steps only
    when its function says so; a parallel step runs its own steps at the same time."""

    class Kind(models.TextChoices):
        AGENT = "agent", "Agent: answer the previous output"
        TEAM = "team", "Team: answer the previous output"
        FUNCTION = "function", "Function: a registered Python function"
        CONDITION = "condition", "Condition: run the nested steps only if the function returns true"
        PARALLEL = "parallel", "Parallel: run the nested steps at the same time"

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="steps")
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="children",
        help_text="For steps inside a condition or parallel step: that step.",
    )
    order = models.PositiveSmallIntegerField(default=0)
    name = models.SlugField(max_length=100, help_text="Unique within the workflow; shown in events as step_name.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.AGENT)
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.PROTECT, related_name="workflow_steps")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT, related_name="workflow_steps")
    function = models.CharField(
        max_length=100,
        blank=True,
        validators=[validate_step_function_name],
        help_text="For function and condition steps: the name of a registered step function.",
    )
    args = models.JSONField(
        default=dict, blank=True, help_text='Extra arguments for the function, e.g. {"text": "urgent"}.'
    )

    class Meta:
        ordering = ["workflow", "parent_id", "order", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "name"], name="workflowstep_unique_name"),
            models.CheckConstraint(
                condition=~models.Q(kind="agent") | models.Q(agent__isnull=False), name="workflowstep_agent_set"
            ),
            models.CheckConstraint(
                condition=~models.Q(kind="team") | models.Q(team__isnull=False), name="workflowstep_team_set"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id}/{self.name} ({self.kind})"

    def clean(self) -> None:
        if self.kind == self.Kind.AGENT and not self.agent_id:
            raise ValidationError({"agent": "An agent step needs an agent."})
        if self.kind == self.Kind.TEAM and not self.team_id:
            raise ValidationError({"team": "A team step needs a team."})
        if self.kind in (self.Kind.FUNCTION, self.Kind.CONDITION) and not self.function:
            raise ValidationError({"function": "This kind of step needs a registered function."})
        if not isinstance(self.args, dict):
            raise ValidationError({"args": "Arguments must be a JSON object."})
        if self.parent_id is not None:
            parent = self.parent
            if parent is None or parent.kind not in (self.Kind.CONDITION, self.Kind.PARALLEL):
                raise ValidationError({"parent": "Only condition and parallel steps hold other steps."})
            if parent.workflow_id != self.workflow_id:
                raise ValidationError({"parent": "The parent step belongs to another workflow."})
            depth, node = 1, parent
            while node.parent_id is not None:
                depth += 1
                node = node.parent  # type: ignore[assignment]
                if depth > 3:
                    raise ValidationError({"parent": "Steps nest at most three levels deep."})


# ---- Quotas ------------------------------------------------------------------------------------


class Quota(ClearsAgentCache, TimeStampedModel):
    """A recurring budget of tokens and/or cost (agents_app.quotas): for one user or every user (each
    on their own), for everything one agent, team or workflow spends, or for the whole site; per
    UTC day or calendar month. A run that would start over it is refused (429 `quota_exceeded`,
    saying when it resets); a run that goes over it while running stops with `budget_exceeded`."""

    class Scope(models.TextChoices):
        USER = "user", "Per user: each user's own runs (one user, or every user when none is picked)"
        RUNNABLE = "runnable", "Per agent, team or workflow: all its runs, every user's"
        SITE = "site", "The whole site: every run"

    class Period(models.TextChoices):
        DAY = "day", "Per day (UTC)"
        MONTH = "month", "Per calendar month (UTC)"

    name = models.CharField(max_length=100, blank=True, help_text="What it is for, for the admin.")
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.USER)
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.DAY)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Per-user scope: this user only; empty: every user, each on their own.",
    )
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="quotas")
    team = models.ForeignKey("Team", null=True, blank=True, on_delete=models.CASCADE, related_name="quotas")
    workflow = models.ForeignKey("Workflow", null=True, blank=True, on_delete=models.CASCADE, related_name="quotas")
    max_tokens = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Tokens (input + output) per period; empty: no token limit."
    )
    max_cost = models.DecimalField(
        max_digits=14,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Cost per period, in the model configs' currency; empty: no cost limit.",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["scope", "period", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(scope="runnable")
                | (
                    models.Q(agent__isnull=False, team__isnull=True, workflow__isnull=True)
                    | models.Q(agent__isnull=True, team__isnull=False, workflow__isnull=True)
                    | models.Q(agent__isnull=True, team__isnull=True, workflow__isnull=False)
                ),
                name="quota_runnable_has_one_component",
            ),
            models.CheckConstraint(
                condition=models.Q(scope="runnable")
                | models.Q(agent__isnull=True, team__isnull=True, workflow__isnull=True),
                name="quota_component_only_for_runnable",
            ),
            models.CheckConstraint(
                condition=models.Q(scope="user") | models.Q(user__isnull=True), name="quota_user_only_for_user"
            ),
            models.CheckConstraint(
                condition=models.Q(max_tokens__isnull=False) | models.Q(max_cost__isnull=False),
                name="quota_has_a_limit",
            ),
        ]

    def __str__(self) -> str:
        if self.name:
            return self.name
        every = "daily" if self.period == self.Period.DAY else "monthly"
        if self.scope == self.Scope.SITE:
            return f"{every} site quota"
        if self.scope == self.Scope.USER:
            return f"{every} quota of {self.user.get_username()}" if self.user_id else f"{every} quota per user"
        component = self.agent or self.team or self.workflow
        return f"{every} quota of {component.slug if component else '?'}"

    def clean(self) -> None:
        if self.max_tokens is None and self.max_cost is None:
            raise ValidationError("Set a token limit, a cost limit, or both.")
        components = [c for c in (self.agent_id, self.team_id, self.workflow_id) if c]
        if self.scope == self.Scope.RUNNABLE and len(components) != 1:
            raise ValidationError("A per-runnable quota names exactly one agent, team or workflow.")
        if self.scope != self.Scope.RUNNABLE and components:
            raise ValidationError("Only a per-runnable quota names an agent, team or workflow.")
        if self.scope != self.Scope.USER and self.user_id:
            raise ValidationError("Only a per-user quota names a user.")


class RunRequest(models.Model):
    """An `Idempotency-Key` a user sent with a run request (agents_app.idempotency): the same key
    within IDEMPOTENCY_SECONDS answers with the run it started, never a second one."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of what the request asked for.")
    run = models.ForeignKey("sessions_app.Run", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="runrequest_unique_user_key")]

    def __str__(self) -> str:
        return f"{self.key} -> run {self.run_id}"


# ---- Versions of what runs ------------------------------------------------------------------------


class ConfigVersion(models.Model):
    """One immutable version of an agent's, team's or workflow's configuration (agents_app.versions):
    everything that decides what a run of it does, as a JSON snapshot (secrets only as a marker),
    numbered 1, 2, 3... per runnable. A new version is recorded only when the snapshot differs from
    the latest one, so saving without a change records nothing. Runs point at the version they ran
    with (`Run.config_version`), so later edits never change what a finished run says it used."""

    class Source(models.TextChoices):
        ADMIN = "admin", "Saved in the admin"
        API = "api", "Saved through the REST API"
        RESTORE = "restore", "Restored from an earlier version"
        RUN = "run", "Found changed when a run started (changed in code or a shell)"

    kind = models.CharField(max_length=16, choices=[("agent", "agent"), ("team", "team"), ("workflow", "workflow")])
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="versions")
    team = models.ForeignKey("Team", null=True, blank=True, on_delete=models.CASCADE, related_name="versions")
    workflow = models.ForeignKey("Workflow", null=True, blank=True, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(help_text="1, 2, 3... per agent, team or workflow.")
    snapshot = models.JSONField(help_text="The whole configuration, as agents_app.versions.snapshot wrote it.")
    snapshot_hash = models.CharField(max_length=64, help_text="SHA-256 of the snapshot's canonical JSON.")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.ADMIN)
    restored_from = models.PositiveIntegerField(
        null=True, blank=True, help_text="For a restore: the number of the version it restored."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "-number"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(kind="agent", agent__isnull=False, team__isnull=True, workflow__isnull=True)
                    | models.Q(kind="team", agent__isnull=True, team__isnull=False, workflow__isnull=True)
                    | models.Q(kind="workflow", agent__isnull=True, team__isnull=True, workflow__isnull=False)
                ),
                name="configversion_one_runnable",
            ),
            models.UniqueConstraint(fields=["agent", "number"], name="configversion_unique_agent_number"),
            models.UniqueConstraint(fields=["team", "number"], name="configversion_unique_team_number"),
            models.UniqueConstraint(fields=["workflow", "number"], name="configversion_unique_workflow_number"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.runnable_id} v{self.number}"

    @property
    def runnable_id(self) -> int:
        return self.agent_id or self.team_id or self.workflow_id  # type: ignore[return-value]

    @property
    def runnable(self) -> Any:
        return getattr(self, self.kind)


# The eval models (a module of their own; imported here so Django registers them).
from agents_app.eval_models import EvalCase, EvalCaseResult, EvalRun, EvalSuite  # noqa: E402, F401
