"""The three apps dropped into an existing Django site, as docs/deployment.md ("Add the apps to an
existing Django site") says: build the wheel, install it (with its dependencies) into a fresh venv,
write a separate project there with its own settings, a custom user model, its own URL prefix and
ASGI routing, migrate, serve it under daphne and run an agent over HTTP and over the websocket.

Slow (a venv and a package install): runs when AGENTOS_EMBED_TEST=1 or in CI (CI=true)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
APPS = ("agents_app", "sessions_app", "telemetry_app")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(400),
    pytest.mark.skipif(
        os.environ.get("AGENTOS_EMBED_TEST") != "1" and os.environ.get("CI") != "true",
        reason="builds a wheel and installs it into a new venv: set AGENTOS_EMBED_TEST=1 (always on in CI)",
    ),
]

SETTINGS = """
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "host-site-test-key-0123456789-0123456789-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "channels",
    "accounts",
    "agents_app",
    "sessions_app",
    "telemetry_app",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "hostsite.urls"
ASGI_APPLICATION = "hostsite.asgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "host.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
USE_TZ = True
STATIC_URL = "static/"

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "agents_app.authentication.BearerOrTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
# Every key is optional (defaults in sessions_app/conf.py and telemetry_app/conf.py).
AGENTOS = {"MAX_MESSAGE_CHARS": 8000}
# Background hooks: Celery's in-memory broker and a worker thread in each server process.
CELERY_BROKER_URL = "memory://"
"""

URLS = """
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("ai/", include("agents_app.urls")),
    path("ai/", include("sessions_app.urls")),
    path("ai/", include("agents_app.page_urls")),
]
"""

ASGI = """
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from agents_app.routing import websocket_urlpatterns  # noqa: E402
from agents_app.ws_auth import AllowedHostsOriginValidator  # noqa: E402
from sessions_app.affinity import pin_to_one_cpu  # noqa: E402
from sessions_app.asgi import freeze_startup_objects, pooled_sync_threads  # noqa: E402
from sessions_app.conf import agentos_settings  # noqa: E402

pin_to_one_cpu(agentos_settings.CPU_AFFINITY)  # AGENTOS["CPU_AFFINITY"]: "" does nothing

