"""A deterministic model that runs in-process with no key and no network.

It exists so the demo and the tests work on a fresh machine. It is honest about what it is: every
answer says it comes from the offline demo model. It still exercises the whole engine: it calls
tools when a message plainly asks for what a tool does, streams word by word, remembers the
session's history, and fills an output schema with values of the right types.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from agents_app.providers.base import ModelProvider, ModelResponse, ResponseFormat, ToolCallRequest

if TYPE_CHECKING:
    from agents_app.tools.registry import Tool

_ARITHMETIC = re.compile(r"(?:sqrt\()?[\d.]+(?:\s*(?:\*\*|[-+*/%])\s*\(?\s*[\d.]+\s*\)?)+\)?")
_TIME = re.compile(r"\b(time|date|today|clock)\b", re.IGNORECASE)
_COUNT = re.compile(r"\bcount\b.*\bwords?\b|\bhow many words\b", re.IGNORECASE)
_QUOTED = re.compile(r"[\"“]([^\"”]+)[\"”]")
_PREFIX = "[offline demo model]"
_TEAM_ANSWERS = "Your team's answers to my message:"
_TEAM_ASK = "Write the team's answer."
_MEMORY_LINE = re.compile(r"^- \[[0-9a-f-]{36}\] (.+?)(?: \(topics: [^)]*\))?$", re.MULTILINE)
_REMEMBER = re.compile(r"\bremember(?: that)?\s+(.{3,500}?)[.!]?$", re.IGNORECASE | re.DOTALL)


def _words(text: str) -> int:
    return len(text.split())


def _text(content: Any) -> str:
    """A message's text: its content, or the text parts of content parts (images are not seen)."""
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content or "")


def _images(content: Any) -> int:
    """How many image parts a message's content has."""
    if not isinstance(content, list):
        return 0
    return sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")


