"""`FlagClient`: in-process evaluation with the server's own engine (SPEC §6).

Two sources (client_sources.py):

* embedded — `FlagClient.from_database("flagsvc.db", api_token=...)` reads the SQLite
  file the server writes (same machine); flag edits and ingested properties are seen within
  `cache_seconds` (and the client's 0.1 s clock).
* remote — `FlagClient.from_server("http://flags:8000", secret_key=...)` polls
  `GET /api/flags/definitions` with `If-None-Match`, fetches group and person properties
  it lacks on demand (cached for `cache_seconds`), and keeps serving the last good
  definitions and properties while the server is unreachable.

Stored properties are cached up to `cache_bytes` (estimated) and `cache_size` entries
(propcache.py). Either way `get_flag`, `evaluate` and `get_all_flags` answer exactly as the
HTTP decide endpoint does for the same inputs: same engine, same merging of stored and
given properties, and the project's `client_properties` (contexts.py; what the app passes a
FlagClient counts as signed: it runs in the app's backend).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .client_sources import (
    FILL_MODE,
    IGNORE_MODE,
    EmbeddedSource,
    FlagClientError,
    RemoteSource,
    Snapshot,
    _Source,
)
from .engine import Context, Evaluation, FlagResult, evaluate
from .engine.context import EMPTY
from .propcache import DEFAULT_MAX_BYTES
from .service import FlagService, make_context

__all__ = ["FlagClient", "FlagClientError"]

_time = time.time
_MISSING = object()


class FlagClient:
    """Evaluate flags in this process. Build one with `from_database` or `from_server`.

    The hot call, `get_flag`, does no per-call set-up for a flag of the common shape (one
    bucket type, filters on that group's or person's properties: engine/fastpath.py): no
    Context is built, the definitions are looked at on a clock (`client_sources.Snapshot`)
    and stored properties are read lock-free from the client's byte-bounded cache. Any
    other flag or input takes the general path (a Context and an `Evaluation`), which
    answers identically — tests/test_client_equality.py checks both against decide."""

    def __init__(self, source: _Source) -> None:
        self._source = source
        self._snap: Snapshot = source.snapshot(None, _time())

    @classmethod
    def from_database(cls, path: str, api_token: str | None = None, project_id: int | None = None,
                      cache_seconds: float = 0.5, cache_bytes: int = DEFAULT_MAX_BYTES,
                      cache_size: int = 100_000) -> FlagClient:
        """Evaluate against the SQLite file a flagsvc server writes. The project is the one
        of `api_token` (or `project_id`; or the only project in the file). Stored property
        sets are cached up to `cache_bytes` (estimated) and `cache_size` entries."""
        from .store import Store

        store = Store(path)
        service = FlagService(store, cache_seconds=cache_seconds, cache_size=cache_size,
                              cache_bytes=cache_bytes)
        if api_token is not None:
            project = store.project_for_token(api_token, "api")
            if project is None:
                raise FlagClientError("unknown api token for this database")
            project_id = project["id"]
        elif project_id is None:
            projects = store.list_projects()
            if len(projects) != 1:
                raise FlagClientError("name the project: api_token=... or project_id=...")
            project_id = projects[0]["id"]
        return cls(EmbeddedSource(service, project_id))

    @classmethod
    def from_server(cls, host: str, secret_key: str, poll_seconds: float = 5.0,
                    timeout: float = 3.0, cache_seconds: float = 30.0,
                    cache_size: int = 100_000, cache_bytes: int = DEFAULT_MAX_BYTES
                    ) -> FlagClient:
        """Evaluate with definitions polled from a flagsvc server (admin secret key)."""
        return cls(RemoteSource(host, secret_key, poll_seconds, timeout, cache_seconds,
                                cache_size, cache_bytes))

    # ------------------------------------------------------------ the fast path

    def _tick(self, now: float) -> Snapshot:
        """A current snapshot (new definitions, property evictions); the last one on error."""
        try:
            snap = self._source.snapshot(self._snap, now)
        except Exception:  # a database error with nothing cached: the general path reports
            snap = self._snap.renewed(now)
        self._snap = snap
        return snap

    @staticmethod
    def _stored(snap: Snapshot, person: bool, bucket_by: str, ident: str,
                found: Any) -> Mapping[str, Any]:
        """A stored property set that is not a cached dict (a miss, an absent one...), as
        Evaluation._lookup sees it."""
        if found is _MISSING:
            resolver = snap.resolver
            try:
                found = (resolver.person_properties(ident) if person
                         else resolver.group_properties(bucket_by, ident))
            except Exception:
                return EMPTY
        if found is None:
            return EMPTY
        return found if type(found) is dict or isinstance(found, Mapping) else EMPTY

    def _fast(self, key: str, distinct_id: Any, groups: Any, person_properties: Any,
              group_properties: Any, now: float | None) -> FlagResult | None:
        """The result without a Context, or None when the general path must answer."""
        t = _time()
        snap = self._snap
        if not snap.born <= t < snap.expires:
            snap = self._tick(t)
        entry = snap.fast.get(key)
        if entry is None:
            return None
        fast, bucket_by, person, fast_keys, _, table = entry
        given: Any
        if person:
            ident, given = distinct_id, person_properties
        else:  # _plain_get() inlined for the usual one-entry dicts
            ident = (groups.get(bucket_by) if groups.__class__ is dict and len(groups) < 2
                     else _plain_get(groups, bucket_by))
            given = (None if group_properties is None else group_properties.get(bucket_by)
                     if group_properties.__class__ is dict and len(group_properties) < 2
                     else _plain_get(group_properties, bucket_by))
        mode = snap.mode
        if ident.__class__ is not str or not ident or given is not None and (
                given.__class__ is not dict or given and snap.hashed):
            return None  # (private keys: the request's values must be hashed first)
        if given and mode == 0 and given.keys() >= fast_keys:
            props = given  # every key the flag reads is given, and the request's win
        else:
            stored = table.get(ident, _MISSING)
            if stored.__class__ is not dict:
                stored = self._stored(snap, person, bucket_by, ident, stored)
            if not given or mode == IGNORE_MODE:
                props = stored
            elif not stored:
                props = given
            else:
                props = {**given, **stored} if mode == FILL_MODE else {**stored, **given}
        try:
            return fast(ident, props or EMPTY, t if now is None else now, None)
        except Exception:  # never expected; the general path reports it properly
            return None

    # ------------------------------------------------------------ calls

    def _evaluation(self, distinct_id: Any, groups: Any, person_properties: Any,
                    group_properties: Any, now: float | None) -> Evaluation:
        ctx: Context = make_context(distinct_id, groups, person_properties, group_properties, now)
        flags, ctx = self._source.prepare(ctx)
        return Evaluation(flags, ctx, self._source.resolver())

    def evaluate(self, key: str, distinct_id: Any = None, groups: Any = None,
                 person_properties: Any = None, group_properties: Any = None,
                 now: float | None = None) -> FlagResult | None:
        """The full result (value, variant, reason, payload...); None for an unknown flag."""
        result = self._fast(key, distinct_id, groups, person_properties, group_properties, now)
        if result is not None:
            return result
        ctx: Context = make_context(distinct_id, groups, person_properties, group_properties, now)
        flags, ctx = self._source.prepare(ctx)
        return evaluate(flags, key, ctx, self._source.resolver())

    def get_flag(self, key: str, distinct_id: Any = None, groups: Any = None,
                 person_properties: Any = None, group_properties: Any = None,
                 now: float | None = None) -> bool | str:
        """False, True, or the variant key (False for an unknown flag)."""
        # _fast() inlined (the call applications make on every request), the general path
        # in _get_flag(); test_client_equality.py checks get_flag against evaluate.
        t = _time()
        snap = self._snap
        if not snap.born <= t < snap.expires:
            snap = self._tick(t)
        entry = snap.fast.get(key)
        if entry is None:
            return self._get_flag(key, distinct_id, groups, person_properties,
                                  group_properties, now)
        _, bucket_by, person, fast_keys, fast, table = entry
        given: Any
        if person:
            ident, given = distinct_id, person_properties
        else:
            ident = (groups.get(bucket_by) if groups.__class__ is dict and len(groups) < 2
                     else _plain_get(groups, bucket_by))
            given = (None if group_properties is None else group_properties.get(bucket_by)
                     if group_properties.__class__ is dict and len(group_properties) < 2
                     else _plain_get(group_properties, bucket_by))
        mode = snap.mode
        if ident.__class__ is not str or not ident or given is not None and (
                given.__class__ is not dict or given and snap.hashed):
            return self._get_flag(key, distinct_id, groups, person_properties,
                                  group_properties, now)
        if given and mode == 0 and given.keys() >= fast_keys:
            props = given
        else:
            stored = table.get(ident, _MISSING)
            if stored.__class__ is not dict:
                stored = self._stored(snap, person, bucket_by, ident, stored)
            if not given or mode == IGNORE_MODE:
                props = stored
            elif not stored:
                props = given
            else:
                props = {**given, **stored} if mode == FILL_MODE else {**stored, **given}
        try:
            return fast(ident, props or EMPTY, t if now is None else now)
        except Exception:  # never expected; the general path reports it properly
            return self._get_flag(key, distinct_id, groups, person_properties,
                                  group_properties, now)

    def _get_flag(self, key: str, distinct_id: Any, groups: Any, person_properties: Any,
                  group_properties: Any, now: float | None) -> bool | str:
        ctx = make_context(distinct_id, groups, person_properties, group_properties, now)
        flags, ctx = self._source.prepare(ctx)
        result = evaluate(flags, key, ctx, self._source.resolver())
        if result is None:
            return False
        return result.variant if result.enabled and result.variant is not None else result.enabled

    def get_flag_payload(self, key: str, distinct_id: Any = None, groups: Any = None,
                         person_properties: Any = None, group_properties: Any = None) -> Any:
        result = self.evaluate(key, distinct_id, groups, person_properties, group_properties)
        return result.payload if result is not None and result.enabled else None

    def get_all_flags(self, distinct_id: Any = None, groups: Any = None,
                      person_properties: Any = None, group_properties: Any = None,
                      now: float | None = None) -> dict[str, bool | str]:
        """Every flag's value, sharing lookups across flags."""
        t = _time()
        snap = self._snap
        if not snap.born <= t < snap.expires:
            snap = self._tick(t)
        if snap.all_fast is not None:
            values = self._all_fast(snap, distinct_id, groups, person_properties,
                                    group_properties, t if now is None else now)
            if values is not None:
                return values
        ev = self._evaluation(distinct_id, groups, person_properties, group_properties, now)
        return {k: r.value for k, r in ev.all().items()}

    def _all_fast(self, snap: Snapshot, distinct_id: Any, groups: Any, person_properties: Any,
                  group_properties: Any, now: float) -> dict[str, bool | str] | None:
        """get_all_flags when every flag is of the fast shape (or off): the identifier and
        merged properties of each bucket type found once; None for the general path."""
        found: dict[str, tuple[str, Mapping[str, Any]] | None] = {}
        out: dict[str, bool | str] = {}
        mode = snap.mode
        for key, entry in snap.all_fast:  # type: ignore[union-attr]
            if entry is None:  # disabled or broken
                out[key] = False
                continue
            _, bucket_by, person, _, fast, table = entry
            slot = found.get(bucket_by, _MISSING)
            if slot is _MISSING:
                if person:
                    ident, given = distinct_id, person_properties
                else:
                    ident = _plain_get(groups, bucket_by)
                    given = _plain_get(group_properties, bucket_by)
                if ident.__class__ is not str or not ident or given is not None and (
                        given.__class__ is not dict or given and snap.hashed):
                    return None  # inference, no identifier, odd inputs: the general path
                stored = table.get(ident, _MISSING)
                if stored.__class__ is not dict:
                    stored = self._stored(snap, person, bucket_by, ident, stored)
                if not given or mode == IGNORE_MODE:
                    props = stored
                elif not stored:
                    props = given
                else:
                    props = {**given, **stored} if mode == FILL_MODE else {**stored, **given}
                slot = found[bucket_by] = (ident, props or EMPTY)
            try:
                out[key] = fast(slot[0], slot[1], now)  # type: ignore[index]
            except Exception:  # never expected; the general path reports it properly
                return None
        return out

    def evaluate_all(self, distinct_id: Any = None, groups: Any = None,
                     person_properties: Any = None, group_properties: Any = None,
                     now: float | None = None) -> dict[str, FlagResult]:
        return self._evaluation(distinct_id, groups, person_properties, group_properties,
                                now).all()

    def memory(self) -> dict[str, Any]:
        """The stored-property cache: entries, estimated bytes, budget, bytes per entry; and
        how many flags are compiled (bench/bench_client.py measures bytes per flag)."""
        snap = self._snap
        return {**snap.cache.stats(), "flags": len(snap.flags)}

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> FlagClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _plain_get(mapping: Any, key: str) -> Any:
    """`mapping[key]` as make_context would see it, or a non-str marker when only the
    general path can tell (not a dict, or other keys that are not strings and could
    collide with `key` once make_context turns them into strings)."""
    if mapping is None:
        return None
    if mapping.__class__ is not dict:
        return _MISSING
    if len(mapping) > 1:
        for k in mapping:
            if k.__class__ is not str:
                return _MISSING
    return mapping.get(key)
