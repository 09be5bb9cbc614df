"""Admin forms: a write-only API key, tools as checkboxes, the output schema as readable JSON, and the
"try it" message box."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput, JSONString

from agents_app.models import Agent, ModelConfig
from agents_app.secrets import key_source
from agents_app.tools.registry import tool_registry

MONOSPACE = "font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, 'Liberation Mono', monospace"


class WriteOnlySecretField(forms.CharField):
    """A password box that never shows what is stored; an empty box means "no change"."""

    widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password", "spellcheck": "false"})

    def has_changed(self, initial: Any, data: Any) -> bool:
        return bool(data)


class PrettyJSONField(forms.JSONField):
    """JSON shown indented (and empty for "none"), with the parser's line and column on a typo."""

    def to_python(self, value: Any) -> Any:
        if self.disabled or isinstance(value, list | dict | int | float | JSONString) or value in self.empty_values:
            return super().to_python(value)
        try:
            json.loads(value, cls=self.decoder)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                "This is not valid JSON: %(problem)s (line %(line)s, column %(column)s). "
                "Check the quotes (use double quotes), commas and brackets.",
                code="invalid",
                params={"problem": exc.msg, "line": exc.lineno, "column": exc.colno},
            ) from None
        return super().to_python(value)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        if value is None:
            return ""
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


class ModelConfigAdminForm(forms.ModelForm):
    base_url = forms.URLField(
        label="Base URL",
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text=ModelConfig._meta.get_field("base_url").help_text,
    )
    api_key = WriteOnlySecretField(
        label="API key",
        required=False,
        max_length=500,
        help_text="Leave blank to keep the current key. A saved key is never shown again.",
    )
    clear_api_key = forms.BooleanField(
        label="Clear the stored key",
        required=False,
        help_text="Tick to remove the stored key (for servers that need none, such as a local Ollama).",
    )

    class Meta:
        model = ModelConfig
        fields = [
            "name",
            "provider",
            "base_url",
            "model_id",
            "api_key",
            "api_key_env",
            "temperature",
            "max_tokens",
            "timeout_seconds",
            "max_retries",
            "input_price",
            "cached_input_price",
            "output_price",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The stored key never reaches a widget, not even as an initial value.
        self.initial.pop("api_key", None)
        source = key_source(self.instance) if self.instance.pk else "none"
        has_key = source.startswith("stored")
        if source == "stored (unreadable)":
            status = "A key is stored but cannot be decrypted with the configured keys: type it again or clear it."
        else:
            status = "A key is stored." if has_key else "No key is stored."
        self.fields["api_key"].help_text = f"{status} {self.fields['api_key'].help_text}"
        if not has_key:
            self.fields["clear_api_key"].disabled = True

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        new_key = cleaned.get("api_key") or ""
        if cleaned.get("clear_api_key"):
            if new_key:
                self.add_error("clear_api_key", "Either type a new key or clear the stored one, not both.")
            cleaned["api_key"] = ""
        elif not new_key:
            cleaned["api_key"] = self.instance.api_key if self.instance.pk else ""
        return cleaned


def unknown_tools(agent: Agent) -> list[str]:
    """Tools stored on the agent that no code registers (a module was removed or renamed)."""
    stored = agent.tools if isinstance(agent.tools, list) else []
    known = set(tool_registry.names())
    return [name for name in stored if isinstance(name, str) and name not in known]


class AgentAdminForm(forms.ModelForm):
    tools = forms.MultipleChoiceField(
        required=False,
        # "radiolist" is the admin's own class for choice lists: labels at full width, one per line.
        widget=forms.CheckboxSelectMultiple(attrs={"class": "radiolist"}),
        help_text="The functions this agent may call. Tools are written in Python and registered with @tool.",
    )
    output_schema = PrettyJSONField(
        label="Output schema",
        required=False,
        widget=forms.Textarea(attrs={"rows": 14, "cols": 80, "spellcheck": "false", "style": MONOSPACE}),
        help_text=(
            "Optional. To get answers as data instead of text, describe them as a JSON schema of an object, "
            'for example {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}. '
            "Leave empty for plain text answers."
        ),
    )
    initial_session_state = PrettyJSONField(
        label="Initial session state",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80, "spellcheck": "false", "style": MONOSPACE}),
        help_text='A JSON object every new session starts with, e.g. {"cart": []}. Tools and hooks read and change it.',
    )

    class Meta:
        model = Agent
        fields = [
            "name",
            "slug",
            "description",
            "example_prompts",
            "is_active",
            "busy_session_policy",
            "access",
            "allowed_users",
            "allowed_groups",
            "model",
            "instructions",
            "tools",
            "max_tool_calls",
            "approval_timeout_seconds",
            "paused_session_policy",
            "output_schema",
            "parser_model",
            "max_model_calls",
            "max_run_tokens",
            "max_run_seconds",
            "rate_limit",
            "history_runs",
            "history_max_chars",
            "session_summaries",
            "summary_hook_mode",
            "initial_session_state",
            "memory_mode",
            "memory_scope",
            "memory_context_items",
            "memory_context_chars",
            "memory_model",
            "memory_hook_mode",
        ]
        widgets = {
            "instructions": forms.Textarea(attrs={"rows": 8, "cols": 80}),
            "example_prompts": forms.Textarea(attrs={"rows": 3, "cols": 80}),
        }
        labels = {
            "slug": "Agent id",
            "is_active": "Active",
            "max_tool_calls": "Tool calls per run",
            "history_runs": "Earlier runs to include",
            "history_max_chars": "History characters at most",
            "session_summaries": "Summarize older runs",
            "memory_mode": "Memory",
            "memory_scope": "Memory scope",
            "memory_context_items": "Memories in context at most",
            "memory_context_chars": "Memory characters at most",
            "memory_model": "Model for memory and summaries",
            "memory_hook_mode": "Memory extraction runs",
            "summary_hook_mode": "Summaries run",
            "busy_session_policy": "When the session is busy",
            "approval_timeout_seconds": "Approval timeout (seconds)",
            "paused_session_policy": "When the session waits for an approval",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = list(tool_registry.choices())
        self.unknown_tools = unknown_tools(self.instance) if self.instance.pk else []
        # Stored tools that no code registers stay visible (and ticked) so nobody loses them unaware.
        choices += [(name, f"⚠ {name}: not registered in code (untick it to save)") for name in self.unknown_tools]
        self.fields["tools"].choices = choices
        if "model" in self.fields:
            self.fields["model"].label_from_instance = lambda config: f"{config.name} ({config.model_id})"
        if "tools" in self.initial and not isinstance(self.initial["tools"], list):
            self.initial["tools"] = []

    def clean_initial_session_state(self) -> Any:
        value = self.cleaned_data.get("initial_session_state")
        return {} if value in (None, "") else value

    def clean_tools(self) -> list[str]:
        names = list(dict.fromkeys(self.cleaned_data.get("tools") or []))
        unknown = [name for name in names if tool_registry.get(name) is None]
        if unknown:
            raise ValidationError(
                "Not registered in code: %(names)s. Untick it, or register the tool with @tool and restart.",
                code="unknown_tool",
                params={"names": ", ".join(unknown)},
            )
        return names


class TryAgentForm(forms.Form):
    message = forms.CharField(
        label="Message",
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80, "autofocus": True, "placeholder": "Ask something…"}),
    )
    session_id = forms.UUIDField(required=False, widget=forms.HiddenInput)
