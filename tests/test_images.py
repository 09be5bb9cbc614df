"""Images with a run's message, through the real stack: REST (JSON base64, data: URLs, URLs,
multipart), agno's `/os` form `files`, the websocket; the scripted model server receives them as
OpenAI image parts. Refused images (413, 415, 400) leave no run, session or file behind; stored
images reach their owner (and staff) only through the authenticated image endpoint."""

from __future__ import annotations

import asyncio
import base64
import struct
import zlib
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from asgiref.sync import sync_to_async
from django.core.files.storage import FileSystemStorage

from sessions_app.models import Message, Run, RunImage, Session
from tests.conftest import bearer, parse_sse
from tests.factories import TeamFactory, TeamMemberFactory, WorkflowFactory, WorkflowStepFactory, attach_hooks
from tests.test_websocket import connect, until_terminal

pytestmark = pytest.mark.django_db(transaction=True)


def png(width: int = 2, height: int = 1) -> bytes:
    """A real PNG (red pixels), so a browser can show it too."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PNG = png()
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + b"\x00" * 32
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L" + b"\x00" * 14
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_url(data: bytes, mime_type: str = "image/png") -> str:
    return f"data:{mime_type};base64,{b64(data)}"


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    """This test's own MEDIA_ROOT, to count the files written."""
    settings.MEDIA_ROOT = str(tmp_path)
    return tmp_path


def files_in(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def user_message(scripted_model: Any) -> dict[str, Any]:
    return scripted_model.requests[-1]["messages"][-1]


async def counts() -> tuple[int, int, int]:
    return await Run.objects.acount(), await Session.objects.acount(), await RunImage.objects.acount()


# ---- reaching the model ----------------------------------------------------------------------------


async def test_json_images_reach_the_model_as_image_parts_and_are_stored(
    asgi, agent, token, scripted_model, media, user
):
    scripted_model.push_text("A red square and a photo.")
    body = {
        "message": "what is in these?",
        "images": [
            {"url": "https://example.com/cat.jpg", "detail": "low"},
            {"data": b64(PNG), "mime_type": "image/png", "name": "red.png", "detail": "high"},
            {"url": data_url(GIF, "image/gif")},
        ],
    }
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json=body, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert user_message(scripted_model) == {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is in these?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": data_url(PNG), "detail": "high"}},
            {"type": "image_url", "image_url": {"url": data_url(GIF, "image/gif")}},
        ],
    }
    run_id = r.json()["run_id"]
    rows = [
        (i.position, i.url, i.name, i.mime_type, i.size, i.detail, bool(i.file))
        async for i in RunImage.objects.filter(run_id=run_id).order_by("position")
    ]
    assert rows == [
        (0, "https://example.com/cat.jpg", "", "image/jpeg", 0, "low", False),
        (1, "", "red.png", "image/png", len(PNG), "high", True),
        (2, "", "", "image/gif", len(GIF), "", True),
    ]
    day_dir = f"agentos/images/{(await Run.objects.aget(pk=run_id)).created_at:%Y/%m/%d}/{run_id}"
    assert files_in(media) == [f"{day_dir}/1.png", f"{day_dir}/2.gif"]
    assert (media / day_dir / "1.png").read_bytes() == PNG
    # The stored message is text (the history the next run sends stays text).
    stored = [m async for m in Message.objects.filter(run_id=run_id).values_list("role", "content")]
    assert stored == [("user", "what is in these?"), ("assistant", "A red square and a photo.")]


async def test_history_stays_text_and_only_the_new_message_carries_images(asgi, agent, token, scripted_model, media):
    scripted_model.push_text("red")
    first = await asgi.post(
        f"/api/agents/{agent.slug}/runs",
        json={"message": "colour?", "images": [{"data": b64(PNG)}]},
        headers=bearer(token),
    )
    scripted_model.push_text("still red")
    second = await asgi.post(
        f"/api/agents/{agent.slug}/runs",
        json={"message": "sure?", "session_id": first.json()["session_id"]},
        headers=bearer(token),
    )
    assert second.status_code == 200
    sent = [m for m in scripted_model.requests[-1]["messages"] if m["role"] != "system"]
    assert sent == [
        {"role": "user", "content": "colour?"},
        {"role": "assistant", "content": "red"},
        {"role": "user", "content": "sure?"},
    ]


