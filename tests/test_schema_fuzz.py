"""The REST API against its own OpenAPI schema (drf-spectacular, served at /api/schema/).

1. Fuzzing: schemathesis calls every operation of the served schema through the real ASGI
   application (middleware, routing, the async run view) with generated input, valid and invalid,
   as a normal user and as staff. No response may be a 5xx; each must have a documented status
   code and content type and match the documented schema; every 4xx must be a JSON object. The run
   endpoint really runs: the seeded agent uses the built-in offline model (no model server).
2. The run endpoint's documented answers, each produced on purpose (JSON, SSE, failed runs from
   the scripted model server) and validated against the schema.
3. Bodies no client should send (oversized, not UTF-8, malformed or hostile JSON, too many fields,
   unsupported media type): a 4xx with a JSON body, never a 500 or an HTML page.

Bounded for CI: a fixed number of examples per operation, derandomized, no example database.
`AGENTOS_FUZZ_EXAMPLES=200 AGENTOS_FUZZ_COVERAGE=1` fuzzes deeper (schemathesis' coverage phase
adds boundary values of every field; a few minutes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.conf import settings as django_settings
from django.urls import Resolver404, resolve
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agentos_site.asgi import application
from agents_app.eval_models import EvalCase, EvalSuite
from agents_app.evals.services import eval_run_start
from agents_app.models import ModelConfig
from agents_app.runs import arun_agent, run_agent
from agents_app.runtime import runtime
from sessions_app.models import Memory
from sessions_app.tokens import token_create
from tests.conftest import bearer
from tests.factories import (
    AgentFactory,
    ModelConfigFactory,
    TeamFactory,
    TeamMemberFactory,
    UserFactory,
    WorkflowFactory,
    WorkflowStepFactory,
)
from tests.fuzzing import fuzz_config

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = fuzz_config(
    seed=20250601, examples=30, run_operation_ids=["agents_runs_create", "teams_runs_create", "workflows_runs_create"]
)

schema = schemathesis.openapi.from_asgi("/api/schema/", application, config=CONFIG)

# Values that get a case past the first 404 or default, set by the `acting_token` fixture and read by the
# hooks below when a case is drawn: ids of seeded objects (random ids only ever meet a 404) and
# `stream: true` (so that runs are streamed as well).
SEEDED: dict[str, list[Any]] = {}
PATH_PARAMETER_KINDS = {
    "agent_id": "agents",
    "id": "models",
    "session_id": "sessions",
    "run_id": "runs",
    "team_id": "teams",
    "workflow_id": "workflows",
    "memory_id": "memories",
    "token_id": "tokens",
    "suite": "suites",
    "case_id": "cases",
    "eval_run_id": "eval_runs",
}
RUN_OPERATIONS = (
    "POST /api/agents/{agent_id}/runs",
    "POST /api/teams/{team_id}/runs",
    "POST /api/workflows/{workflow_id}/runs",
)
RUN_BODY_KINDS = {"session_id": "sessions", "stream": "stream"}
KEEP = object()
PASSWORD = "fuzz-password-1"


def _with_seeded_values(values: dict[str, Any], kinds: dict[str, str]) -> st.SearchStrategy[dict[str, Any]]:
    """The generated values, with each of the named fields either kept or set to a seeded value."""
    choices = {name: st.sampled_from([KEEP, *SEEDED[kind]]) for name, kind in kinds.items() if SEEDED.get(kind)}
    return st.fixed_dictionaries(choices).map(
        lambda chosen: {**values, **{name: value for name, value in chosen.items() if value is not KEEP}}
    )


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    if not path_parameters:
        return st.just(path_parameters)
    kinds = {name: kind for name, kind in PATH_PARAMETER_KINDS.items() if name in path_parameters}
    return _with_seeded_values(path_parameters, kinds)


@schema.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    if not isinstance(body, dict):
        return st.just(body)
    if context.operation.label in RUN_OPERATIONS:
        return _with_seeded_values(body, RUN_BODY_KINDS)
    if context.operation.label == "POST /api/auth/token/":
        return _with_seeded_values(body, {"username": "usernames", "password": "passwords"})
    if "model" in body:  # an agent's model config
        return _with_seeded_values(body, {"model": "models"})
    if context.operation.label == "POST /api/memories/":
        return _with_seeded_values(body, {"agent_id": "agents"})
    if context.operation.label == "POST /api/tokens/":
        return _with_seeded_values(body, {"agents": "agent_lists", "teams": "team_lists", "expires_at": "expiries"})
    return st.just(body)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # Exchanging credentials for a token hashes the password it checks, even for unknown users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _eval_cases_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # The eval routes' shapes are what is fuzzed here: their cases are queued, not run. A worker
    # thread running them outlives the test item, and on PostgreSQL its transaction deadlocked with
    # the teardown's TRUNCATE once (tests/test_evals_api.py runs cases).
    monkeypatch.setattr("agents_app.evals.services.eval_cases_publish", lambda **kwargs: 0)


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test(db: Any) -> Iterator[None]:
    """Torn down before the database is flushed: wait (at most 15 s) for the runs the case started
    to end. A run whose client has its answer may still be storing its tail; on PostgreSQL, its
    writes and the teardown's TRUNCATE deadlocked once (a workflow run, started over SSE)."""
    yield
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(
        live.task is not None and not live.task.done() and not live.loop.is_closed()
        for live in list(runtime._live.values())
    ):
        time.sleep(0.05)


