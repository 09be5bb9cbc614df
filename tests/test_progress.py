"""Progress bars of long management commands: drawn on a terminal, absent otherwise (the output
that scripts parse stays as it was)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import OutputWrapper

from sessions_app.progress import progress
from telemetry_app.api import Client
from tests.test_telemetry_flush import Recorder, record, telemetry_on  # noqa: F401  (a fixture)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_on_a_terminal_and_nothing_elsewhere():
    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        with progress(OutputWrapper(stream), "Counting", total=3) as bar:
            for _ in range(3):
                bar.advance()
            bar.log("a line")
    assert "Counting" in tty.getvalue() and "3/3" in tty.getvalue() and "a line" in tty.getvalue()
    assert pipe.getvalue() == "a line\n"


@pytest.mark.django_db
def test_telemetry_flush_counts_a_large_buffer_on_a_terminal(telemetry_on, monkeypatch):  # noqa: F811
    telemetry_on.AGENTOS = {**telemetry_on.AGENTOS, "TELEMETRY_BATCH_SIZE": 10}
    record(35)
    recorder = Recorder()
    monkeypatch.setattr(Client, "from_settings", classmethod(lambda cls, transport=None: recorder.client()))
    out = Terminal()
    call_command("telemetry_flush", stdout=out)
    text = out.getvalue()
    assert "Uploading telemetry" in text and "35/35" in text
    assert json.loads(text[text.rindex('{"enabled"') :])["delivered"] == 35
    record(3)
    piped = io.StringIO()
    call_command("telemetry_flush", stdout=piped)
    assert json.loads(piped.getvalue())["delivered"] == 3  # only the JSON summary


@pytest.mark.django_db
def test_the_demo_command_shows_its_steps_on_a_terminal_only():
    out = Terminal()
    call_command("agentos_demo", stdout=out)
    assert "Setting up the demo" in out.getvalue() and "6/6" in out.getvalue()
    piped = io.StringIO()
    call_command("agentos_demo", stdout=piped)
    assert piped.getvalue().startswith("API token for 'admin': ")