async def test_multipart_uploads_reach_the_model_streamed(asgi, agent, token, scripted_model, media):
    scripted_model.push_text("two images")
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs",
        data={"message": "compare", "stream": "true", "image_detail": "auto"},
        files=[("images", ("a.png", PNG, "image/png")), ("images", ("b.webp", WEBP, "application/octet-stream"))],
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    frames = parse_sse(r.text)
    assert [name for name, _ in frames][-1] == "RunCompleted"
    assert user_message(scripted_model)["content"] == [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": data_url(PNG), "detail": "auto"}},
        {"type": "image_url", "image_url": {"url": data_url(WEBP, "image/webp"), "detail": "auto"}},
    ]
    rows = [(i.name, i.mime_type, i.size) async for i in RunImage.objects.order_by("position")]
    assert rows == [("a.png", "image/png", len(PNG)), ("b.webp", "image/webp", len(WEBP))]
    assert len(files_in(media)) == 2


@pytest.fixture
def team(openai_model: Any, agent: Any) -> Any:
    team = TeamFactory(slug="crew", model=openai_model, mode="coordinate")
    TeamMemberFactory(team=team, agent=agent)
    return team


@pytest.fixture
def workflow(offline_agent: Any) -> Any:
    flow = WorkflowFactory(slug="flow")
    WorkflowStepFactory(workflow=flow, name="ask", kind="agent", agent=offline_agent, order=0)
    return flow


async def test_a_team_leader_gets_the_images(asgi, team, token, scripted_model, media):
    scripted_model.push_text("The team saw it.")
    r = await asgi.post(
        "/api/teams/crew/runs", json={"message": "look", "images": [{"data": b64(JPEG)}]}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text
    assert user_message(scripted_model)["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": data_url(JPEG, "image/jpeg")}},
    ]
    assert await RunImage.objects.filter(run_id=r.json()["run_id"]).acount() == 1


async def test_a_workflow_refuses_images_and_stores_nothing(asgi, workflow, token, media):
    r = await asgi.post(
        "/api/workflows/flow/runs", json={"message": "look", "images": [{"data": b64(PNG)}]}, headers=bearer(token)
    )
    assert r.status_code == 400
    assert r.json() == {
        "detail": "Workflows take text only: send images to an agent or a team.",
        "code": "images_not_accepted",
    }
    assert await counts() == (0, 0, 0) and files_in(media) == []


async def test_the_offline_model_says_it_got_images(asgi, offline_agent, token, media):
    r = await asgi.post(
        f"/api/agents/{offline_agent.slug}/runs",
        json={"message": "hello", "images": [{"data": b64(PNG)}, {"url": "https://example.com/x.png"}]},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    assert r.json()["content"].startswith(
        '[offline demo model] You said: "hello". You sent 2 images, which I cannot see.'
    )


async def test_a_pre_hook_that_rewrites_the_input_keeps_the_images(asgi, agent, token, scripted_model, media):
    await sync_to_async(attach_hooks)(agent, pre=["redact_pii"])
    scripted_model.push_text("ok")
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs",
        json={"message": "mail me at ada@example.com", "images": [{"data": b64(PNG)}]},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    content = user_message(scripted_model)["content"]
    assert content[1] == {"type": "image_url", "image_url": {"url": data_url(PNG)}}
    assert content[0] == {"type": "text", "text": "mail me at [REDACTED:email]"}


# ---- refused: nothing stored -------------------------------------------------------------------

TOO_LARGE = PNG + b"\x00" * (10 * 1024 * 1024 + 1 - len(PNG))  # the default limit, plus one byte


@pytest.mark.parametrize(
    ("images", "status", "code", "detail"),
    [
        ([{"data": b64(TOO_LARGE)}], 413, "image_too_large", "Image 0 is 10485761 bytes; the limit is 10485760 bytes."),
        (
            [{"data": b64(PNG)}, {"data": b64(PDF), "mime_type": "image/png"}],
            415,
            "unsupported_media_type",
            "Image 1 is not an image of an accepted type (png, jpeg, gif, webp): its bytes are none of these formats.",
        ),
        (
            [{"url": "https://example.com/report.pdf"}],
            415,
            "unsupported_media_type",
            "Image 0: the URL names a application/pdf file; accepted types: png, jpeg, gif, webp.",
        ),
        ([{"data": "not base64!"}], 400, "invalid_image", "Image 0: 'data' is not valid base64."),
        (
            [{"url": "ftp://example.com/a.png"}],
            400,
            "invalid_image",
            "Image 0: 'url' must be an http(s) URL, or a data: URL.",
        ),
        (
            [{"url": "javascript:alert(1)"}],
            400,
            "invalid_image",
            "Image 0: 'url' must be an http(s) URL, or a data: URL.",
        ),
        (
            [{"url": "data:image/png,rawbytes"}],
            400,
            "invalid_image",
            "Image 0: a data: URL must be base64 (data:image/png;base64,...).",
        ),
        (
            [{"url": "https://example.com/a.png", "data": b64(PNG)}],
            400,
            "invalid_image",
            "Image 0 must have either 'url' or 'data'.",
        ),
        (
            [{"data": b64(PNG), "detail": "ultra"}],
            400,
            "invalid_image",
            "Image 0: 'detail' must be one of auto, low, high.",
        ),
        (
            [{"data": b64(PNG), "size": 3}],
            400,
            "invalid_image",
            "Image 0: unknown keys size; the keys are data, detail, mime_type, name, url.",
        ),
        ([{"data": b64(PNG)}] * 5, 400, "too_many_images", "A message may carry at most 4 images; this one has 5."),
        ("https://example.com/a.png", 400, "invalid_image", "'images' must be a list of objects."),
    ],
    ids=[
        "too large",
        "not an image",
        "a URL to a pdf",
        "bad base64",
        "ftp URL",
        "javascript URL",
        "data URL not base64",
        "url and data",
        "bad detail",
        "unknown key",
        "too many",
        "not a list",
    ],
)
async def test_refused_json_images_store_nothing(
    asgi, agent, token, scripted_model, media, images, status, code, detail
):
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs", json={"message": "look", "images": images}, headers=bearer(token)
    )
    assert r.status_code == status, r.text[:300]
    body = r.json()
    assert (body["code"], body["detail"]) == (code, detail)
    assert await counts() == (0, 0, 0) and files_in(media) == []
    assert scripted_model.requests == []


