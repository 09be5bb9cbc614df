"""The per-process cache of authenticated tokens: token -> its row with its user, so an API request
with a token it has seen in the last AUTH_CACHE_SECONDS costs no SQL statement to authenticate.

What is cached, and what is checked anyway:

* Entries are keyed by (kind, SHA-256 of the token), never the token: a scoped API token's row
  stores that digest too (`ApiToken.digest`), so its entry is dropped by the row; a DRF token's row
  is stored without its key (DRF keeps it in clear in the database and as the row's primary key),
  and the key the request presented is put back on the copy handed out.
* The row is what authentication needs: for an API token its scope, read-only flag, `expires_at`,
  `revoked_at` and `last_used_at`, with its user. Expiry, revocation and `user.is_active` are still
  checked against now on every request (sessions_app.tokens.token_check); what the cache saves is
  the SELECT. The last use is written as before, at most once per API_TOKEN_LAST_USED_SECONDS, by
  what the cached row's `last_used_at` says; a write updates the cached row (no re-read).
* Each hit hands out fresh copies of the row and its user: a request may set attributes on
  `request.user` (agents_app.access keeps the user's groups there for the request), which must not
  outlive it, and no two threads share an instance.

Invalidation: saving or deleting an API token, a DRF token or a user (sessions_app.apps connects
the signals), and revoking an API token (`token_revoke`, a queryset UPDATE that sends no signal),
drop the entries concerned in this process at once, and again when the writing transaction commits.
A generation number keeps a request that read the row before such a change from caching it after.
Other processes see the change within AUTH_CACHE_SECONDS (the entry's lifetime; 0 turns the cache
off). Queryset `update()`s of users or tokens elsewhere send no signal: they too are seen within
that time.

Why not cachetools: its TTLCache has one lifetime fixed at construction (this one is a setting read
on each call, as tests and `override_settings` change it), is not thread-safe (a lock is needed
anyway), and has no hook to keep the per-user index that a user's save drops entries by, nor the
generation check. An OrderedDict (least recently used first) with a lock is less code than that.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Model
from django.db.models.base import ModelState

from sessions_app.conf import agentos_settings

API = "api"  # scoped API tokens (sessions_app.models.ApiToken)
DRF = "drf"  # DRF's authtoken rows
MAX_ENTRIES = 10_000

Key = tuple[str, str]


@dataclass(slots=True)
class _Entry:
    expires: float  # time.monotonic()
    row: Any  # never handed out: copies of it are
    user_pk: Any


_entries: OrderedDict[Key, _Entry] = OrderedDict()
_by_user: dict[Any, set[Key]] = {}
_lock = threading.Lock()
_generation = 0


def auth_cache_seconds() -> float:
    return float(agentos_settings.AUTH_CACHE_SECONDS or 0)


def auth_cache_generation() -> int:
    """Read before loading a row from the database; pass it to auth_cache_put."""
    return _generation


def _clone(obj: Model) -> Any:
    """A shallow copy of a model instance, with its own state and no cached relations: a tenth of
    copy.copy's cost (which goes through pickling's protocol)."""
    new = obj.__class__.__new__(obj.__class__)
    fields = obj.__dict__.copy()
    state = ModelState()
    state.db, state.adding = obj._state.db, False
    fields["_state"] = state
    new.__dict__ = fields
    return new


def _clone_with_user(row: Model) -> Any:
    copy = _clone(row)
    user = row._state.fields_cache.get("user")
    if user is not None:
        copy._state.fields_cache["user"] = _clone(user)
    return copy


def auth_cache_get(kind: str, digest: str) -> Any | None:
    """A copy of the cached row (with a copy of its user) for the token whose SHA-256 is `digest`,
    if it is cached and fresh; else None."""
    if auth_cache_seconds() <= 0:
        return None
    key = (kind, digest)
    with _lock:
        entry = _entries.get(key)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            _forget(key)
            return None
        _entries.move_to_end(key)
        row = entry.row
    return _clone_with_user(row)


def auth_cache_put(kind: str, digest: str, row: Model, generation: int, *, blank: tuple[str, ...] = ()) -> None:
    """Cache a copy of `row` (loaded with its user) for AUTH_CACHE_SECONDS, without the attributes
    named in `blank` (a DRF token's key); nothing if the cache is off, or if an entry was dropped
    since `generation` was read (the row may be older than that change)."""
    seconds = auth_cache_seconds()
    if seconds <= 0:
        return
    stored = _clone_with_user(row)
    for name in blank:
        setattr(stored, name, "")
    user_pk = getattr(stored._state.fields_cache.get("user"), "pk", None)
    key = (kind, digest)
    with _lock:
        if generation != _generation:
            return
        _forget(key)
        _entries[key] = _Entry(time.monotonic() + seconds, stored, user_pk)
        _by_user.setdefault(user_pk, set()).add(key)
        while len(_entries) > MAX_ENTRIES:
            _forget(next(iter(_entries)))


def auth_cache_note_use(kind: str, digest: str, last_used_at: Any) -> None:
    """Record on the cached row that the token's last use was just written (no re-read)."""
    with _lock:
        entry = _entries.get((kind, digest))
        if entry is not None:
            entry.row.last_used_at = last_used_at


def _forget(key: Key) -> None:
    """Drop one entry; with the lock held."""
    entry = _entries.pop(key, None)
    if entry is None:
        return
    keys = _by_user.get(entry.user_pk)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del _by_user[entry.user_pk]


def _drop(kind: str | None, digest: str | None, user_pk: Any) -> None:
    global _generation
    with _lock:
        _generation += 1
        if kind is not None and digest is not None:
            _forget((kind, digest))
        if user_pk is not None:
            for key in list(_by_user.get(user_pk, ())):
                _forget(key)


def _now_and_on_commit(kind: str | None, digest: str | None, user_pk: Any) -> None:
    # Again when the transaction commits: a request that read the old row meanwhile (before the
    # change was visible) and cached it is dropped then.
    _drop(kind, digest, user_pk)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: _drop(kind, digest, user_pk))


def auth_cache_drop(kind: str, digest: str) -> None:
    """Forget one token (saved, deleted or revoked in this process)."""
    _now_and_on_commit(kind, digest, None)


def auth_cache_drop_user(user_pk: Any) -> None:
    """Forget every token of a user (the user was saved or deleted in this process)."""
    _now_and_on_commit(None, None, user_pk)


def auth_cache_clear() -> None:
    """Forget everything (tests)."""
    global _generation
    with _lock:
        _generation += 1
        _entries.clear()
        _by_user.clear()
