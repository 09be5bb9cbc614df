"""The run path's hot statements, with their SQL built once per process instead of per run.

Every run starts and ends with the same few statements (docs/benchmarks.md, "SQL per run"): lock
and read the session, insert the run, then update the run and insert its messages. Through the
ORM, building each one (cloning querysets, resolving lookups, compiling expressions) costs several
times what the database takes to execute it: the session read took 0.74 ms through the ORM
against 0.045 ms as raw SQL on the same index. Here each statement's text is made once from the
models' metadata (table and column names quoted by the connection), and the values go through
the fields' own `get_db_prep_save` and database converters, so what is stored and read back is
exactly what the ORM would store and read. Model signals are not sent: the run path's models
have no receivers (the ORM's `update()` and `bulk_create()`, which these replace, send none
either; `Run.objects.create()` did, and nothing listens).

Behaviour, locking and the statements' effect are those of sessions_app.services' ORM code they
replace; the tests of the run path hold both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

from django.db import connections, models

from sessions_app.models import Run, Session

Converter = Callable[[Any, Any, Any], Any]


def _q(connection: Any, name: str) -> str:
    return connection.ops.quote_name(name)


@cache
def _read_plan(alias: str, model: type[models.Model]) -> tuple[str, list[str], list[tuple[Any, list[Converter]]]]:
    """The model's concrete columns, quoted and joined, their attribute names, and per column the
    database converters the ORM applies when reading it (JSON decoding, SQLite's datetimes...)."""
    connection = connections[alias]
    table = model._meta.db_table
    fields = model._meta.concrete_fields
    columns = ", ".join(f"{_q(connection, table)}.{_q(connection, f.column)}" for f in fields)
    converters = []
    for field in fields:
        col = field.get_col(table)
        converters.append((col, connection.ops.get_db_converters(col) + field.get_db_converters(connection)))
    return columns, [f.attname for f in fields], converters


def _convert(alias: str, plan: list[tuple[Any, list[Converter]]], row: Sequence[Any]) -> list[Any]:
    connection = connections[alias]
    values = []
    for value, (col, converters) in zip(row, plan, strict=False):
        for converter in converters:
            value = converter(value, col, connection)
        values.append(value)
    return values


def _pk(alias: str, model: type[models.Model], value: Any) -> Any:
    return model._meta.pk.get_db_prep_value(value, connections[alias])


def _datetime(alias: str, value: datetime) -> Any:
    return connections[alias].ops.adapt_datetimefield_value(value)


# ---- the session: lock it, read it, and whether it has a run going or paused ---------------------


@cache
def _session_sql(alias: str, owner: str, returning: bool) -> tuple[str, str]:
    """(the ownership UPDATE, the read with the busy and paused flags), or with `returning`, the
    UPDATE that returns the read's columns itself (one statement)."""
    connection = connections[alias]
    columns, _, _ = _read_plan(alias, Session)
    s, r = _q(connection, Session._meta.db_table), _q(connection, Run._meta.db_table)

    def col(model: type[models.Model], name: str) -> str:
        return _q(connection, model._meta.get_field(name).column)

    flags = (
        f"EXISTS(SELECT 1 FROM {r} U0 WHERE U0.{col(Run, 'session')} = {s}.{col(Session, 'id')}"
        f" AND U0.{col(Run, 'status')} = %s AND U0.{col(Run, 'parent_run')} IS NULL"
        f" AND (U0.{col(Run, 'created_at')} >= %s OR U0.{col(Run, 'resumed_at')} >= %s)),"
        f" EXISTS(SELECT 1 FROM {r} U1 WHERE U1.{col(Run, 'session')} = {s}.{col(Session, 'id')}"
        f" AND U1.{col(Run, 'status')} = %s AND U1.{col(Run, 'parent_run')} IS NULL)"
    )
    update = (
        f"UPDATE {s} SET {col(Session, 'updated_at')} = %s WHERE {col(Session, 'id')} = %s"
        f" AND {col(Session, 'user')} = %s AND {col(Session, owner)} = %s"
    )
    if returning:
        return f"{update} RETURNING {columns}, {flags}", ""
    return update, f"SELECT {columns}, {flags} FROM {s} WHERE {s}.{col(Session, 'id')} = %s"


def session_lock_and_read(
    *, session_id: UUID, user_id: Any, owner: str, owner_id: Any, now: datetime, running_since: datetime
) -> tuple[Session, bool, bool] | None:
    """Touch the user's session of this component (`owner`: "agent", "team" or "workflow"; the
    UPDATE locks its row, so two messages racing into one session are serialized) and read it with
    whether it has a run going (created, or continued, since `running_since`) and one paused.
    None when the user has no such session (nothing is written then).

    On SQLite the write lock is the transaction's (BEGIN IMMEDIATE), and one UPDATE ... RETURNING
    does it all. PostgreSQL evaluates RETURNING's subqueries on the snapshot the UPDATE started
    with, from before it waited for the row lock: a racing run committed meanwhile would not be
    seen, so there the read is a second statement, after the lock."""
    alias = Session.objects.db
    connection = connections[alias]
    returning = connection.vendor == "sqlite"
    update, select = _session_sql(alias, owner, returning)
    since = _datetime(alias, running_since)
    flags = [Run.Status.RUNNING, since, since, Run.Status.PAUSED]
    sid = _pk(alias, Session, session_id)
    with connection.cursor() as cursor:
        if returning:
            cursor.execute(update, [_datetime(alias, now), sid, user_id, owner_id, *flags])
        else:
            cursor.execute(update, [_datetime(alias, now), sid, user_id, owner_id])
            if cursor.rowcount == 0:
                return None
            cursor.execute(select, [*flags, sid])
        row = cursor.fetchone()
    if row is None:
        return None
    _, names, plan = _read_plan(alias, Session)
    session = Session.from_db(alias, names, _convert(alias, plan, row[: len(names)]))
    return session, bool(row[-2]), bool(row[-1])


# ---- inserting and finishing runs ------------------------------------------------------------------


@cache
def _insert_sql(alias: str, model: type[models.Model], rows: int) -> tuple[str, list[models.Field]]:
    connection = connections[alias]
    fields = [f for f in model._meta.concrete_fields if not (f.primary_key and isinstance(f, models.AutoField))]
    one = "(" + ", ".join(["%s"] * len(fields)) + ")"
    columns = ", ".join(_q(connection, f.column) for f in fields)
    sql = f"INSERT INTO {_q(connection, model._meta.db_table)} ({columns}) VALUES {', '.join([one] * rows)}"
    return sql, fields


def insert(objs: Sequence[models.Model], *, chunk: int = 100) -> None:
    """INSERT the objects (one model, its primary key set by a default or, for an AutoField, left
    to the database and not read back), as `Model.save(force_insert=True)` would store them."""
    if not objs:
        return
    model = type(objs[0])
    alias = model.objects.db
    connection = connections[alias]
    with connection.cursor() as cursor:
        for start in range(0, len(objs), chunk):
            part = objs[start : start + chunk]
            sql, fields = _insert_sql(alias, model, len(part))
            params: list[Any] = []
            for obj in part:
                params.extend(f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields)
            cursor.execute(sql, params)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = alias


@cache
def _update_sql(alias: str, model: type[models.Model], names: tuple[str, ...]) -> tuple[str, list[models.Field]]:
    connection = connections[alias]
    fields = [model._meta.get_field(n) for n in names]
    sets = ", ".join(f"{_q(connection, f.column)} = %s" for f in fields)
    where = f"{_q(connection, model._meta.pk.column)} = %s AND {_q(connection, model._meta.get_field('status').column)} = %s"
    return f"UPDATE {_q(connection, model._meta.db_table)} SET {sets} WHERE {where}", fields


def run_update_if_running(run_id: UUID, values: dict[str, Any]) -> int:
    """`Run.objects.filter(pk=run_id, status=RUNNING).update(**values)`: the number of rows."""
    alias = Run.objects.db
    connection = connections[alias]
    sql, fields = _update_sql(alias, Run, tuple(values))
    params = [f.get_db_prep_save(values[f.name], connection) for f in fields]
    params += [_pk(alias, Run, run_id), Run.Status.RUNNING]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