async def test_a_body_over_the_limit_besides_its_images_is_413(asgi, agent, token, settings, media):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs",
        json={"message": "look", "session_id": None, "padding": "x" * limit, "images": [{"data": b64(PNG)}]},
        headers=bearer(token),
    )
    assert r.status_code == 413
    assert r.json() == {
        "detail": f"The request body is larger than the limit of {limit} bytes (besides its images).",
        "code": "request_too_large",
    }
    assert await counts() == (0, 0, 0) and files_in(media) == []


@pytest.mark.parametrize(
    ("files", "data", "status", "code", "detail"),
    [
        (
            [("images", ("big.png", TOO_LARGE, "image/png"))],
            {},
            413,
            "image_too_large",
            "Image 0 is over the limit of 10485760 bytes.",
        ),
        (
            [("images", ("a.png", PNG, "image/png")), ("images", ("doc.png", PDF, "image/png"))],
            {},
            415,
            "unsupported_media_type",
            "Image 1 is not an image of an accepted type (png, jpeg, gif, webp): its bytes are none of these formats.",
        ),
        (
            [("images", (f"{i}.png", PNG, "image/png")) for i in range(5)],
            {},
            400,
            "too_many_images",
            "A message may carry at most 4 images.",
        ),
        (
            [("attachment", ("a.png", PNG, "image/png"))],
            {},
            400,
            "invalid_image",
            "Files go in the images field, not 'attachment'.",
        ),
        (
            [("images", ("a.png", PNG, "image/png"))],
            {"images": "https://example.com/a.png"},
            400,
            "invalid_image",
            "In a form, 'images' are file uploads; send images given by URL in a JSON body.",
        ),
        (
            [("images", ("a.png", PNG, "image/png"))],
            {"image_detail": "max"},
            400,
            "invalid_image",
            "Image 0: 'detail' must be one of auto, low, high.",
        ),
    ],
    ids=["too large", "not an image", "too many", "another field", "a URL in a form", "bad detail"],
)
async def test_refused_uploads_store_nothing(
    asgi, agent, token, scripted_model, media, files, data, status, code, detail
):
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs", data={"message": "look", **data}, files=files, headers=bearer(token)
    )
    assert r.status_code == status, r.text[:300]
    assert (r.json()["code"], r.json()["detail"]) == (code, detail)
    assert await counts() == (0, 0, 0) and files_in(media) == []
    assert scripted_model.requests == []


