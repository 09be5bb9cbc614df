"""The admin: every page renders, the API key never leaks, tools and schemas are edited safely, runs
are read-only records, and "try it" runs an agent as the admin user."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from agents_app.models import Agent, ModelConfig
from agents_app.selectors import AgentNotFound, agent_get_active
from agents_app.tools.registry import tool_registry
from sessions_app.models import Memory, Message, Run, Session
from tests.factories import AgentFactory, ModelConfigFactory, UserFactory

pytestmark = pytest.mark.django_db

SECRET = "sk-live-DO-NOT-LEAK-4242"


@pytest.fixture
def admin_client(client: Client, staff_user: Any) -> Client:
    client.force_login(staff_user)
    return client


@pytest.fixture
def calc_agent(db: Any) -> Agent:
    return AgentFactory(slug="calc", name="Calc", tools=["calculator"])


@pytest.fixture
def keyed_model(db: Any) -> ModelConfig:
    return ModelConfigFactory(
        name="remote",
        provider=ModelConfig.Provider.OPENAI,
        base_url="http://localhost:11434/v1",
        model_id="llama3",
        api_key=SECRET,
    )


def try_url(agent: Agent) -> str:
    return reverse("admin:agents_app_agent_try", args=[agent.pk])


def model_config_post(config: ModelConfig, **changes: Any) -> dict[str, Any]:
    data = {
        "name": config.name,
        "provider": config.provider,
        "base_url": config.base_url,
        "model_id": config.model_id,
        "api_key": "",
        "temperature": "" if config.temperature is None else config.temperature,
        "max_tokens": "" if config.max_tokens is None else config.max_tokens,
        "timeout_seconds": config.timeout_seconds,
        "max_retries": config.max_retries,
        "api_key_env": config.api_key_env,
        "input_price": config.input_price,
        "cached_input_price": "" if config.cached_input_price is None else config.cached_input_price,
        "output_price": config.output_price,
    }
    data.update(changes)
    return data


def agent_post(model: ModelConfig, **changes: Any) -> dict[str, Any]:
    data = {
        "name": "Support bot",
        "slug": "support-bot",
        "description": "",
        "is_active": "on",
        "model": model.pk,
        "instructions": "Be brief.",
        "tools": [],
        "max_tool_calls": 8,
        "output_schema": "",
        "history_runs": 3,
        "history_max_chars": 24000,
        "initial_session_state": "",
        "memory_mode": "off",
        "memory_scope": "user",
        "memory_context_items": 10,
        "memory_context_chars": 2000,
        "memory_model": "",
        "memory_hook_mode": "default",
        "summary_hook_mode": "default",
        "busy_session_policy": "queue",
        "access": "everyone",
        "approval_timeout_seconds": 86400,
        "paused_session_policy": "reject",
        # The tool-requirement overrides inline (tests/test_human_in_the_loop.py adds rows).
        "tool_requirements-TOTAL_FORMS": "0",
        "tool_requirements-INITIAL_FORMS": "0",
        "tool_requirements-MIN_NUM_FORMS": "0",
        "tool_requirements-MAX_NUM_FORMS": "1000",
        # The hook inline (tests/test_hooks.py adds rows).
        "hooks-TOTAL_FORMS": "0",
        "hooks-INITIAL_FORMS": "0",
        "hooks-MIN_NUM_FORMS": "0",
        "hooks-MAX_NUM_FORMS": "1000",
        # The fallback models inline.
        "fallbacks-TOTAL_FORMS": "0",
        "fallbacks-INITIAL_FORMS": "0",
        "fallbacks-MIN_NUM_FORMS": "0",
        "fallbacks-MAX_NUM_FORMS": "1000",
    }
    data.update(changes)
    return data


# ---- every page renders ----------------------------------------------------------------------


def test_every_changelist_change_and_add_page_renders(admin_client, calc_agent, keyed_model, staff_user):
    admin_client.post(try_url(calc_agent), {"message": "what is 6*7?"})
    run = Run.objects.get()
    message = Message.objects.filter(run=run).order_by("position").last()
    memory = Memory.objects.create(user=staff_user, memory="Likes tea.", topics=["drinks"], source_run=run)
    pages = [
        reverse("admin:index"),
        reverse("admin:app_list", args=["agents_app"]),
        reverse("admin:app_list", args=["sessions_app"]),
        reverse("admin:agents_app_modelconfig_changelist"),
        reverse("admin:agents_app_modelconfig_add"),
        reverse("admin:agents_app_modelconfig_change", args=[keyed_model.pk]),
        reverse("admin:agents_app_agent_changelist"),
        reverse("admin:agents_app_agent_add"),
        reverse("admin:agents_app_agent_change", args=[calc_agent.pk]),
        try_url(calc_agent),
        reverse("admin:sessions_app_session_changelist"),
        reverse("admin:sessions_app_session_add"),
        reverse("admin:sessions_app_session_change", args=[run.session_id]),
        reverse("admin:sessions_app_run_changelist"),
        reverse("admin:sessions_app_run_change", args=[run.pk]),
        reverse("admin:sessions_app_message_changelist"),
        reverse("admin:sessions_app_message_change", args=[message.pk]),
        reverse("admin:sessions_app_memory_changelist"),
        reverse("admin:sessions_app_memory_add"),
        reverse("admin:sessions_app_memory_change", args=[memory.pk]),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url


def test_changelists_filter_and_search(admin_client, calc_agent):
    admin_client.post(try_url(calc_agent), {"message": "what is 6*7?"})
    urls = [
        reverse("admin:agents_app_agent_changelist") + "?is_active__exact=1&model__provider__exact=offline&q=calc",
        reverse("admin:sessions_app_session_changelist") + f"?agent__id__exact={calc_agent.pk}&q=staff",
        reverse("admin:sessions_app_run_changelist") + f"?status__exact=completed&agent__id__exact={calc_agent.pk}",
        reverse("admin:sessions_app_message_changelist") + "?role__exact=tool&q=42",
    ]
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert "0 results" not in response.content.decode(), url


# ---- model configs: the API key is write-only ------------------------------------------------


def test_api_key_never_appears_in_admin_html(admin_client, keyed_model):
    pages = [
        reverse("admin:agents_app_modelconfig_changelist"),
        reverse("admin:agents_app_modelconfig_change", args=[keyed_model.pk]),
        reverse("admin:agents_app_modelconfig_history", args=[keyed_model.pk]),
        reverse("admin:agents_app_modelconfig_delete", args=[keyed_model.pk]),
        reverse("admin:agents_app_agent_add"),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert SECRET not in response.content.decode(), url
    change = admin_client.get(pages[1]).content.decode()
    assert 'type="password"' in change
    assert "A key is stored. Leave blank to keep the current key." in change
    assert "Clear the stored key" in change


def test_changelist_shows_where_the_key_comes_from(admin_client, keyed_model):
    ModelConfigFactory(name="keyless", api_key="")
    html = admin_client.get(reverse("admin:agents_app_modelconfig_changelist")).content.decode()
    assert html.count('<td class="field-key_source">stored</td>') == 1
    assert html.count('<td class="field-key_source">none</td>') == 1
    assert "llama3" in html and "http://localhost:11434/v1" in html


def test_saving_with_a_blank_key_keeps_the_stored_key(admin_client, keyed_model):
    url = reverse("admin:agents_app_modelconfig_change", args=[keyed_model.pk])
    response = admin_client.post(url, model_config_post(keyed_model, model_id="llama3.1"))
    assert response.status_code == 302
    keyed_model.refresh_from_db()
    assert keyed_model.model_id == "llama3.1"
    assert keyed_model.api_key == SECRET


def test_a_new_key_replaces_the_old_one_and_clearing_removes_it(admin_client, keyed_model):
    url = reverse("admin:agents_app_modelconfig_change", args=[keyed_model.pk])
    assert admin_client.post(url, model_config_post(keyed_model, api_key="sk-new-key-1")).status_code == 302
    keyed_model.refresh_from_db()
    assert keyed_model.api_key == "sk-new-key-1"
    assert "sk-new-key-1" not in admin_client.get(url).content.decode()

    assert admin_client.post(url, model_config_post(keyed_model, clear_api_key="on")).status_code == 302
    keyed_model.refresh_from_db()
    assert keyed_model.api_key == ""
    assert "No key is stored." in admin_client.get(url).content.decode()


def test_a_typed_key_is_not_echoed_back_when_the_form_has_errors(admin_client, keyed_model):
    url = reverse("admin:agents_app_modelconfig_change", args=[keyed_model.pk])
    response = admin_client.post(url, model_config_post(keyed_model, api_key="sk-typed-999", timeout_seconds="-1"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Please correct the error below." in html
    assert "sk-typed-999" not in html and SECRET not in html
    keyed_model.refresh_from_db()
    assert keyed_model.api_key == SECRET


def test_a_new_key_and_clear_together_is_an_error(admin_client, keyed_model):
    url = reverse("admin:agents_app_modelconfig_change", args=[keyed_model.pk])
    response = admin_client.post(url, model_config_post(keyed_model, api_key="sk-other", clear_api_key="on"))
    assert response.status_code == 200
    assert "Either type a new key or clear the stored one, not both." in response.content.decode()
    keyed_model.refresh_from_db()
    assert keyed_model.api_key == SECRET


def test_adding_a_model_config_stores_the_key(admin_client):
    data = {
        "name": "openai",
        "provider": "openai",
        "base_url": "",
        "model_id": "gpt-4o-mini",
        "api_key": "sk-added",
        "temperature": "0.2",
        "max_tokens": "",
        "timeout_seconds": "30",
        "max_retries": "2",
        "api_key_env": "",
        "input_price": "0.15",
        "cached_input_price": "",
        "output_price": "0.6",
    }
    response = admin_client.post(reverse("admin:agents_app_modelconfig_add"), data)
    assert response.status_code == 302
    config = ModelConfig.objects.get(name="openai")
    assert config.api_key == "sk-added" and config.temperature == 0.2 and config.max_tokens is None
    assert (config.input_price, config.cached_input_price, config.output_price) == (
        Decimal("0.15"),
        None,
        Decimal("0.6"),
    )


# ---- agents ----------------------------------------------------------------------------------


def test_tools_are_checkboxes_of_the_registered_tools(admin_client):
    html = admin_client.get(reverse("admin:agents_app_agent_add")).content.decode()
    assert tool_registry.names()
    for name in tool_registry.names():
        assert f'type="checkbox" name="tools" value="{name}"' in html
    assert "data-prepopulated-fields" in html and "&quot;#id_slug&quot;" in html


def test_saving_an_agent_stores_the_chosen_tools(admin_client):
    model = ModelConfigFactory()
    response = admin_client.post(
        reverse("admin:agents_app_agent_add"), agent_post(model, tools=["calculator", "text_stats"])
    )
    assert response.status_code == 302, response.content.decode()
    agent = Agent.objects.get(slug="support-bot")
    assert agent.tools == ["calculator", "text_stats"]
    assert agent.output_schema is None

    change = reverse("admin:agents_app_agent_change", args=[agent.pk])
    assert admin_client.post(change, agent_post(model, tools=[])).status_code == 302
    agent.refresh_from_db()
    assert agent.tools == []


def test_unknown_stored_tools_are_reported_not_dropped(admin_client):
    agent = AgentFactory(tools=["calculator", "vanished_tool"])
    url = reverse("admin:agents_app_agent_change", args=[agent.pk])
    html = admin_client.get(url).content.decode()
    assert "lists tools that no code registers: vanished_tool" in html
    assert 'value="vanished_tool"' in html and "not registered in code" in html
    listing = admin_client.get(reverse("admin:agents_app_agent_changelist")).content.decode()
    assert "2 (1 unknown)" in listing

    data = agent_post(agent.model, name=agent.name, slug=agent.slug, tools=["calculator", "vanished_tool"])
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "Not registered in code: vanished_tool" in response.content.decode()
    agent.refresh_from_db()
    assert agent.tools == ["calculator", "vanished_tool"]

    data["tools"] = ["calculator"]
    assert admin_client.post(url, data).status_code == 302
    agent.refresh_from_db()
    assert agent.tools == ["calculator"]


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.mark.parametrize(
    ("schema_text", "error"),
    [
        ('{"type": "object", "properties": {', "This is not valid JSON"),
        ("{'type': 'object'}", "This is not valid JSON"),
        ('{"type": "object", "properties": 3}', "Not a valid JSON schema"),
        ('{"type": "string"}', "The output schema must describe an object"),
        ("[1, 2]", "The output schema must be a JSON object."),
    ],
)
def test_an_invalid_output_schema_is_a_form_error(admin_client, schema_text, error):
    model = ModelConfigFactory()
    response = admin_client.post(reverse("admin:agents_app_agent_add"), agent_post(model, output_schema=schema_text))
    assert response.status_code == 200
    html = response.content.decode()
    assert error in html
    assert not Agent.objects.exists()


def test_output_schema_is_saved_and_shown_pretty_in_monospace(admin_client):
    model = ModelConfigFactory()
    response = admin_client.post(
        reverse("admin:agents_app_agent_add"), agent_post(model, output_schema=json.dumps(SCHEMA))
    )
    assert response.status_code == 302
    agent = Agent.objects.get()
    assert agent.output_schema == SCHEMA
    html = admin_client.get(reverse("admin:agents_app_agent_change", args=[agent.pk])).content.decode()
    assert "{\n  &quot;type&quot;: &quot;object&quot;," in html
    assert "monospace" in html


def test_activate_and_deactivate_actions(admin_client, calc_agent):
    other = AgentFactory(is_active=False)
    url = reverse("admin:agents_app_agent_changelist")
    assert agent_get_active(agent_id="calc").pk == calc_agent.pk  # now cached

    response = admin_client.post(url, {"action": "deactivate", "_selected_action": [calc_agent.pk]}, follow=True)
    assert "Deactivated 1 agent(s)" in response.content.decode()
    calc_agent.refresh_from_db()
    assert calc_agent.is_active is False
    with pytest.raises(AgentNotFound):
        agent_get_active(agent_id="calc")  # the cache was cleared

    response = admin_client.post(
        url, {"action": "activate", "_selected_action": [calc_agent.pk, other.pk]}, follow=True
    )
    assert "Activated 2 agent(s)" in response.content.decode()
    assert Agent.objects.filter(is_active=True).count() == 2


# ---- try it ----------------------------------------------------------------------------------


def test_change_page_links_to_try_it(admin_client, calc_agent):
    html = admin_client.get(reverse("admin:agents_app_agent_change", args=[calc_agent.pk])).content.decode()
    assert f'href="{try_url(calc_agent)}"' in html


def test_try_it_runs_the_agent_and_shows_tools_metrics_and_run(admin_client, calc_agent, staff_user):
    page = admin_client.get(try_url(calc_agent))
    assert page.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in page.content.decode()

    response = admin_client.post(try_url(calc_agent), {"message": "what is 6*7?"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "calculator returned 42" in html
    run = Run.objects.get()
    assert run.status == Run.Status.COMPLETED and run.user == staff_user and run.agent == calc_agent
    assert run.output == "[offline demo model] I used my tools: calculator returned 42."
    tools = html[html.index('id="try-tools"') :]
    assert "<code>calculator</code>" in tools and "6*7" in tools and "<code>42</code>" in tools
    metrics = html[html.index('id="try-metrics"') :]
    assert f'<td class="num">{run.total_tokens}</td>' in metrics and " s</td>" in metrics
    assert reverse("admin:sessions_app_run_change", args=[run.pk]) in html
    assert f'name="session_id" value="{run.session_id}"' in html


def test_a_second_try_continues_the_session(admin_client, calc_agent):
    first = admin_client.post(try_url(calc_agent), {"message": "what is 6*7?"})
    session_id = Run.objects.get().session_id
    assert "Continue this conversation" in first.content.decode()

    second = admin_client.post(try_url(calc_agent), {"message": "and hello", "session_id": str(session_id)})
    assert second.status_code == 200
    html = second.content.decode()
    assert Session.objects.count() == 1
    assert Run.objects.filter(session_id=session_id).count() == 2
    assert "Earlier in this conversation" in html and "what is 6*7?" in html
    assert "Earlier in this session you said" in html  # the model saw the history

    fresh = admin_client.post(try_url(calc_agent), {"message": "hello again"})
    assert fresh.status_code == 200
    assert Session.objects.count() == 2


def test_try_it_with_someone_elses_session_starts_no_run_in_it(admin_client, calc_agent):
    other = UserFactory(username="bob")
    foreign = Session.objects.create(user=other, agent=calc_agent, name="bob's")
    response = admin_client.post(try_url(calc_agent), {"message": "hi", "session_id": str(foreign.pk)})
    assert response.status_code == 200
    assert "That conversation no longer exists" in response.content.decode()
    assert not Run.objects.exists()


def test_an_empty_message_is_a_form_error(admin_client, calc_agent):
    response = admin_client.post(try_url(calc_agent), {"message": "   "})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not Run.objects.exists()


def test_try_it_shows_a_failed_run(admin_client):
    agent = AgentFactory(
        output_schema={"type": "object", "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 3}}}
    )
    response = admin_client.post(try_url(agent), {"message": "hi"})
    assert response.status_code == 200
    html = response.content.decode()
    run = Run.objects.get()
    assert run.status == Run.Status.ERROR
    assert f"<code>{run.error_type}</code>" in html and "The run failed" in html
    assert reverse("admin:sessions_app_run_change", args=[run.pk]) in html


def test_an_inactive_agent_shows_a_message_and_does_not_run(admin_client):
    agent = AgentFactory(is_active=False)
    page = admin_client.get(try_url(agent)).content.decode()
    assert "This agent is inactive, so it refuses runs." in page
    assert 'id="try_form"' not in page
    response = admin_client.post(try_url(agent), {"message": "hi"})
    assert response.status_code == 200
    assert not Run.objects.exists()


def test_try_it_needs_staff(client, calc_agent):
    login = reverse("admin:login")
    response = client.get(try_url(calc_agent))
    assert response.status_code == 302 and response["Location"].startswith(login)
    client.force_login(UserFactory(username="plain"))
    for response in (client.get(try_url(calc_agent)), client.post(try_url(calc_agent), {"message": "what is 6*7?"})):
        assert response.status_code == 302 and response["Location"].startswith(login)
    assert not Run.objects.exists()


def test_try_it_is_csrf_protected(staff_user, calc_agent):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    assert client.post(try_url(calc_agent), {"message": "what is 6*7?"}).status_code == 403
    assert not Run.objects.exists()


def test_try_it_for_a_missing_agent_redirects(admin_client):
    response = admin_client.get(reverse("admin:agents_app_agent_try", args=[999_999]))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


# ---- runs and messages are read-only records -------------------------------------------------


def test_runs_and_messages_cannot_be_added_or_changed(admin_client, calc_agent):
    admin_client.post(try_url(calc_agent), {"message": "what is 6*7?"})
    run = Run.objects.get()
    message = Message.objects.filter(run=run).first()
    assert admin_client.get(reverse("admin:sessions_app_run_changelist") + "add/").status_code in (302, 403, 404)
    assert admin_client.get(reverse("admin:sessions_app_run_changelist")).context["has_add_permission"] is False
    change = admin_client.get(reverse("admin:sessions_app_run_change", args=[run.pk]))
    html = change.content.decode()
    assert 'name="_save"' not in html and 'name="input"' not in html
    assert "calculator returned 42" in html and "6*7" in html  # messages inline, read-only
    assert admin_client.post(reverse("admin:sessions_app_run_change", args=[run.pk]), {"input": "x"}).status_code == 403
    run.refresh_from_db()
    assert run.input == "what is 6*7?"
    message_page = admin_client.get(reverse("admin:sessions_app_message_change", args=[message.pk])).content.decode()
    assert 'name="_save"' not in message_page


def test_staff_can_delete_a_run(admin_client, calc_agent):
    admin_client.post(try_url(calc_agent), {"message": "what is 6*7?"})
    run = Run.objects.get()
    url = reverse("admin:sessions_app_run_delete", args=[run.pk])
    assert admin_client.get(url).status_code == 200
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not Run.objects.exists() and not Message.objects.exists()


def test_saving_an_agent_with_memory_settings_and_an_initial_state(admin_client):
    model = ModelConfigFactory()
    url = reverse("admin:agents_app_agent_add")
    bad = admin_client.post(url, agent_post(model, initial_session_state="[1, 2]"))
    assert bad.status_code == 200 and "must be a JSON object" in bad.content.decode()
    response = admin_client.post(
        url,
        agent_post(
            model,
            initial_session_state='{"cart": []}',
            memory_mode="automatic",
            memory_scope="agent",
            session_summaries="on",
            memory_model=model.pk,
        ),
    )
    assert response.status_code == 302, response.content.decode()
    agent = Agent.objects.get(slug="support-bot")
    assert agent.initial_session_state == {"cart": []}
    assert (agent.memory_mode, agent.memory_scope, agent.session_summaries, agent.memory_model) == (
        "automatic",
        "agent",
        True,
        model,
    )
    # Where our memory hooks run, and the busy-session policy, are on the page too.
    change = reverse("admin:agents_app_agent_change", args=[agent.pk])
    page = admin_client.get(change).content.decode()
    assert 'name="memory_hook_mode"' in page and 'name="summary_hook_mode"' in page
    assert 'name="busy_session_policy"' in page
    posted = agent_post(
        model,
        memory_mode="automatic",
        memory_hook_mode="inline",
        summary_hook_mode="background",
        busy_session_policy="interrupt",
    )
    assert admin_client.post(change, posted).status_code == 302
    agent.refresh_from_db()
    assert (agent.memory_hook_mode, agent.summary_hook_mode, agent.busy_session_policy) == (
        "inline",
        "background",
        "interrupt",
    )
    assert agent.initial_session_state == {}
    bad = admin_client.post(change, {**posted, "busy_session_policy": "wait"})
    assert bad.status_code == 200 and "Select a valid choice" in bad.content.decode()