@pytest.fixture(params=["user", "staff", "scoped"])
def acting_token(request: Any, db: Any) -> Iterator[str]:
    """Seeds two users, an offline agent and an inactive one, and a session with a run for each
    user; yields the token of the user acting (a normal user, or staff), or a scoped API token of
    the normal user's, limited to the agent and the team (not the workflow)."""
    user = UserFactory(username="fuzz-user", password=PASSWORD)
    staff = UserFactory(username="fuzz-staff", password=PASSWORD, is_staff=True, is_superuser=True)
    model = ModelConfigFactory(name="fuzz-offline", provider=ModelConfig.Provider.OFFLINE)
    agent = AgentFactory(slug="fuzz-agent", name="Fuzz", model=model, tools=["calculator", "current_time"])
    AgentFactory(slug="fuzz-inactive", model=model, is_active=False)
    # A team and a workflow that run offline too: the leader combines the members' answers.
    team = TeamFactory(slug="fuzz-team", model=model, mode="collaborate")
    TeamMemberFactory(team=team, agent=agent)
    workflow = WorkflowFactory(slug="fuzz-workflow")
    WorkflowStepFactory(workflow=workflow, name="ask", kind="agent", agent=agent, order=0)
    WorkflowStepFactory(workflow=workflow, name="keep", kind="function", function="remember_output", order=1)
    actor, other = (staff, user) if request.param == "staff" else (user, staff)
    mine = run_agent(agent_id=agent.slug, user=actor, message="what is 6*7?")
    theirs = run_agent(agent_id=agent.slug, user=other, message="hello")
    my_memory = Memory.objects.create(user=actor, memory="Likes tea.", topics=["drinks"])
    their_memory = Memory.objects.create(user=other, memory="Likes coffee.", topics=["drinks"])
    my_token, _ = token_create(user=actor, name="mine", agents=["fuzz-agent"], expires_at=None)
    their_token, _ = token_create(user=other, name="theirs", expires_at=None)
    suite = EvalSuite.objects.create(slug="fuzz-suite", name="Fuzz suite", agent=agent)
    case = EvalCase.objects.create(suite=suite, kind="performance", input="hello")
    eval_run = eval_run_start(suite=suite, publish=False)
    SEEDED.update(
        agents=["fuzz-agent", "fuzz-agent", "fuzz-inactive"],  # the active agent twice: run it more often
        models=[model.pk],
        teams=["fuzz-team", "fuzz-team", "nope"],
        workflows=["fuzz-workflow", "fuzz-workflow", "nope"],
        sessions=[mine.session_id, theirs.session_id],
        runs=[mine.run_id, theirs.run_id],
        memories=[str(my_memory.pk), str(their_memory.pk)],
        tokens=[str(my_token.pk), str(their_token.pk)],
        agent_lists=[["fuzz-agent"], ["fuzz-agent", "fuzz-inactive"]],
        team_lists=[["fuzz-team"]],
        expiries=[None, "2999-01-01T00:00:00Z"],
        stream=[True],
        suites=["fuzz-suite", "fuzz-suite", "nope"],
        cases=[case.pk],
        eval_runs=[str(eval_run.pk)],
        usernames=[actor.username],
        passwords=[PASSWORD],
    )
    if request.param == "scoped":
        yield token_create(user=actor, name="fuzz", agents=["fuzz-agent"], teams=["fuzz-team"], expires_at=None)[1]
    else:
        yield Token.objects.create(user=actor).key
    SEEDED.clear()