async def test_limits_come_from_the_settings(asgi, agent, token, settings, scripted_model, media):
    settings.AGENTOS = {**settings.AGENTOS, "IMAGE_MAX_BYTES": 100, "IMAGE_MAX_COUNT": 1, "IMAGE_TYPES": ["image/gif"]}
    url = f"/api/agents/{agent.slug}/runs"
    big = GIF + b"\x00" * 100
    answers = [
        await asgi.post(url, json={"message": "a", "images": [{"data": b64(big)}]}, headers=bearer(token)),
        await asgi.post(url, json={"message": "a", "images": [{"data": b64(GIF)}] * 2}, headers=bearer(token)),
        await asgi.post(url, json={"message": "a", "images": [{"data": b64(PNG[:90])}]}, headers=bearer(token)),
        await asgi.post(
            url, data={"message": "a"}, files=[("images", ("a.gif", big, "image/gif"))], headers=bearer(token)
        ),
    ]
    assert [(a.status_code, a.json()["code"]) for a in answers] == [
        (413, "image_too_large"),
        (400, "too_many_images"),
        (415, "unsupported_media_type"),
        (413, "image_too_large"),
    ]
    assert (
        answers[2].json()["detail"] == "Image 0 is not an image of an accepted type (gif): its bytes are a png image."
    )
    assert await counts() == (0, 0, 0) and files_in(media) == []
    scripted_model.push_text("a gif")
    ok = await asgi.post(url, json={"message": "a", "images": [{"data": b64(GIF)}]}, headers=bearer(token))
    assert ok.status_code == 200 and await counts() == (1, 1, 1)


class FailingStorage(FileSystemStorage):
    """A disk that fills up at the second image of a message."""

    def _save(self, name: str, content: Any) -> str:
        if "/1." in name:
            raise OSError("No space left on device")
        return super()._save(name, content)


async def test_a_storage_failure_leaves_no_run_and_no_file(asgi, agent, token, settings, media):
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "tests.test_images.FailingStorage"}}
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs",
        json={"message": "look", "images": [{"data": b64(PNG)}, {"data": b64(GIF)}]},
        headers=bearer(token),
    )
    assert r.status_code == 500 and r.json()["code"] == "internal_error"
    assert await counts() == (0, 0, 0) and files_in(media) == []


# ---- agno's /os form: `files` --------------------------------------------------------------------


async def test_agnos_files_upload_reaches_the_model(asgi, agent, token, scripted_model, media):
    scripted_model.push_text("I see a red image.")
    r = await asgi.post(
        f"/os/agents/{agent.slug}/runs",
        data={"message": "what is this?", "stream": "false"},
        files=[("files", ("red.png", PNG, "image/png"))],
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    assert r.json()["content"] == "I see a red image."
    assert user_message(scripted_model)["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": data_url(PNG)}},
    ]
    image = await RunImage.objects.aget(run_id=r.json()["run_id"])
    assert (image.name, image.mime_type, image.size) == ("red.png", "image/png", len(PNG))
    assert len(files_in(media)) == 1


@pytest.mark.parametrize(
    ("files", "data", "status", "body"),
    [
        (
            [("files", ("notes.pdf", PDF, "application/pdf"))],
            {},
            415,
            {
                "detail": "File 0 is not an image of an accepted type (png, jpeg, gif, webp): its bytes are none of "
                "these formats.",
                "code": "unsupported_media_type",
            },
        ),
        (
            [("files", ("big.png", TOO_LARGE, "image/png"))],
            {},
            413,
            {"detail": "Image 0 is over the limit of 10485760 bytes.", "code": "image_too_large"},
        ),
        (
            [("images", ("a.png", PNG, "image/png"))],
            {},
            422,
            {
                "detail": [
                    {"loc": ["body", "images"], "msg": "This server does not accept media inputs.", "type": "invalid"}
                ],
                "code": "validation_error",
            },
        ),
        (
            [],
            {"files": "https://example.com/a.png"},
            422,
            {
                "detail": [
                    {"loc": ["body", "files"], "msg": "This server does not accept media inputs.", "type": "invalid"}
                ],
                "code": "validation_error",
            },
        ),
    ],
    ids=["not an image", "too large", "agno's images field", "files as text"],
)
async def test_agnos_refused_files_store_nothing(asgi, agent, token, scripted_model, media, files, data, status, body):
    r = await asgi.post(
        f"/os/agents/{agent.slug}/runs",
        data={"message": "look", "stream": "false", **data},
        files=files or None,
        headers=bearer(token),
    )
    assert (r.status_code, r.json()) == (status, body)
    assert await counts() == (0, 0, 0) and files_in(media) == []
    assert scripted_model.requests == []


