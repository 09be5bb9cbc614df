"""Model API keys (issue 17, part 3): which key a model config sends (stored, else its environment
variable, else OPENAI_API_KEY for the openai provider), encryption at rest and its rotation (dedicated
keys and SECRET_KEY), `manage.py check`, the admin and the staff API, and the 0009 data step."""

from __future__ import annotations

import io
import logging
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from cryptography.fernet import Fernet
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client, override_settings
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents_app import secrets
from agents_app.models import Agent, ModelConfig
from tests.conftest import bearer
from tests.factories import ModelConfigFactory

pytestmark = pytest.mark.django_db

SECRET = "sk-live-DO-NOT-LEAK-7171"
ENV_NAME = "AGENTOS_TEST_MODEL_KEY"


def stored(config: Any) -> str:
    """The api_key column of a model config (or of the one with this name) as the database holds it."""
    column, value = ("name", config) if isinstance(config, str) else ("id", config.pk)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT api_key FROM agents_app_modelconfig WHERE {column} = %s", [value])
        return cursor.fetchone()[0]


def keys(*dedicated: bytes, **more: Any) -> override_settings:
    """Settings with these AGENTOS["ENCRYPTION_KEYS"] (and e.g. SECRET_KEY, SECRET_KEY_FALLBACKS)."""
    return override_settings(AGENTOS={**settings.AGENTOS, "ENCRYPTION_KEYS": [k.decode() for k in dedicated]}, **more)