def client_errors_are_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Bad input gets a clear answer: every 4xx is a non-empty JSON object."""
    if 400 <= response.status_code < 500:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/json"), f"{response.status_code} answered {content_type!r}"
        body = json.loads(response.content)
        assert isinstance(body, dict) and body, f"{response.status_code} body is not a JSON object: {body!r}"
    return None


CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    client_errors_are_json,
]


def _routed(case: Any) -> bool:
    try:
        resolve(case.formatted_path)
    except Resolver404:
        return False
    return True


@schema.parametrize()
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
def test_api_conforms_to_its_schema(case: Any, acting_token: str) -> None:
    headers = bearer(acting_token)
    if not _routed(case):
        # A path parameter that no URL pattern matches (say `/api/sessions/not-a-uuid/`) never
        # reaches the API: Django's URL resolver answers with the site's 404 page.
        assert case.call(headers=headers).status_code == 404
        return
    case.call_and_validate(headers=headers, checks=[not_a_server_error, *CONFORMANCE, ignored_auth])


# ---- The run endpoint's documented answers, each produced on purpose -----------------------------

RUN = schema["/api/agents/{agent_id}/runs"]["POST"]


def assert_conforms(response: Any, *, agent_id: str, body: Any = None) -> None:
    case = RUN.Case(path_parameters={"agent_id": agent_id}, body=body, media_type="application/json")
    case.validate_response(response, checks=CONFORMANCE)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_run_conforms_as_json_and_as_server_sent_events(asgi, offline_agent, token, stream):
    body = {"message": "what is 6*7?", "stream": stream}
    r = await asgi.post(f"/api/agents/{offline_agent.slug}/runs", json=body, headers=bearer(token))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream" if stream else "application/json")
    assert_conforms(r, agent_id=offline_agent.slug, body=body)


async def test_other_methods_on_the_async_run_view_are_not_a_500(asgi, offline_agent, token):
    # OPTIONS (DRF's metadata, a sync handler) used to be awaited: a TypeError, so a 500.
    url = f"/api/agents/{offline_agent.slug}/runs"
    options = await asgi.options(url, headers=bearer(token))
    assert options.status_code == 200 and options.json()["name"] == "Agent Run Api"
    get = await asgi.get(url, headers=bearer(token))
    assert get.status_code == 405 and get.json() == {
        "detail": 'Method "GET" not allowed.',
        "code": "method_not_allowed",
    }


@pytest.mark.parametrize(
    ("script", "status"),
    [
        (lambda model: model.push_error(500, "upstream exploded"), 502),
        (lambda model: model.push_error(429, "slow down"), 503),
        (lambda model: model.push_hang(2.0), 504),
    ],
)
async def test_a_failed_run_conforms(asgi, agent, openai_model, token, scripted_model, script, status):
    openai_model.timeout_seconds = 0.3
    await openai_model.asave()
    script(scripted_model)
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == status and r.json()["status"] == "error"
    assert_conforms(r, agent_id=agent.slug, body={"message": "hi"})


# ---- Bodies no client should send: a 4xx with a JSON body, never a 500 or an HTML page -----------


def _multipart(fields: dict[str, bytes]) -> tuple[bytes, str]:
    parts = [
        b'--B\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n' + value + b"\r\n"
        for name, value in fields.items()
    ]
    return b"".join(parts) + b"--B--\r\n", "multipart/form-data; boundary=B"


def hostile_bodies() -> dict[str, tuple[int, bytes, str]]:
    """Name -> (expected status, body, Content-Type)."""
    too_big = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
    many = django_settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1
    return {
        "json over the size limit": (413, b'{"message": "' + b"x" * too_big + b'"}', "application/json"),
        "form over the size limit": (413, b"message=" + b"x" * too_big, "application/x-www-form-urlencoded"),
        "multipart over the size limit": (413, *_multipart({"message": b"x" * too_big})),
        "json not UTF-8": (400, b'{"message": "caf\xe9"}', "application/json"),
        "json truncated": (400, b'{"message": "hi"', "application/json"),
        "json lone surrogate": (400, b'{"message": "hi \\ud800", "name": "\\udfff"}', "application/json"),
        # Stored as is in a JSONField (an agent's output_schema), then unencodable by every answer
        # that includes it, every run of the agent included: a 500 that persisted.
        "json lone surrogate in a JSON field": (
            400,
            b'{"message": "hi", "output_schema": {"type": "object", "properties": {"\\ud800": {}}}}',
            "application/json",
        ),
        "json nested too deep": (400, b'{"message": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json"),
        "json NaN": (400, b'{"message": NaN}', "application/json"),
        "json not an object": (400, b'["message", "hi"]', "application/json"),
        "form with too many fields": (
            400,
            b"&".join(b"f%d=1" % i for i in range(many)),
            "application/x-www-form-urlencoded",
        ),
        "multipart without boundary": (400, b"message=hi", "multipart/form-data"),
        "unsupported media type": (415, b"message: hi", "text/plain"),
    }


BODY_OPERATIONS = [
    ("POST", "/api/agents/{agent_id}/runs"),
    ("POST", "/api/agents/"),
    ("PATCH", "/api/agents/{agent_id}/"),
    ("POST", "/api/models/"),
    ("PATCH", "/api/sessions/{session_id}/"),
    ("POST", "/api/memories/"),
    ("PATCH", "/api/memories/{memory_id}/"),
    ("POST", "/api/tokens/"),
]


@pytest.mark.parametrize(("method", "path"), BODY_OPERATIONS)
async def test_hostile_bodies_are_a_4xx_with_a_json_body(asgi, offline_agent, staff_user, staff_token, method, path):
    started = await arun_agent(agent_id=offline_agent.slug, user=staff_user, message="hi")
    memory = await Memory.objects.acreate(user=staff_user, memory="Likes tea.")
    path_parameters = {"agent_id": offline_agent.slug, "session_id": started.session_id, "memory_id": str(memory.pk)}
    url = path.format(**path_parameters)
    operation = schema[path][method]
    for name, (expected, body, content_type) in hostile_bodies().items():
        headers = bearer(staff_token) | {"Content-Type": content_type}
        r = await asgi.request(method, url, content=body, headers=headers)
        assert r.status_code == expected, (name, r.status_code, r.text[:300])
        case = operation.Case(path_parameters={k: v for k, v in path_parameters.items() if k in path})
        case.validate_response(r, checks=[not_a_server_error, *CONFORMANCE])


def _nested_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.parametrize(
    "output_schema",
    [
        # jsonschema checked it recursively: RecursionError, a 500 (well under the parser's cap).
        _nested_schema(150),
        # PostgreSQL's jsonb refuses U+0000: a DataError, a 500 (SQLite stored it).
        {"type": "object", "description": "a\x00b"},
        {"type": "object", "properties": {"a\x00": {"type": "string"}}},
    ],
    ids=["nested 150 levels", "null character in a value", "null character in a key"],
)
async def test_output_schemas_that_cannot_be_stored_or_checked_are_a_400(
    asgi, offline_agent, staff_token, output_schema
):
    url = f"/api/agents/{offline_agent.slug}/"
    r = await asgi.patch(url, json={"output_schema": output_schema}, headers=bearer(staff_token))
    assert r.status_code == 400 and "output_schema" in r.json(), r.text[:300]
    schema["/api/agents/{agent_id}/"]["PATCH"].Case(path_parameters={"agent_id": offline_agent.slug}).validate_response(
        r, checks=CONFORMANCE
    )
    ok = await asgi.patch(url, json={"output_schema": _nested_schema(15)}, headers=bearer(staff_token))
    assert ok.status_code == 200, ok.text[:300]