# ---- the websocket -------------------------------------------------------------------------------


async def test_a_websocket_frame_with_images_reaches_the_model(agent, token, scripted_model, media):
    scripted_model.push_text("Looks red.")
    comm = await connect(agent.slug, token=token)
    try:
        await comm.send_json_to(
            {"type": "run", "message": "colour?", "images": [{"data": b64(PNG), "name": "red.png"}], "id": 7}
        )
        frames = await until_terminal(comm)
        assert frames[-1]["event"] == "RunCompleted" and frames[-1]["content"] == "Looks red."
        assert user_message(scripted_model)["content"] == [
            {"type": "text", "text": "colour?"},
            {"type": "image_url", "image_url": {"url": data_url(PNG)}},
        ]
        rows = [(i.name, i.size) async for i in RunImage.objects.filter(run_id=frames[-1]["run_id"])]
        assert rows == [("red.png", len(PNG))]
        # A refused image is an Error frame; nothing is stored and the socket stays open.
        await comm.send_json_to({"type": "run", "message": "and this?", "images": [{"data": b64(PDF)}], "id": 8})
        error = await comm.receive_json_from(timeout=5)
        assert error == {
            "event": "Error",
            "error_type": "unsupported_media_type",
            "code": "unsupported_media_type",
            "content": "Image 0 is not an image of an accepted type (png, jpeg, gif, webp): its bytes are none of "
            "these formats.",
            "detail": "Image 0 is not an image of an accepted type (png, jpeg, gif, webp): its bytes are none of "
            "these formats.",
            "index": 0,
            "id": 8,
        }
        await comm.send_json_to({"type": "run", "message": "big", "images": [{"data": b64(TOO_LARGE)}]})
        error = await comm.receive_json_from(timeout=10)
        assert (error["code"], error["limit"]) == ("image_too_large", 10 * 1024 * 1024)
        assert await counts() == (1, 1, 1) and len(files_in(media)) == 1
    finally:
        await comm.disconnect()


async def test_a_long_message_beside_images_is_still_too_large_a_frame(agent, token, media):
    comm = await connect(agent.slug, token=token)
    try:
        await comm.send_json_to({"type": "run", "message": "x" * 70_000, "images": [{"data": b64(PNG)}]})
        error = await comm.receive_json_from(timeout=5)
        assert error["code"] == "frame_too_large"
        assert await counts() == (0, 0, 0)
    finally:
        await comm.disconnect()


# ---- reading them back ---------------------------------------------------------------------------


async def test_the_owner_and_staff_fetch_a_stored_image_others_get_404(
    asgi, agent, token, other_token, staff_token, scripted_model, media
):
    scripted_model.push_text("ok")
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs",
        json={
            "message": "look",
            "images": [{"data": b64(PNG), "name": "red.png"}, {"url": "https://example.com/a.jpg"}],
        },
        headers=bearer(token),
    )
    run_id = r.json()["run_id"]
    url = f"/api/runs/{run_id}/images/0"
    mine = await asgi.get(url, headers=bearer(token))
    assert mine.status_code == 200 and mine.content == PNG
    assert mine.headers["content-type"] == "image/png"
    assert mine.headers["content-disposition"] == 'inline; filename="red.png"'
    assert mine.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert (await asgi.get(url, headers=bearer(staff_token))).content == PNG
    theirs = await asgi.get(url, headers=bearer(other_token))
    assert (theirs.status_code, theirs.json()) == (404, {"detail": "No such image.", "code": "not_found"})
    assert (await asgi.get(url)).status_code == 401
    assert (await asgi.get(f"/api/runs/{run_id}/images/2", headers=bearer(token))).status_code == 404
    assert (await asgi.get(f"/api/runs/{run_id}/images/99999999999999999999", headers=bearer(token))).status_code == 404
    by_url = await asgi.get(f"/api/runs/{run_id}/images/1", headers=bearer(token))
    assert (by_url.status_code, by_url.headers["location"]) == (302, "https://example.com/a.jpg")

    listed = (await asgi.get(f"/api/runs/{run_id}/", headers=bearer(token))).json()["images"]
    assert listed == [
        {
            "position": 0,
            "name": "red.png",
            "mime_type": "image/png",
            "size": len(PNG),
            "detail": "",
            "uploaded": True,
            "url": f"http://testserver{url}",
        },
        {
            "position": 1,
            "name": "",
            "mime_type": "image/jpeg",
            "size": 0,
            "detail": "",
            "uploaded": False,
            "url": "https://example.com/a.jpg",
        },
    ]
    session = (await asgi.get(f"/api/sessions/{r.json()['session_id']}/", headers=bearer(token))).json()
    assert session["runs"][0]["images"] == listed