application = ProtocolTypeRouter(
    {
        "http": pooled_sync_threads(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

freeze_startup_objects("hostsite.urls", "agents_app.providers.openai_compat")  # last
"""

MANAGE = """
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

CELERY = """
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostsite.settings")
app = Celery("hostsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
"""

ACCOUNTS_MODELS = """
from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    team = models.CharField(max_length=50, blank=True)
"""

SETUP = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from agents_app.models import Agent, ModelConfig

User = get_user_model()
assert User._meta.label == "accounts.User", User._meta.label
from agents_app.tasks import hook_execute_task
assert hook_execute_task.app.main == "hostsite", hook_execute_task.app.main
assert hook_execute_task.app.conf.broker_url == "memory://", hook_execute_task.app.conf.broker_url
user = User.objects.create_user(username="host", password="pw-host-1234", team="blue")
model = ModelConfig.objects.create(name="offline", provider="offline", model_id="offline-demo")
Agent.objects.create(slug="helper", name="Helper", model=model, instructions="Help.", tools=["calculator"])
print("TOKEN=" + Token.objects.create(user=user).key)
"""

ANSWER = "[offline demo model] I used my tools: calculator returned 42."


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (built,) = out.glob("agentos_django-*.whl")
    return built


@pytest.fixture(scope="module")
def host(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("host")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    site = tmp / "site"
    _write(site / "manage.py", MANAGE)
    _write(site / "hostsite" / "__init__.py", "from hostsite.celery import app as celery_app  # noqa: F401\n")
    _write(site / "hostsite" / "celery.py", CELERY)
    _write(site / "hostsite" / "settings.py", SETTINGS)
    _write(site / "hostsite" / "urls.py", URLS)
    _write(site / "hostsite" / "asgi.py", ASGI)
    _write(site / "accounts" / "__init__.py", "")
    _write(site / "accounts" / "models.py", ACCOUNTS_MODELS)
    _write(site / "accounts" / "migrations" / "__init__.py", "")

    # Nothing of the repository on the path: the apps come from the installed wheel only.
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "PYTHONPATH"}}
    env["PYTHONDONTWRITEBYTECODE"] = "1"

    def manage(*args: str) -> str:
        done = subprocess.run([str(py), "manage.py", *args], cwd=site, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done.stdout

    manage("makemigrations", "accounts")
    manage("migrate", "--noinput")
    token = manage("shell", "-c", SETUP).split("TOKEN=")[1].strip()
    where = subprocess.run(
        [str(py), "-c", "import agents_app; print(agents_app.__file__)"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
    )

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serving(
        [str(venv / "bin" / "daphne"), "-b", "127.0.0.1", "-p", str(port), "hostsite.asgi:application"],
        cwd=site,
        env=env,
        probe_url=base + "/ai/chat/login/",
    ):
        yield {"base": base, "port": port, "token": token, "apps_file": where.stdout.strip(), "venv": venv}


def test_wheel_holds_the_three_apps_and_nothing_of_the_site(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {*APPS, "agentos_client", "agentos_django-0.1.0.dist-info"}, tops
    assert "agentos_client/py.typed" in names and "agentos_client/ws.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # Every file of the apps is in it: templates, static files, migrations, management commands.
    expected = {
        path.relative_to(ROOT).as_posix()
        for app in APPS
        for path in (ROOT / app).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert expected - set(names) == set()
    for needed in (
        "agents_app/templates/agents_app/chat.html",
        "agents_app/static/agents_app/chat.js",
        "agents_app/migrations/0001_initial.py",
        "sessions_app/migrations/0001_initial.py",
        "telemetry_app/migrations/0001_initial.py",
        "agents_app/management/commands/agentos_demo.py",
        "telemetry_app/templates/telemetry_app/dashboard.html",
    ):
        assert needed in names
    metadata = zipfile.ZipFile(wheel).read("agentos_django-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: Django" in metadata
    assert "Provides-Extra: redis" in metadata and "Provides-Extra: postgres" in metadata


def test_the_installed_client_runs_an_agent_of_the_host_site_without_importing_django(host):
    code = (
        "import sys; from agentos_client import Client; "
        f"c = Client({host['base']!r}, token={host['token']!r}, api_path='/ai'); "
        "r = c.run_agent('helper', 'what is 6*7?'); "
        "assert not [m for m in sys.modules if m.split('.')[0] in ('django', 'agents_app', 'sessions_app')]; "
        "print(r.status)"
    )
    done = subprocess.run([str(host["venv"] / "bin" / "python"), "-c", code], capture_output=True, text=True, cwd="/")
    assert (done.returncode, done.stdout.strip()) == (0, "completed"), done.stderr[-2000:]


def test_host_site_runs_an_agent_over_http(host):
    # The apps come from the venv's site-packages, not from this repository.
    assert str(host["venv"]) in host["apps_file"] and str(ROOT) not in host["apps_file"]
    r = httpx.post(
        host["base"] + "/ai/agents/helper/runs",
        json={"message": "what is 6*7?"},
        headers={"Authorization": f"Bearer {host['token']}"},
        timeout=20,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == ANSWER
    # The run is stored against the custom user model, under the host's URL prefix.
    r = httpx.get(
        host["base"] + f"/ai/runs/{body['run_id']}/", headers={"Authorization": f"Bearer {host['token']}"}, timeout=10
    )
    assert r.status_code == 200, r.text
    assert httpx.post(host["base"] + "/ai/agents/helper/runs", json={"message": "hi"}, timeout=10).status_code in (
        401,
        403,
    )


def test_host_site_chat_page_urls_follow_the_prefix(host):
    r = httpx.get(host["base"] + "/ai/chat/", timeout=10)
    assert r.status_code == 302
    assert r.headers["location"].startswith("/ai/chat/login/")


async def test_host_site_runs_an_agent_over_the_websocket(host):
    import websockets

    url = f"ws://127.0.0.1:{host['port']}/ws/agents/helper/?token={host['token']}"
    async with websockets.connect(url, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "run", "message": "what is 6*7?"}))
        events = []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=20))
            events.append(frame)
            if frame.get("event") in ("RunCompleted", "RunError", "Error"):
                break
    names = [e["event"] for e in events]
    assert names[0] == "RunStarted" and names[-1] == "RunCompleted", names
    assert "".join(e.get("content") or "" for e in events if e["event"] == "RunContent") == ANSWER
