"""The site's LOGGING: one handler on the root logger, text or JSON lines, one level from the environment.

Why every line used to be printed twice: Django's default configuration (applied before a site's
LOGGING) gives the `django` logger a console handler of its own (active while DEBUG is on), and
its records also propagate to the root logger, which had a console handler too. So every line of
`django.*` (runserver's request lines, `django.request`'s "Not Found") came out twice. Here the
`django` logger keeps no handler of its own: its lines propagate to the root's one handler, once.

JSON lines (`DJANGO_LOG_FORMAT=json`) use python-json-logger's orjson formatter (orjson is already a
dependency): one object per line with `time`, `level`, `logger`, `message`, whatever the record
carries as extra fields, and the ids of the run or request it was written for
(sessions_app.logcontext.ContextFilter: `run_id`, `session_id`, `agent_id` / `team_id` /
`workflow_id`, `user_id`, `request_id`). The filter is installed only in that format, so text logs
cost the runs nothing.

A plain module (no Django import), so settings.py can call it and a test can build the JSON variant.
"""

from __future__ import annotations

import logging
from typing import Any

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def logging_config(*, level: str = "WARNING", fmt: str = "text") -> dict[str, Any]:
    """The dictConfig for `level` (a level name) and `fmt` (`text` or `json`). Raises ValueError
    for anything else, so a typo in the environment stops the process instead of logging nothing."""
    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"DJANGO_LOG_LEVEL must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"DJANGO_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler: dict[str, Any] = {"class": "logging.StreamHandler", "formatter": fmt}
    # runserver's request lines (daphne's `django.channels.server`) are INFO: shown at the default
    # level, as Django's own runserver shows them, and hidden from ERROR up.
    runserver_level = "INFO" if logging.getLevelName(level) <= logging.WARNING else level
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"console": handler},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # No handler of its own (Django's default adds one): its lines reach the root's, once.
            "django": {"handlers": [], "level": level, "propagate": True},
            "django.channels.server": {"level": runserver_level},
        },
    }
    if fmt == "json":
        from pythonjsonlogger.core import RESERVED_ATTRS  # a record's own attributes: not extra fields

        config["formatters"] = {
            "json": {
                "()": "pythonjsonlogger.orjson.OrjsonFormatter",
                "fmt": ["levelname", "name", "message"],
                "rename_fields": {"levelname": "level", "name": "logger"},
                "timestamp": "time",
                # uvicorn's records carry a colourised copy of their message: not a field.
                "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
            }
        }
        # Only in this format: building the filter is what makes runs bind their ids
        # (sessions_app.logcontext.enabled), so text logs cost the runs nothing.
        config["filters"] = {"context": {"()": "sessions_app.logcontext.ContextFilter"}}
        handler["filters"] = ["context"]
        # uvicorn configures its loggers before it imports the site: in JSON mode its own lines
        # (start-up, shutdown, protocol errors) go through the same handler, at the level its
        # --log-level set. Not through the `uvicorn` logger: configuring it would reset its children,
        # turning the access log back on under --no-access-log. The access log, when uvicorn has it
        # on (its logger has a handler then), is written as JSON lines too, with the request id.
        config["loggers"]["uvicorn.error"] = {"handlers": ["console"], "propagate": False}
        if logging.getLogger("uvicorn.access").handlers:
            config["loggers"]["uvicorn.access"] = {"handlers": ["console"], "propagate": False}
    return config
