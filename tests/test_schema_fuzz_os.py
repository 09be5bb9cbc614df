"""The agno-compatible API (/os/) against its own OpenAPI document (/os/openapi.json).

1. The document: valid OpenAPI 3, every route the compat URLconf serves and nothing of /api/.
2. Fuzzing: schemathesis calls every operation of the document through the real ASGI application
   with generated input, valid and invalid, as a normal user and as staff: first every operation
   but DELETE, then the DELETE operations in a pass of their own (each test item seeds its own
   data, so a delete never takes away what another operation reads). Runs really run, on the
   scripted model server. No response may be a 5xx; each must have a documented status code and
   content type and match its documented schema; every 4xx is a JSON object with `detail` and
   `code`.

Bounded for CI: a fixed number of examples per operation, derandomized, no example database.
`AGENTOS_FUZZ_EXAMPLES=200 AGENTOS_FUZZ_COVERAGE=1` fuzzes deeper.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.urls import Resolver404, resolve
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from agentos_site.asgi import application
from agents_app.agno_compat import urls as compat_urls
from agents_app.eval_models import EvalCase, EvalSuite
from agents_app.evals.services import eval_run_start
from agents_app.models import ModelConfig
from agents_app.runs import run_agent, run_team, run_workflow
from sessions_app.models import Memory, Run
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
    seed=20250602, examples=25, run_operation_ids=[f"{kind}s_runs_create" for kind in ("agent", "team", "workflow")]
)

schema = schemathesis.openapi.from_asgi("/os/openapi.json", application, config=CONFIG)

# Values that get a case past the first 404 or default, set by the `acting_token` fixture and read
# by the hooks below when a case is drawn: ids of seeded objects (random ids only ever meet a 404).
SEEDED: dict[str, list[Any]] = {}
PATH_PARAMETER_KINDS = {
    "agent_id": "agents",
    "team_id": "teams",
    "workflow_id": "workflows",
    "component_id": "components",
    "session_id": "sessions",
    "run_id": "runs",
    "memory_id": "memories",
    "eval_run_id": "eval_runs",
}
RUN_BODY_KINDS = {"session_id": "sessions", "stream": "stream"}
KEEP = object()
# Status codes answered in the current test item, and cases sent in the whole module (for the record).
STATUSES: Counter[int] = Counter()
CASES = Counter[str]()


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


# Integers past what a database column or offset holds: the generator's unbounded integers are
# mostly small, and a page number of 10**20 was a 500 (an offset no database takes).
HUGE_INTEGERS = [2**63, 10**20, -(2**63) - 1]


@schema.hook
def flatmap_query(context: Any, query: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    if not query:
        return st.just(query)
    integers = [name for name, value in query.items() if isinstance(value, int) and not isinstance(value, bool)]
    choices = {name: st.sampled_from([KEEP, *HUGE_INTEGERS]) for name in integers}
    return st.fixed_dictionaries(choices).map(
        lambda chosen: {**query, **{name: value for name, value in chosen.items() if value is not KEEP}}
    )


@schema.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    if not isinstance(body, dict):
        return st.just(body)
    label = context.operation.label
    if label.endswith("}/runs") and label.startswith("POST"):
        return _with_seeded_values(body, RUN_BODY_KINDS)
    if label == "DELETE /os/memories" and SEEDED.get("memories"):
        # Sometimes the seeded ids, among what was generated.
        return st.sampled_from([KEEP, SEEDED["memories"]]).map(
            lambda ids: body if ids is KEEP else {**body, "memory_ids": ids}
        )
    return st.just(body)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _eval_cases_not_run(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The eval routes' shapes are what is fuzzed here: their cases are queued, not run (a worker
    # thread running them would outlive the test item; tests/test_agno_compat_evals.py runs them),
    # and `POST /os/eval-runs` answers at once instead of waiting for its case.
    settings.AGENTOS = {**settings.AGENTOS, "EVALS_AGNO_WAIT_SECONDS": 0}
    monkeypatch.setattr("agents_app.evals.services.eval_cases_publish", lambda **kwargs: 0)


@pytest.fixture(params=["user", "staff"])
def acting_token(request: Any, scripted_model: Any) -> Iterator[str]:
    """Seeds two users; an agent, a team (collaborating: its members run too) and a workflow on the
    scripted model server, and an inactive agent; a session of each kind with a run for the acting
    user, one for the other user, a memory each. Yields the acting user's token."""
    user = UserFactory(username="fuzz-user")
    staff = UserFactory(username="fuzz-staff", is_staff=True, is_superuser=True)
    model = ModelConfigFactory(
        name="fuzz-scripted",
        provider=ModelConfig.Provider.OPENAI,
        base_url=scripted_model.base_url,
        model_id="scripted-model",
        api_key="sk-test",
        timeout_seconds=5.0,
        max_retries=0,
    )
    agent = AgentFactory(slug="fuzz-agent", name="Fuzz", model=model, tools=["calculator"])
    AgentFactory(slug="fuzz-inactive", model=model, is_active=False)
    team = TeamFactory(slug="fuzz-team", model=model, mode="collaborate")
    TeamMemberFactory(team=team, agent=agent)
    workflow = WorkflowFactory(slug="fuzz-workflow")
    WorkflowStepFactory(workflow=workflow, name="ask", kind="agent", agent=agent, order=0)
    WorkflowStepFactory(workflow=workflow, name="keep", kind="function", function="remember_output", order=1)
    actor, other = (staff, user) if request.param == "staff" else (user, staff)
    mine = run_agent(agent_id=agent.slug, user=actor, message="hello")
    my_team = run_team(team_id=team.slug, user=actor, message="hello team")
    my_workflow = run_workflow(workflow_id=workflow.slug, user=actor, message="hello workflow")
    theirs = run_agent(agent_id=agent.slug, user=other, message="hello")
    my_memory = Memory.objects.create(user=actor, memory="Likes tea.", topics=["drinks"])
    their_memory = Memory.objects.create(user=other, memory="Likes coffee.", topics=["drinks"])
    suite = EvalSuite.objects.create(slug="fuzz-suite", name="Fuzz suite", agent=agent)
    EvalCase.objects.create(suite=suite, kind="performance", input="hello")
    eval_run = eval_run_start(suite=suite, publish=False)
    SEEDED.update(
        agents=["fuzz-agent", "fuzz-agent", "fuzz-inactive"],  # the active agent twice: run it more often
        teams=["fuzz-team", "fuzz-team", "nope"],
        workflows=["fuzz-workflow", "fuzz-workflow", "nope"],
        components=["fuzz-agent", "fuzz-team", "fuzz-workflow"],
        sessions=[str(mine.session_id), my_team["session_id"], my_workflow["session_id"], str(theirs.session_id)],
        runs=[str(mine.run_id), my_team["run_id"], my_workflow["run_id"], str(theirs.run_id)],
        memories=[str(my_memory.pk), str(their_memory.pk)],
        stream=[True, False],
        eval_runs=[str(eval_run.pk)],
    )
    STATUSES.clear()
    yield Token.objects.create(user=actor).key
    SEEDED.clear()
    if request.node.name.startswith(RUN_ITEMS):
        # The fuzzer got runs through, not only refusals: they ran on the scripted model and were stored.
        assert STATUSES[200] > 0, f"no run answered 200: {dict(STATUSES)}"
        assert Run.objects.filter(user=actor, parent_run_id=None).count() > 3