def _last_user_message(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _instance_for(schema: dict[str, Any], text: str, depth: int = 0) -> Any:
    """A value matching `schema`, built from the user's text where a string is wanted."""
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return _instance_for(schema[key][0], text, depth + 1)
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        if depth > 5:
            return {}
        return {name: _instance_for(sub, text, depth + 1) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        items = schema.get("items", {"type": "string"})
        count = max(1, schema.get("minItems", 1))
        return [_instance_for(items, text, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        value = max(schema.get("minimum", 0), min(_words(text), schema.get("maximum", 10**9)))
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    value = f"{_PREFIX} {text}".strip()[: schema.get("maxLength")]
    return value.ljust(schema.get("minLength", 0), ".")


_SELF_STATEMENT = re.compile(
    r"(?:^|(?<=[.!?]\s))((?:my|i am|i'm|i like|i love|i live|i work|i prefer|call me)\b[^.!?\n]{2,200})",
    re.IGNORECASE,
)


def _section(text: str, heading: str) -> str:
    """The text after `heading` up to the next blank line (the memory prompts' layout)."""
    _, found, rest = text.partition(heading)
    return rest.strip().split("\n\n")[0] if found else ""


def _memory_updates(prompt: str) -> dict[str, Any]:
    """The memory manager's task, done plainly: remember each sentence in which the user speaks
    about themselves ("My name is...", "I like..."), unless it is already remembered."""
    known = _section(prompt, "Existing memories:").lower()
    said = _section(prompt, "The user's message:")
    operations = []
    for match in _SELF_STATEMENT.finditer(said):
        fact = match.group(1).strip()
        if fact.lower() not in known:
            operations.append({"op": "add", "memory_id": None, "memory": f'The user said: "{fact}"', "topics": []})
    return {"operations": operations[:5]}


def _session_summary(prompt: str) -> dict[str, Any]:
    """The summarizer's task, done plainly: the previous summary plus what the user said."""
    previous = _section(prompt, "Previous summary:")
    lines = [line[len("User: ") :][:200] for line in prompt.splitlines() if line.startswith("User: ")]
    parts = [previous] if previous and previous != "(none)" else [_PREFIX]
    if lines:
        parts.append("Earlier the user said: " + " / ".join(lines))
    return {"summary": " ".join(parts)[:3000]}


_MEMORY_TASKS = {"memory_updates": _memory_updates, "session_summary": _session_summary}


def _calls(wanted: list[tuple[str, dict[str, Any]]]) -> list[ToolCallRequest]:
    """Tool call requests for (tool name, arguments) pairs, numbered in order."""
    return [
        ToolCallRequest(id=f"call_{i}", name=name, arguments=json.dumps(args)) for i, (name, args) in enumerate(wanted)
    ]


class OfflineProvider(ModelProvider):
    name = "offline"

    def _decide(
        self, messages: list[dict[str, Any]], tools: list[Tool], response_format: ResponseFormat | None
    ) -> ModelResponse:
        input_tokens = sum(_words(_text(m.get("content"))) for m in messages)
        last = messages[-1] if messages else {}
        available = {t.name for t in tools}
        user_text = _last_user_message(messages)

        if last.get("role") == "user" and available:
            calls = self._team_call_for(user_text, tools) or self._tool_calls_for(user_text, available)
            if calls:
                return ModelResponse(
                    tool_calls=calls, input_tokens=input_tokens, output_tokens=len(calls), finish_reason="tool_calls"
                )

        if response_format is not None and response_format.name in _MEMORY_TASKS:
            content = json.dumps(_MEMORY_TASKS[response_format.name](user_text))
        elif response_format is not None:
            content = json.dumps(_instance_for(response_format.schema, user_text))
        elif last.get("role") == "tool":
            names = {
                call["id"]: call["function"]["name"]
                for m in messages
                if m.get("role") == "assistant"
                for call in m.get("tool_calls") or []
            }
            results = []
            for message in reversed(messages):
                if message.get("role") != "tool":
                    break
                name = names.get(message.get("tool_call_id"), "a tool")
                results.append(f"{name} returned {message.get('content')}")
            content = f"{_PREFIX} I used my tools: {'; '.join(reversed(results))}."
        elif user_text.startswith(_TEAM_ANSWERS):
            # A collaborating team's leader (agents_app.engine.team): combine the members' answers.
            answers = user_text[len(_TEAM_ANSWERS) :].split(_TEAM_ASK)[0].strip()
            content = f"{_PREFIX} My team's answers, combined:\n\n{answers}"
        else:
            content = self._reply(user_text, messages)
        return ModelResponse(
            content=content, input_tokens=input_tokens, output_tokens=_words(content), finish_reason="stop"
        )

    @staticmethod
    def _team_call_for(text: str, tools: list[Tool]) -> list[ToolCallRequest]:
        """As a team leader (agents_app.engine.team): hand the message to the member it names, else to
        the first one, so route and coordinate teams can be tried with no model server."""
        tool = next((t for t in tools if t.name in ("route_to_member", "delegate_task_to_member")), None)
        members = (tool.parameters.get("properties", {}).get("member_id", {}).get("enum") or []) if tool else []
        if tool is None or not members:
            return []
        chosen = next((m for m in members if m.lower() in text.lower()), members[0])
        args = {"member_id": chosen} | ({"task": text} if tool.name == "delegate_task_to_member" else {})
        return _calls([(tool.name, args)])

    @staticmethod
    def _tool_calls_for(text: str, available: set[str]) -> list[ToolCallRequest]:
        wanted: list[tuple[str, dict[str, Any]]] = []
        if "calculator" in available:
            wanted += [("calculator", {"expression": e.strip()}) for e in _ARITHMETIC.findall(text)[:4]]
        if "current_time" in available and _TIME.search(text):
            wanted.append(("current_time", {}))
        if "text_stats" in available and _COUNT.search(text):
            quoted = _QUOTED.search(text)
            wanted.append(("text_stats", {"text": quoted.group(1) if quoted else text}))
        remember = _REMEMBER.search(text)
        if "add_memory" in available and remember:
            wanted.append(("add_memory", {"memory": remember.group(1)}))
        return _calls(wanted)

    @staticmethod
    def _reply(text: str, messages: list[dict[str, Any]]) -> str:
        earlier = [_text(m.get("content")) for m in messages[:-1] if m.get("role") == "user"]
        parts = [f'{_PREFIX} You said: "{text}".']
        images = _images(messages[-1].get("content")) if messages else 0
        if images:
            parts.append(f"You sent {images} image{'s' if images != 1 else ''}, which I cannot see.")
        if earlier:
            parts.append(
                f'Earlier in this session you said: "{earlier[0]}" ({len(earlier)} earlier message{"s" if len(earlier) != 1 else ""} in my context).'
            )
        system = str(messages[0].get("content") or "") if messages and messages[0].get("role") == "system" else ""
        remembered = _MEMORY_LINE.findall(system)
        if remembered:
            parts.append(f"I remember {len(remembered)} thing(s) about you, e.g. {remembered[0]}.")
        parts.append(
            "I am a built-in offline model for demos and tests; configure a real model in the admin for real answers."
        )
        return " ".join(parts)

    async def stream(
        self,
        *,
        messages: list[dict[str, Any]],
        tools: list[Tool],
        response_format: ResponseFormat | None = None,
    ) -> AsyncIterator[str | ModelResponse]:
        response = self._decide(messages, tools, response_format)
        if response.content:
            for index, word in enumerate(response.content.split(" ")):
                yield word if index == 0 else " " + word
        yield response