def rotate_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("rotate_encryption_keys", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def key_checks() -> list[tuple[str, str]]:
    return [(m.id, m.msg) for m in checks.run_checks(tags=["agentos"])]


@pytest.fixture
def no_env_keys(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv(ENV_NAME, raising=False)
    return monkeypatch


# ---- which key reaches the model server --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_key_sent_is_the_stored_one_else_the_environments(asgi, token, scripted_model, no_env_keys):
    no_env_keys.setenv("OPENAI_API_KEY", "sk-from-openai-env")
    no_env_keys.setenv(ENV_NAME, "sk-from-named-env")

    async def sent_key(**config: Any) -> str:
        model = await ModelConfig.objects.acreate(
            name=f"m{len(scripted_model.requests)}",
            provider="openai",
            base_url=scripted_model.base_url,
            model_id="scripted-model",
            max_retries=0,
            **config,
        )
        agent = await Agent.objects.acreate(
            slug=f"a{model.pk}", name="A", model=model, instructions="You are a test agent."
        )
        scripted_model.push_text("ok")
        r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
        assert r.status_code == 200, r.text
        assert len(scripted_model.request_headers) == len(scripted_model.requests)
        return scripted_model.request_headers[-1]["authorization"]

    assert await sent_key(api_key_env=ENV_NAME) == "Bearer sk-from-named-env"
    assert await sent_key() == "Bearer sk-from-openai-env"  # the openai provider's default variable
    assert await sent_key(api_key=SECRET, api_key_env=ENV_NAME) == f"Bearer {SECRET}"  # a stored key wins
    no_env_keys.delenv("OPENAI_API_KEY")
    assert await sent_key() == "Bearer not-needed"  # keyless local servers (Ollama) keep working


@pytest.mark.django_db(transaction=True)
async def test_the_offline_demo_answers_with_no_key_and_no_warning(asgi, no_env_keys):
    await sync_to_async(call_command)("agentos_demo", stdout=io.StringIO())
    demo_token = (await Token.objects.aget(user__username="admin")).key
    r = await asgi.post("/api/agents/demo/runs", json={"message": "what is 6*7?"}, headers=bearer(demo_token))
    assert r.status_code == 200, r.text
    assert r.json()["content"] == "[offline demo model] I used my tools: calculator returned 42."
    assert await sync_to_async(key_checks)() == []


@pytest.mark.django_db(transaction=True)
async def test_a_run_logs_no_key(asgi, token, scripted_model, caplog):
    model = await ModelConfig.objects.acreate(
        name="logged", provider="openai", base_url=scripted_model.base_url, model_id="scripted-model", api_key=SECRET
    )
    agent = await Agent.objects.acreate(slug="logged", name="L", model=model, instructions="x")
    caplog.set_level(logging.DEBUG)
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert scripted_model.request_headers[-1]["authorization"] == f"Bearer {SECRET}"
    assert caplog.records  # the SDK and the engine did log at DEBUG
    assert SECRET not in caplog.text
    assert SECRET not in repr(model) and SECRET not in str(model)


# ---- encryption at rest ------------------------------------------------------------------------


def test_a_stored_key_is_encrypted_in_the_column_and_decrypts():
    config = ModelConfigFactory(name="keyed", provider="openai", api_key=SECRET)
    raw = stored(config)
    assert raw.startswith("enc:v1:") and SECRET not in raw
    assert ModelConfig.objects.get(pk=config.pk).api_key == SECRET
    # Saving again re-encrypts the clear text (a fresh token), never stores it in clear.
    config.refresh_from_db()
    config.save()
    assert stored(config).startswith("enc:v1:") and stored(config) != raw
    assert ModelConfigFactory(name="keyless").api_key == "" and stored(ModelConfig.objects.get(name="keyless")) == ""


def test_dumpdata_holds_the_token_and_loaddata_restores_the_key(tmp_path):
    config = ModelConfigFactory(name="keyed", provider="openai", api_key=SECRET)
    dump = tmp_path / "models.json"
    call_command("dumpdata", "agents_app.ModelConfig", output=str(dump), stdout=io.StringIO())
    text = dump.read_text()
    assert SECRET not in text and '"api_key": "enc:v1:' in text
    ModelConfig.objects.all().delete()
    call_command("loaddata", str(dump), stdout=io.StringIO())
    assert ModelConfig.objects.get(pk=config.pk).api_key == SECRET
    assert stored(config).startswith("enc:v1:")


def test_rotation_to_a_new_dedicated_key():
    old, new = Fernet.generate_key(), Fernet.generate_key()
    with keys(old):
        config = ModelConfigFactory(name="keyed", provider="openai", api_key=SECRET)
    before = stored(config)
    assert Fernet(old).decrypt(before.removeprefix("enc:v1:").encode()).decode() == SECRET

    with keys(new, old):
        assert rotate_command("--dry-run") == ("1 stored value(s) would be re-encrypted under the newest key.\n", "")
        assert stored(config) == before
        assert rotate_command() == ("Re-encrypted 1 stored value(s) under the newest key.\n", "")
    after = stored(config)
    assert after != before and after.startswith("enc:v1:")
    assert Fernet(new).decrypt(after.removeprefix("enc:v1:").encode()).decode() == SECRET

    with keys(new):  # the old key removed: the rotated value still opens, the old one would not
        assert ModelConfig.objects.get(pk=config.pk).api_key == SECRET
        with pytest.raises(secrets.SecretUnreadable):
            secrets.decrypt(before)


def test_rotation_after_a_secret_key_change():
    with keys(SECRET_KEY="old-secret-key-" + "o" * 40):
        config = ModelConfigFactory(name="keyed", provider="openai", api_key=SECRET)
    before = stored(config)
    with keys(SECRET_KEY="new-secret-key-" + "n" * 40, SECRET_KEY_FALLBACKS=["old-secret-key-" + "o" * 40]):
        assert ModelConfig.objects.get(pk=config.pk).api_key == SECRET  # the fallback still opens it
        assert rotate_command() == ("Re-encrypted 1 stored value(s) under the newest key.\n", "")
    assert stored(config) != before
    with keys(SECRET_KEY="new-secret-key-" + "n" * 40, SECRET_KEY_FALLBACKS=[]):
        assert ModelConfig.objects.get(pk=config.pk).api_key == SECRET
        with pytest.raises(secrets.SecretUnreadable):
            secrets.decrypt(before)


def test_rotation_encrypts_a_clear_text_value():
    config = ModelConfigFactory(name="old", provider="openai")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE agents_app_modelconfig SET api_key = %s WHERE id = %s", ["sk-clear-from-before", config.pk]
        )
    assert stored(config) == "sk-clear-from-before"  # as a row from before 0009 holds it
    assert ModelConfig.objects.get(pk=config.pk).api_key == "sk-clear-from-before"
    assert rotate_command() == ("Re-encrypted 1 stored value(s) under the newest key.\n", "")
    assert (
        stored(config).startswith("enc:v1:") and ModelConfig.objects.get(pk=config.pk).api_key == "sk-clear-from-before"
    )


def test_a_value_no_key_opens_stops_the_rotation_and_changes_nothing(client: Client, staff_user, no_env_keys):
    lost, new = Fernet.generate_key(), Fernet.generate_key()
    with keys(lost):
        orphan = ModelConfigFactory(name="orphan", provider="openai", api_key=SECRET)
    fine = ModelConfigFactory(name="fine", provider="openai", api_key="sk-fine")
    raw = (stored(orphan), stored(fine))

    with keys(new):
        for args in [(), ("--dry-run",)]:
            err = io.StringIO()
            with pytest.raises(CommandError) as failed:
                call_command("rotate_encryption_keys", *args, stdout=io.StringIO(), stderr=err)
            assert failed.value.returncode == 1
            assert str(failed.value).startswith("1 stored value(s) cannot be decrypted with the configured keys;")
            assert err.getvalue() == (
                f"No configured key decrypts the stored value of agents_app.ModelConfig {orphan.pk} (api_key).\n"
            )
            assert (stored(orphan), stored(fine)) == raw

        assert key_checks() == [
            (
                "agentos.W002",
                "The stored API key of model config 'orphan' cannot be decrypted with the configured keys; "
                "it reads as empty.",
            )
        ]
        config = ModelConfig.objects.get(pk=orphan.pk)
        assert (config.api_key, secrets.resolve_api_key(config), secrets.key_source(config)) == (
            "",
            "",
            "stored (unreadable)",
        )
        # Saving the row (here through the admin, key left blank) keeps the token for when the key is back.
        client.force_login(staff_user)
        url = reverse("admin:agents_app_modelconfig_change", args=[orphan.pk])
        page = client.get(url).content.decode()
        assert "A key is stored but cannot be decrypted with the configured keys" in page
        post = {
            "name": "orphan",
            "provider": "openai",
            "base_url": "",
            "model_id": "renamed-model",
            "api_key": "",
            "api_key_env": "",
            "temperature": "",
            "max_tokens": "",
            "timeout_seconds": "5",
            "max_retries": "0",
            "input_price": "0",
            "cached_input_price": "",
            "output_price": "0",
        }
        assert client.post(url, post).status_code == 302
        assert stored(orphan) == raw[0]
        assert ModelConfig.objects.get(pk=orphan.pk).model_id == "renamed-model"

    with keys(new, lost):
        assert ModelConfig.objects.get(pk=orphan.pk).api_key == SECRET


def test_generate_prints_a_new_key_and_changes_nothing():
    config = ModelConfigFactory(name="keyed", provider="openai", api_key=SECRET)
    before = stored(config)
    out, err = rotate_command("--generate")
    assert err == "" and out.endswith("\n")
    Fernet(out.strip())  # a valid key
    assert out.strip() != rotate_command("--generate")[0].strip()
    assert stored(config) == before


def test_an_invalid_dedicated_key_is_a_check_error_and_stops_the_command():
    with override_settings(AGENTOS={**settings.AGENTOS, "ENCRYPTION_KEYS": [Fernet.generate_key().decode(), "nope"]}):
        assert key_checks() == [
            ("agentos.E001", 'AGENTOS["ENCRYPTION_KEYS"][1] is not a Fernet key (32 url-safe base64-encoded bytes).')
        ]
        with pytest.raises(CommandError, match=r'^AGENTOS\["ENCRYPTION_KEYS"\]\[1\] is not a Fernet key'):
            rotate_command()
        with pytest.raises(ImproperlyConfigured, match=r'^AGENTOS\["ENCRYPTION_KEYS"\]\[1\] is not a Fernet key'):
            secrets.encrypt(SECRET)


def test_the_environment_variables_comma_separated_form_is_accepted():
    first, second = Fernet.generate_key(), Fernet.generate_key()
    with override_settings(AGENTOS={**settings.AGENTOS, "ENCRYPTION_KEYS": f" {first.decode()}, {second.decode()},"}):
        assert secrets.configured_keys()[:2] == [first, second]
        assert secrets.check_keys() is None


# ---- manage.py check -----------------------------------------------------------------------------


def test_check_warns_about_openai_configs_with_no_key(no_env_keys):
    ModelConfigFactory(name="default-url", provider="openai", base_url="")
    ModelConfigFactory(name="openai-url", provider="openai", base_url="https://api.openai.com/v1")
    ModelConfigFactory(name="named-env", provider="openai", api_key_env=ENV_NAME)
    ModelConfigFactory(name="local", provider="openai", base_url="http://localhost:11434/v1")
    ModelConfigFactory(name="stored", provider="openai", api_key=SECRET)
    ModelConfigFactory(name="offline", provider="offline")
    missing = "Model config {!r} needs an API key and has none: no key is stored and {} is unset."
    assert key_checks() == [
        ("agentos.W001", missing.format("default-url", "OPENAI_API_KEY")),
        ("agentos.W001", missing.format("named-env", ENV_NAME)),
        ("agentos.W001", missing.format("openai-url", "OPENAI_API_KEY")),
    ]
    (first,) = [m for m in checks.run_checks(tags=["agentos"]) if "default-url" in m.msg]
    assert first.hint == "Set OPENAI_API_KEY in the environment, or store a key in the admin (Agents > Model configs)."

    no_env_keys.setenv("OPENAI_API_KEY", "sk-env")
    assert key_checks() == [("agentos.W001", missing.format("named-env", ENV_NAME))]
    no_env_keys.setenv(ENV_NAME, "sk-named")
    assert key_checks() == []


# ---- admin and staff API -------------------------------------------------------------------------


def test_admin_shows_key_source_env_name_and_prices_but_never_the_key(client: Client, staff_user, no_env_keys):
    keyed = ModelConfigFactory(name="keyed", provider="openai", api_key=SECRET, input_price=Decimal("2.5"))
    ModelConfigFactory(name="from-env", provider="openai", api_key_env=ENV_NAME)
    ModelConfigFactory(name="default-env", provider="openai")
    ModelConfigFactory(name="offline", provider="offline")
    no_env_keys.setenv(ENV_NAME, "sk-set")
    client.force_login(staff_user)

    listing = client.get(reverse("admin:agents_app_modelconfig_changelist")).content.decode()
    cells = [
        '<td class="field-key_source">stored</td>',
        f'<td class="field-key_source">env: {ENV_NAME} (set)</td>',
        '<td class="field-key_source">env: OPENAI_API_KEY (unset)</td>',
        '<td class="field-key_source">none</td>',
    ]
    assert [listing.count(cell) for cell in cells] == [1, 1, 1, 1]

    page = client.get(reverse("admin:agents_app_modelconfig_change", args=[keyed.pk])).content.decode()
    assert SECRET not in page and "enc:v1:" not in page
    assert "Prices (per million tokens)" in page
    for field in ["api_key_env", "input_price", "cached_input_price", "output_price"]:
        assert f'name="{field}"' in page
    assert 'name="input_price" value="2.500000"' in page


def test_staff_api_takes_env_name_and_prices_and_returns_key_source_not_the_key(staff_token, no_env_keys):
    api = APIClient()
    api.credentials(**{"HTTP_" + k.upper(): v for k, v in bearer(staff_token).items()})
    created = api.post(
        "/api/models/",
        {
            "name": "priced",
            "provider": "openai",
            "model_id": "gpt-4o-mini",
            "api_key_env": ENV_NAME,
            "input_price": "0.15",
            "cached_input_price": "0.075",
            "output_price": "0.6",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert {k: body[k] for k in ["api_key_env", "key_source", "has_api_key", "input_price", "cached_input_price"]} == {
        "api_key_env": ENV_NAME,
        "key_source": f"env: {ENV_NAME} (unset)",
        "has_api_key": False,
        "input_price": "0.150000",
        "cached_input_price": "0.075000",
    }
    assert body["output_price"] == "0.600000" and "api_key" not in body

    url = f"/api/models/{body['id']}/"
    updated = api.patch(url, {"api_key": SECRET}, format="json")
    assert updated.status_code == 200 and updated.json()["key_source"] == "stored"
    for response in [updated, api.get(url), api.get("/api/models/")]:
        assert SECRET not in response.content.decode() and "enc:v1:" not in response.content.decode()
    assert stored(ModelConfig.objects.get(name="priced")).startswith("enc:v1:")

    bad = api.patch(url, {"api_key_env": "not a name", "input_price": "-1"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["api_key_env"] == ["An environment variable name, e.g. OPENAI_API_KEY."]
    assert bad.json()["input_price"] == ["Ensure this value is greater than or equal to 0."]


# ---- migration 0009 ------------------------------------------------------------------------------


def migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_migration_0009_encrypts_clear_text_keys_and_checks_skip_the_old_schema():
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    old = migrate([("agents_app", "0008_remove_agent_hook_json")])
    try:
        OldModelConfig = old.get_model("agents_app", "ModelConfig")
        clear = OldModelConfig.objects.create(name="clear", provider="openai", model_id="m", api_key=SECRET)
        OldModelConfig.objects.create(name="keyless", provider="offline", model_id="offline-demo")
        assert stored(clear) == SECRET
        assert key_checks() == []  # the new columns are missing: the database checks are skipped

        migrate([("agents_app", "0009_model_layer")])
        assert stored(clear).startswith("enc:v1:") and SECRET not in stored(clear)
        assert stored("keyless") == ""
    finally:
        migrate(latest)
    assert ModelConfig.objects.get(name="clear").api_key == SECRET
