"""Where a FlagClient's flags and stored properties come from (client.py uses these).

Each source hands the client a `Snapshot`: the compiled flags, what the project lets a
context claim, and the cache of stored property sets the client reads without a lock. The
client asks for a fresh one on its clock (`Snapshot.expires`, at most every `TICK_SECONDS`),
never per call: that is when flag edits and ingested properties are picked up.

* embedded — the SQLite file the server writes, through a `FlagService` (service.py): its
  property cache (propcache.py) is evicted from ingestion's change log every `cache_seconds`.
* remote — `GET /api/flags/definitions` polled with `If-None-Match`; group and person
  properties fetched on demand (`/api/groups/.../properties`), cached for `cache_seconds`,
  the last answers kept for outages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests

from .contexts import DEFAULT_POLICY, FILL, IGNORE, ContextPolicy, context_policy, resolve_context
from .engine import CompiledFlag, Context, Resolver
from .engine.compile import PERSON
from .propcache import PropertyCache
from .service import FlagService, compile_project_flags, hash_context

log = logging.getLogger("flagsvc.client")

# How often a client looks for new definitions and property changes (at most; s).
TICK_SECONDS = 0.1
OVERRIDE_MODE, FILL_MODE, IGNORE_MODE = 0, 1, 2


class FlagClientError(Exception):
    """The client could not be set up (unknown token, server unreachable at start...)."""


class _Unavailable(Exception):
    """The server gave no answer to a lookup (as opposed to answering "not found")."""


class Snapshot:
    """What a client evaluates with until `expires` (time.time(); `born` guards clock jumps).

    `fast`: flag key -> (fast evaluator, bucket_by, is $person, property keys it reads, the
    value-only evaluator, the cache table of its stored properties) for the
    flags of the common shape (engine/fastpath.py), which the client evaluates without
    building a Context. `cache` is keyed ("g", pid, group type, key) or ("p", pid,
    distinct id) (`pid` None for the remote client's); a table holds one group type's."""

    __slots__ = ("flags", "fast", "mode", "hashed", "born", "expires", "pid",
                 "resolver", "cache", "identity", "all_fast")

    fast: dict[str, tuple[Any, ...]]
    cache: PropertyCache

    def __init__(self, flags: Mapping[str, CompiledFlag], policy: ContextPolicy, hashed: bool,
                 cache: PropertyCache, pid: int | None, resolver: Resolver, identity: Any,
                 previous: Snapshot | None, now: float) -> None:
        self.flags = flags
        if previous is not None and previous.flags is flags and previous.cache is cache:
            self.fast = previous.fast
        else:
            self.fast = {k: (f.fast, f.bucket_by, f.bucket_by == PERSON, f.fast_keys,
                             f.fast_value, cache.table(("p", pid) if f.bucket_by == PERSON
                                                       else ("g", pid, f.bucket_by)))
                         for k, f in flags.items()
                         if f.fast is not None and f.fast_value is not None}
        # get_all_flags without a Context: possible when every flag is of the fast shape,
        # or off whatever the context (disabled, or broken: its value is False either way)
        self.all_fast: tuple[tuple[str, Any], ...] | None = tuple(
            (k, self.fast.get(k)) for k, f in flags.items()
            if k in self.fast or f.error is not None or not f.active)
        if len(self.all_fast) != len(flags):
            self.all_fast = None
        client = policy.client_properties if policy is not DEFAULT_POLICY else None
        self.mode = FILL_MODE if client == FILL else IGNORE_MODE if client == IGNORE else 0
        self.hashed = hashed
        self.cache = cache
        self.pid = pid
        self.resolver = resolver
        self.identity = identity
        self.born = now
        self.expires = now + TICK_SECONDS

    def renewed(self, now: float) -> Snapshot:
        self.born, self.expires = now, now + TICK_SECONDS
        return self


class _Source:
    """Where flags and stored properties come from."""

    def flags(self) -> Mapping[str, CompiledFlag]:
        raise NotImplementedError

    def prepare(self, ctx: Context) -> tuple[Mapping[str, CompiledFlag], Context]:
        """The flags to evaluate and the context as they must see it (private keys)."""
        return self.flags(), ctx

    def resolver(self) -> Resolver:
        raise NotImplementedError

    def snapshot(self, previous: Snapshot | None, now: float) -> Snapshot:
        raise NotImplementedError

    def close(self) -> None:
        pass


class EmbeddedSource(_Source):
    def __init__(self, service: FlagService, project_id: int) -> None:
        self.service = service
        self.project_id = project_id
        self._resolver = service.resolver(project_id)

    def flags(self) -> Mapping[str, CompiledFlag]:
        return self.service.flag_set(self.project_id).compiled

    def prepare(self, ctx: Context) -> tuple[Mapping[str, CompiledFlag], Context]:
        flag_set = self.service.flag_set(self.project_id)
        if flag_set.policy is not DEFAULT_POLICY:  # the project's client_properties
            ctx = resolve_context(flag_set.policy, ctx, trusted=True).ctx
        return flag_set.compiled, flag_set.prepare(ctx) if flag_set.private_keys else ctx

    def resolver(self) -> Resolver:
        return self._resolver

    def snapshot(self, previous: Snapshot | None, now: float) -> Snapshot:
        # Both are gated by the service's own `cache_seconds` clock: cheap when not due.
        flag_set = self.service.flag_set(self.project_id)
        self.service.sync_changes()
        self.service.property_cache.compact()
        if previous is not None and previous.identity is flag_set:
            return previous.renewed(now)
        return Snapshot(flag_set.compiled, flag_set.policy, bool(flag_set.private_keys),
                        self.service.property_cache, self.project_id, self._resolver,
                        flag_set, previous, now)

    def close(self) -> None:
        self.service.close()


class HttpResolver:
    """Stored properties fetched from the server on demand, cached (bounded by bytes and
    entries, for `cache_seconds`); the last answers are kept for outages."""

    def __init__(self, source: RemoteSource, cache_seconds: float, cache_size: int,
                 cache_bytes: int) -> None:
        self.source = source
        self._cache = PropertyCache(cache_bytes, cache_size, max_age=cache_seconds)
        self._last = PropertyCache(cache_bytes, cache_size)  # last answers, for outages

    def _fetch(self, keys: tuple[tuple, ...], path: str, parse: Any) -> tuple[Any, ...]:
        """The cached values of `keys`, else the server's answer at `path` split by `parse`
        into one value per key (None per key when the server has none)."""
        cache = self._cache
        values = tuple(cache.get(k, _ABSENT) for k in keys)
        if _ABSENT not in values:
            return values
        generation = cache.generation
        try:
            found = self.source.get_json(path)
        except _Unavailable:
            # Not an answer: keep serving the last one we had (an unknown group is treated
            # as absent for this call only, not cached as absent).
            return tuple(self._last.get(k) for k in keys)
        values = (tuple(cache.canonical(v) for v in parse(found)) if found
                  else (None,) * len(keys))
        for key, value in zip(keys, values, strict=True):
            cache.put(key, value, generation, copy=False)
            self._last.put(key, value, copy=False)  # the same objects: no second copy
        return values

    def _group(self, group_type: str, group_key: str) -> tuple[Any, ...]:
        return self._fetch((("g", None, group_type, group_key), ("up", None, group_type,
                                                                  group_key)),
                           f"/api/groups/{quote(group_type, safe='')}/"
                           f"{quote(group_key, safe='')}/properties", _parse_group)

    def group_properties(self, group_type: str, group_key: str) -> Mapping[str, Any] | None:
        return self._group(group_type, group_key)[0]

    def group_parent(self, group_type: str, group_key: str) -> tuple[str, str] | None:
        return self._group(group_type, group_key)[1]

    def person_properties(self, distinct_id: str) -> Mapping[str, Any] | None:
        return self._fetch((("p", None, distinct_id),),
                           f"/api/persons/{quote(distinct_id, safe='')}/properties",
                           lambda found: (found.get("properties"),))[0]


def _parse_group(found: Any) -> tuple[Any, Any]:
    parent = found.get("parent")
    if not parent or not parent.get("group_type") or parent.get("group_key") is None:
        parent = None
    else:
        parent = (parent["group_type"], parent["group_key"])
    return found.get("properties"), parent


_ABSENT = object()


class RemoteSource(_Source):
    def __init__(self, host: str, secret_key: str, poll_seconds: float, timeout: float,
                 cache_seconds: float, cache_size: int, cache_bytes: int) -> None:
        self.host = host.rstrip("/")
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {secret_key}"
        self._etag: str | None = None
        self._flags: dict[str, CompiledFlag] = {}
        self._private: tuple[frozenset[str], str] = (frozenset(), "")
        self._policy: ContextPolicy = DEFAULT_POLICY
        self._state: tuple = (self._flags, self._private, self._policy)  # swapped as one
        self.last_success: float | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._resolver = HttpResolver(self, cache_seconds, cache_size, cache_bytes)
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name="flagsvc-poller", daemon=True)
        self._thread.start()

    def get_json(self, path: str) -> Any:
        """GET a JSON document; None on 404 (the server says there is none); _Unavailable
        when there is no answer (unreachable, timeout, 5xx, refused, not JSON)."""
        try:
            r = self._session.get(self.host + path, timeout=self.timeout)
        except requests.RequestException as e:
            self.last_error = str(e)
            raise _Unavailable(self.last_error) from None
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            self.last_error = f"HTTP {r.status_code} for {path}"
            raise _Unavailable(self.last_error)
        try:
            return r.json()
        except ValueError:
            raise _Unavailable(f"not JSON: {path}") from None

    def refresh(self) -> bool:
        """Fetch definitions if they changed; False (keeping the last good ones) on failure."""
        headers = {"If-None-Match": self._etag} if self._etag else {}
        try:
            r = self._session.get(self.host + "/api/flags/definitions", headers=headers,
                                  timeout=self.timeout)
        except requests.RequestException as e:
            self.last_error = f"server unreachable: {e}"
            log.warning("flag definitions not refreshed: %s", self.last_error)
            return False
        if r.status_code == 304:
            self.last_success = time.time()
            return True
        if r.status_code != 200:
            self.last_error = f"HTTP {r.status_code}: {r.text[:200]}"
            log.warning("flag definitions not refreshed: %s", self.last_error)
            if r.status_code in (401, 403) and self.last_success is None:
                raise FlagClientError(f"the server refused the secret key ({self.last_error})")
            return False
        try:
            body = r.json()
            privacy = body.get("privacy") or {}
            keys = frozenset(privacy.get("hashed_keys") or ())
            salt = privacy.get("salt") or ""
            flags = compile_project_flags(body["flags"], keys, salt)
            # Signed groups are not checked here: this client runs in the app's backend.
            policy = context_policy(body.get("project"))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            self.last_error = f"bad definitions document: {e}"
            return False
        self._flags = flags
        self._private = (keys, salt)
        self._policy = policy
        self._state = (flags, self._private, policy)
        self._etag = r.headers.get("ETag")
        self.last_success = time.time()
        self.last_error = None
        return True

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # the poller must survive anything
                log.exception("flag definitions poll failed")

    def flags(self) -> Mapping[str, CompiledFlag]:
        return self._flags

    def prepare(self, ctx: Context) -> tuple[Mapping[str, CompiledFlag], Context]:
        flags, (keys, salt), policy = self._state
        if policy is not DEFAULT_POLICY:  # the project's client_properties
            ctx = resolve_context(policy, ctx, trusted=True).ctx
        return flags, hash_context(ctx, keys, salt)

    def resolver(self) -> Resolver:
        return self._resolver

    def snapshot(self, previous: Snapshot | None, now: float) -> Snapshot:
        self._resolver._cache.expire()  # cache_seconds
        self._resolver._cache.compact()
        state = self._state
        if previous is not None and previous.identity is state:
            return previous.renewed(now)
        flags, (keys, _), policy = state
        return Snapshot(flags, policy, bool(keys), self._resolver._cache, None,
                        self._resolver, state, previous, now)

    def close(self) -> None:
        self._stop.set()
        self._session.close()
