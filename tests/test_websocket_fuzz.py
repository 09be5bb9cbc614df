"""Random and hostile frames on the three sockets (agent, team, workflow): every frame the consumer
cannot act on gets exactly one `Error` frame with a code, the socket stays open, and a good run still
works afterwards. Seeded and bounded, so it is the same run every time."""

from __future__ import annotations

import json
import random
import string
import uuid
from typing import Any

import pytest

from sessions_app.models import Run, Session
from tests.factories import AgentFactory, TeamFactory, TeamMemberFactory, WorkflowFactory, WorkflowStepFactory
from tests.test_websocket import connect

pytestmark = pytest.mark.django_db(transaction=True)

FRAMES_PER_SOCKET = 60
CODES = {"bad_frame", "unknown_type", "invalid_input", "unknown_session", "not_found", "frame_too_large"}
# Another user's session (made by the `sockets` fixture): a run naming it is refused. (A UUID that no
# session has would start a run: agno's client-chosen session ids.)
FOREIGN_SESSION = str(uuid.uuid4())


def _junk(rng: random.Random) -> Any:
    """A random JSON value: nested, of every type, with awkward strings."""
    kind = rng.randrange(7)
    if kind == 0:
        return rng.choice([None, True, False, 0, -1, 2**63, 1.5e308])
    if kind == 1:
        return "".join(rng.choice(string.printable + "\x00\u200b✓😀") for _ in range(rng.randrange(20)))
    if kind == 2:
        return [_junk(rng) for _ in range(rng.randrange(4))]
    if kind == 3:
        return {rng.choice(["type", "message", "run_id", "id", "x"]): _junk(rng) for _ in range(rng.randrange(4))}
    if kind == 4:
        return str(uuid.uuid4())
    if kind == 5:
        return rng.choice(["run", "cancel", "resume", "RUN", ""])
    return rng.randrange(-5, 5)


def _hostile_frame(rng: random.Random) -> str | bytes:
    """A frame the consumer cannot act on (never a valid run: each would stream a whole answer)."""
    kind = rng.randrange(10)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))  # binary
    if kind == 1:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(1, 40))) + "{"  # not JSON
    if kind == 2:
        return json.dumps(_junk(rng) if rng.random() < 0.5 else [1, 2])  # JSON, rarely an object
    if kind == 3:
        return json.dumps({"type": rng.choice(["", "RUN", "stop", None, 7]), "x": _junk(rng)})  # unknown type
    if kind == 4:
        return json.dumps({"type": "run", "message": rng.choice([None, 1, [], {}, "", "   ", "a\x00b"])})
    if kind == 5:
        return '{"type": "run", "message": "\\ud800"}'  # a lone surrogate
    if kind == 6:
        return json.dumps({"type": "run", "message": "hi", "session_id": rng.choice(["nope", 5, FOREIGN_SESSION])})
    if kind == 7:
        return json.dumps({"type": "cancel", "run_id": rng.choice([None, "x", 3, str(uuid.uuid4())])})
    if kind == 8:
        return json.dumps({"type": "resume", "run_id": str(uuid.uuid4()), "after_event_index": _junk(rng)})
    depth = rng.choice([100, 2000])
    return '{"type": "run", "message": "hi", "deep": ' + "[" * depth + "]" * depth + "}"  # nested


@pytest.fixture
def sockets(offline_agent, other_user):
    Session.objects.create(pk=FOREIGN_SESSION, user=other_user, agent=offline_agent)
    model = offline_agent.model
    team = TeamFactory(slug="fuzz-team", model=model, mode="collaborate")
    TeamMemberFactory(team=team, agent=AgentFactory(slug="fuzz-member", model=model))
    flow = WorkflowFactory(slug="fuzz-flow")
    WorkflowStepFactory(workflow=flow, name="answer", kind="agent", agent=offline_agent, order=0)
    return {
        f"/ws/agents/{offline_agent.slug}/": "RunCompleted",
        "/ws/teams/fuzz-team/": "TeamRunCompleted",
        "/ws/workflows/fuzz-flow/": "WorkflowCompleted",
    }


async def test_hostile_frames_get_error_frames_and_the_sockets_keep_answering(sockets, token):
    rng = random.Random(1234)
    for path, completed in sockets.items():
        comm = await connect("", token=token, path=path)
        for _ in range(FRAMES_PER_SOCKET):
            frame = _hostile_frame(rng)
            if isinstance(frame, bytes):
                await comm.send_to(bytes_data=frame)
            else:
                await comm.send_to(text_data=frame)
            answer = await comm.receive_json_from(timeout=5)
            assert answer["event"] == "Error" and answer["code"] in CODES, (path, frame, answer)
            assert answer["code"] == answer["error_type"] and answer["detail"] == answer["content"]
            assert await comm.receive_nothing(timeout=0.05), (path, frame)  # one answer per frame
        await comm.send_json_to({"type": "run", "message": "what is 2+2?"})
        while (answer := await comm.receive_json_from(timeout=10))["event"] != completed:
            assert answer["event"] != "Error", (path, answer)
        await comm.disconnect()
    assert await Run.objects.filter(parent_run=None).acount() == 3  # only the three good runs