RUN_ITEMS = tuple(
    f"test_os_conforms_to_its_document[POST /os/{kind}s/{{{kind}_id}}/runs]" for kind in ("agent", "team", "workflow")
)


@pytest.fixture(scope="module", autouse=True)
def _report_cases() -> Iterator[None]:
    yield
    print(f"\nschemathesis on /os: {sum(CASES.values())} cases over {len(CASES)} operations")


def client_errors_are_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Bad input gets a clear answer: every 4xx is a JSON object with `detail` and `code`."""
    if 400 <= response.status_code < 500:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/json"), f"{response.status_code} answered {content_type!r}"
        body = json.loads(response.content)
        assert isinstance(body, dict) and {"detail", "code"} <= body.keys(), f"{response.status_code}: {body!r}"
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    client_errors_are_json,
    ignored_auth,
]


def _call_and_validate(case: Any, token: str) -> None:
    headers = bearer(token)
    CASES[case.operation.label] += 1
    try:
        resolve(case.formatted_path)
    except Resolver404:
        # A path parameter no URL pattern matches (`/os/agents/not a slug`) never reaches a view:
        # the compat catch-all's JSON 404.
        response = case.call(headers=headers)
        assert response.status_code == 404 and response.json()["code"] == "not_found"
        return
    response = case.call(headers=headers)
    STATUSES[response.status_code] += 1
    case.validate_response(response, checks=CHECKS)


# ---- The document --------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_and_lists_every_route():
    schema.validate()  # the OpenAPI 3 meta-schema
    raw = schema.raw_schema
    assert raw["openapi"].startswith("3.")
    documented = {path for path in raw["paths"]}
    served = set()
    for pattern in compat_urls.urlpatterns:
        route = str(pattern.pattern)
        if route and route != "openapi.json":
            served.add("/os/" + route.replace("<slug:", "{").replace("<str:", "{").replace(">", "}"))
    assert documented == served
    assert (
        sum(len(ops) for ops in raw["paths"].values()) == 59
    )  # 28, team continue, workflow continue, eval-runs 5, parity 16, observe 8
    assert not [p for p in raw["paths"] if not p.startswith("/os/")]


async def test_the_document_is_public_and_json(asgi):
    r = await asgi.get("/os/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    assert r.json()["info"]["title"].startswith("AgentOS for Django")
    api = (await asgi.get("/api/schema/", headers={"Accept": "application/json"})).json()
    assert not [p for p in api["paths"] if p.startswith("/os/")]
    # Nor do they change its inferred path prefix, and so its operation ids (test_schema_fuzz.py's
    # settings name some): the compat views are invisible to its generator, not merely excluded.
    api_ids = {op["operationId"] for ops in api["paths"].values() for op in ops.values()}
    assert {"agents_runs_create", "teams_runs_create", "workflows_runs_create"} <= api_ids


# ---- Fuzzing: everything but DELETE, then DELETE -------------------------------------------------


@schema.exclude(method="DELETE").parametrize()
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
def test_os_conforms_to_its_document(case: Any, acting_token: str) -> None:
    _call_and_validate(case, acting_token)


# (`exclude`, not `include(method="DELETE")`: schemathesis 4.32 ORs an include with the per-operation
# settings of CONFIG, which then selects every operation.)
@schema.exclude(method=["GET", "POST", "PATCH", "PUT"]).parametrize()
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
def test_os_deletes_conform_to_their_document(case: Any, acting_token: str) -> None:
    _call_and_validate(case, acting_token)
