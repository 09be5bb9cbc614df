"""The tool registry: plain Python functions become tools the model can call.

A tool's JSON schema and its argument validator are built once, at registration, from the type
hints and the docstring, so a run never pays for schema generation.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar, get_type_hints

from pydantic import ConfigDict, Field, ValidationError, create_model

from agents_app.tools.context import RunContext

_ARG_LINE = re.compile(r"^\s{2,}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")
_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Raises|Example|Examples)\s*:\s*$")


class _Named(Protocol):
    name: str
    description: str


T = TypeVar("T", bound=_Named)


class Registry(Generic[T]):
    """Registered items (tools, hooks, step functions) by name; `register` is each kind's own."""

    def __init__(self) -> None:
        self._items: dict[str, T] = {}

    def _add(self, item: T) -> T:
        self._items[item.name] = item
        return item

    def get(self, name: str) -> T | None:
        return self._items.get(name)

    def names(self) -> list[str]:
        return sorted(self._items)

    def choices(self) -> list[tuple[str, str]]:
        """(name, "name: description") pairs for a form's select, by name."""
        items = [self._items[name] for name in self.names()]
        return [(i.name, f"{i.name}: {i.description}" if i.description else i.name) for i in items]

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)


def decorator(register: Callable[..., Any], fn: Callable[..., Any] | None, **options: Any) -> Any:
    """What `@tool`, `@hook` and `@step_function` share: used bare or with options, `register` the
    function and leave it callable as before."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        register(func, **options)
        return func

    return decorate(fn) if fn is not None else decorate


class ToolArgumentsError(ValueError):
    """The model called a tool with arguments that do not match its schema."""


# What a tool call may need from a person before (or instead of) running: agno's three kinds of
# "human in the loop" (docs/human-in-the-loop.md). None: it runs as soon as the model calls it.
CONFIRMATION = "confirmation"
USER_INPUT = "user_input"
EXTERNAL_EXECUTION = "external_execution"
REQUIREMENTS = (CONFIRMATION, USER_INPUT, EXTERNAL_EXECUTION)


@dataclass(frozen=True, slots=True)
class ToolRequirement:
    """What one tool call needs before it runs: `kind` (confirmation, user_input or
    external_execution) and, for user input, the arguments the user fills (hidden from the model;
    empty: the user may edit any argument the model chose)."""

    kind: str
    user_input_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    is_async: bool
    _validator: Any = field(repr=False, compare=False)
    # The parameter that receives the run's RunContext (agents_app.tools.context), hidden from the
    # model's schema; None for tools that need no context.
    context_param: str | None = None
    # What a call needs from a person (`@tool(requires_confirmation=...)` and friends); an agent may
    # override it (agents_app.models.AgentToolRequirement). None: it runs at once.
    requirement: ToolRequirement | None = None
    # Every parameter the model may see, as the validator knows them (user-input fields included).
    all_parameters: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def openai_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    @property
    def requires_confirmation(self) -> bool:
        return self.requirement is not None and self.requirement.kind == CONFIRMATION

    @property
    def requires_user_input(self) -> bool:
        return self.requirement is not None and self.requirement.kind == USER_INPUT

    @property
    def external_execution(self) -> bool:
        return self.requirement is not None and self.requirement.kind == EXTERNAL_EXECUTION

    def argument_names(self) -> list[str]:
        """The parameters a model or a user may give (the run context excluded), in order."""
        return list((self.all_parameters or self.parameters).get("properties", {}))

    def with_requirement(self, requirement: ToolRequirement | None) -> Tool:
        """This tool with another requirement (an agent's override): the user-input fields are hidden
        from the model's schema (agno's `user_input_fields`)."""
        if requirement == self.requirement:
            return self
        full = self.all_parameters or self.parameters
        return replace(self, requirement=requirement, parameters=_model_schema(full, requirement), all_parameters=full)

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Coerce and check the model's arguments, so tools get the types their hints promise."""
        try:
            model = self._validator.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            raise ToolArgumentsError(problems) from None
        return {name: getattr(model, name) for name in type(model).model_fields}


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Return the description (text before any section) and per-argument descriptions (Google style)."""
    lines = inspect.cleandoc(doc).splitlines() if doc else []
    description: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    last: str | None = None
    arg_indent = 1_000
    for line in lines:
        heading = _SECTION.match(line)
        if heading:
            section = heading.group(1)
            continue
        if section is None:
            description.append(line)
        elif section in ("Args", "Arguments", "Parameters") and line.strip():
            indent = len(line) - len(line.lstrip())
            match = _ARG_LINE.match("  " + line.lstrip()) if indent <= arg_indent else None
            if match:
                arg_indent = indent
                last = match.group(1)
                args[last] = match.group(2).strip()
            elif last is not None:
                args[last] += " " + line.strip()
    return " ".join(part.strip() for part in description if part.strip()), args


def _model_schema(full: dict[str, Any], requirement: ToolRequirement | None) -> dict[str, Any]:
    """The schema the model sees: the full one without the arguments a user fills in."""
    hidden = set(requirement.user_input_fields) if requirement is not None else set()
    if not hidden:
        return full
    schema = dict(full)
    schema["properties"] = {k: v for k, v in full.get("properties", {}).items() if k not in hidden}
    if "required" in full:
        schema["required"] = [k for k in full["required"] if k not in hidden]
    return schema


def tool_requirement(
    *,
    requires_confirmation: bool = False,
    requires_user_input: bool | list[str] | tuple[str, ...] = False,
    user_input_fields: list[str] | tuple[str, ...] | None = None,
    external_execution: bool = False,
    arguments: list[str] | None = None,
    where: str = "tool",
) -> ToolRequirement | None:
    """The requirement `@tool`'s options describe (at most one kind, as agno allows); raises
    ValueError for a contradiction or a user-input field the tool does not have."""
    fields_given = list(user_input_fields or [])
    if isinstance(requires_user_input, list | tuple):
        fields_given = [*requires_user_input, *fields_given]
        requires_user_input = True
    elif fields_given:
        requires_user_input = True
    chosen = [
        kind
        for kind, on in (
            (CONFIRMATION, requires_confirmation),
            (USER_INPUT, requires_user_input),
            (EXTERNAL_EXECUTION, external_execution),
        )
        if on
    ]
    if len(chosen) > 1:
        raise ValueError(
            f"{where}: only one of requires_confirmation, requires_user_input and external_execution may be set."
        )
    if not chosen:
        return None
    if not all(isinstance(f, str) for f in fields_given):
        raise ValueError(f"{where}: user-input fields must be argument names.")
    if arguments is not None:
        unknown = [f for f in fields_given if f not in arguments]
        if unknown:
            raise ValueError(
                f"{where}: no argument {', '.join(unknown)} to fill in (arguments: {', '.join(arguments)})."
            )
    return ToolRequirement(chosen[0], tuple(dict.fromkeys(fields_given)))


class ToolRegistry(Registry[Tool]):
    def register(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        requires_confirmation: bool = False,
        requires_user_input: bool | list[str] | tuple[str, ...] = False,
        user_input_fields: list[str] | tuple[str, ...] | None = None,
        external_execution: bool = False,
    ) -> Tool:
        tool_name = name or fn.__name__
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", tool_name):
            raise ValueError(f"Tool name {tool_name!r} must match [a-zA-Z0-9_-]{{1,64}} (an OpenAI limit).")
        doc_description, arg_docs = _parse_docstring(fn.__doc__ or "")
        hints = get_type_hints(fn)
        fields: dict[str, Any] = {}
        context_param: str | None = None
        for param in inspect.signature(fn).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"Tool {tool_name}: *args/**kwargs cannot be described to a model.")
            if hints.get(param.name) is RunContext or param.name == "run_context":
                context_param = param.name
                continue
            annotation = hints.get(param.name, str)
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (annotation, Field(default, description=arg_docs.get(param.name)))
        validator = create_model(f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        schema = validator.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        schema.setdefault("properties", {})
        requirement = tool_requirement(
            requires_confirmation=requires_confirmation,
            requires_user_input=requires_user_input,
            user_input_fields=user_input_fields,
            external_execution=external_execution,
            arguments=list(schema["properties"]),
            where=f"Tool {tool_name}",
        )
        tool = Tool(
            name=tool_name,
            description=description or doc_description or tool_name,
            parameters=_model_schema(schema, requirement),
            fn=fn,
            is_async=inspect.iscoroutinefunction(fn),
            _validator=validator,
            context_param=context_param,
            requirement=requirement,
            all_parameters=schema,
        )
        return self._add(tool)

    def all(self) -> dict[str, Tool]:
        return dict(self._items)


tool_registry = ToolRegistry()


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_confirmation: bool = False,
    requires_user_input: bool | list[str] = False,
    user_input_fields: list[str] | None = None,
    external_execution: bool = False,
) -> Any:
    """Register a function as a tool: `@tool` or `@tool(name=..., description=...)`.

    A call of a tool may need a person first (docs/human-in-the-loop.md): `requires_confirmation`
    (approve or reject it), `requires_user_input` (True: the user may edit the arguments; a list of
    argument names, or agno's `user_input_fields`: the user fills those, hidden from the model), or
    `external_execution` (the client runs it and sends its result). At most one of the three.
    The run pauses until someone decides. The function stays callable as before.
    """
    return decorator(
        tool_registry.register,
        fn,
        name=name,
        description=description,
        requires_confirmation=requires_confirmation,
        requires_user_input=requires_user_input,
        user_input_fields=user_input_fields,
        external_execution=external_execution,
    )