def test_the_admin_shows_a_runs_images_read_only(admin_client, offline_agent, staff_user, media):
    from agents_app.runs import run_events
    from sessions_app.images import images_from_json

    images = images_from_json([{"data": b64(PNG), "name": "red.png"}, {"url": "https://example.com/a.jpg"}])
    handle, _ = run_events("agent", offline_agent.slug, user=staff_user, message="look", images=images)
    page = admin_client.get(f"/admin/sessions_app/run/{handle.run_id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    thumbnail = f"/api/runs/{handle.run_id}/images/0"
    assert f'<img src="{thumbnail}" alt="red.png"' in html
    assert '<a href="https://example.com/a.jpg" rel="noopener noreferrer nofollow">' in html
    assert "/media/" not in html and 'name="images-0-name"' not in html  # read-only, never public media
    assert admin_client.get(thumbnail).content == PNG


async def test_deleting_a_session_deletes_its_image_files(asgi, agent, token, scripted_model, media):
    scripted_model.push_text("ok")
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs",
        data={"message": "look"},
        files=[("images", ("a.png", PNG, "image/png"))],
        headers=bearer(token),
    )
    assert len(files_in(media)) == 1
    deleted = await asgi.delete(f"/api/sessions/{r.json()['session_id']}/", headers=bearer(token))
    assert deleted.status_code == 204
    assert await counts() == (0, 0, 0) and files_in(media) == []


def test_deleting_runs_in_the_admin_deletes_their_image_files(admin_client, offline_agent, staff_user, media):
    from agents_app.runs import run_events
    from sessions_app.images import images_from_json

    handles = [
        run_events(
            "agent", offline_agent.slug, user=staff_user, message="look", images=images_from_json([{"data": b64(PNG)}])
        )[0]
        for _ in range(2)
    ]
    assert len(files_in(media)) == 2
    admin_client.post(f"/admin/sessions_app/run/{handles[0].run_id}/delete/", {"post": "yes"})
    assert len(files_in(media)) == 1 and RunImage.objects.count() == 1
    admin_client.post(
        "/admin/sessions_app/session/",
        {"action": "delete_selected", "_selected_action": [str(handles[1].session_id)], "post": "yes"},
    )
    assert files_in(media) == [] and Session.objects.filter(pk=handles[1].session_id).count() == 0


async def test_a_message_queued_behind_a_busy_session_keeps_its_images(asgi, agent, token, scripted_model, media):
    agent.busy_session_policy = "queue"
    await agent.asave()
    scripted_model.push_text("first")
    first = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "one"}, headers=bearer(token))
    session_id = first.json()["session_id"]
    scripted_model.push_text("slow", delay=0.6)
    scripted_model.push_text("queued answer")
    busy = asyncio.ensure_future(
        asgi.post(
            f"/api/agents/{agent.slug}/runs", json={"message": "two", "session_id": session_id}, headers=bearer(token)
        )
    )
    while not await Run.objects.filter(session_id=session_id, status=Run.Status.RUNNING).aexists():
        await asyncio.sleep(0.02)
    queued = await asgi.post(
        f"/api/agents/{agent.slug}/runs",
        json={"message": "three", "session_id": session_id, "images": [{"data": b64(PNG)}]},
        headers=bearer(token),
    )
    assert (await busy).json()["content"] == "slow"
    assert queued.status_code == 200 and queued.json()["content"] == "queued answer"
    assert user_message(scripted_model)["content"] == [
        {"type": "text", "text": "three"},
        {"type": "image_url", "image_url": {"url": data_url(PNG)}},
    ]
    assert [i.run_id async for i in RunImage.objects.all()] == [UUID(queued.json()["run_id"])]
