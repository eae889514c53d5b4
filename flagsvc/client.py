"""`FlagClient`: in-process evaluation with the server's own engine (SPEC §6).

Two sources:

* embedded — `FlagClient.from_database("flagsvc.db", api_token=...)` reads the SQLite
  file the server writes (same machine); flag edits are seen within `cache_seconds`.
* remote — `FlagClient.from_server("http://flags:8000", secret_key=...)` polls
  `GET /api/flags/definitions` with `If-None-Match`, fetches group and person properties
  it lacks on demand through a bounded TTL cache, and keeps serving the last good
  definitions while the server is unreachable.

Either way `get_flag`, `evaluate` and `get_all_flags` answer exactly as the HTTP decide
endpoint does for the same inputs: same engine, same merging of stored and given
properties, and the project's `client_properties` (contexts.py; what the app passes a
FlagClient counts as signed: it runs in the app's backend).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests
from cachetools import LRUCache, TTLCache

from .contexts import DEFAULT_POLICY, ContextPolicy, context_policy, resolve_context
from .engine import CompiledFlag, Context, Evaluation, FlagResult, Resolver, evaluate
from .service import FlagService, compile_project_flags, hash_context, make_context

log = logging.getLogger("flagsvc.client")


class FlagClientError(Exception):
    """The client could not be set up (unknown token, server unreachable at start...)."""


class _Unavailable(Exception):
    """The server gave no answer to a lookup (as opposed to answering "not found")."""


class _Source:
    """Where flags and stored properties come from."""

    def flags(self) -> Mapping[str, CompiledFlag]:
        raise NotImplementedError

    def prepare(self, ctx: Context) -> tuple[Mapping[str, CompiledFlag], Context]:
        """The flags to evaluate and the context as they must see it (private keys)."""
        return self.flags(), ctx

    def resolver(self) -> Resolver:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _EmbeddedSource(_Source):
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

    def close(self) -> None:
        self.service.close()


class _HttpResolver:
    """Stored properties fetched from the server on demand, cached (bounded, with a TTL)."""

    def __init__(self, source: _RemoteSource, cache_seconds: float, cache_size: int) -> None:
        self.source = source
        self._cache: TTLCache = TTLCache(maxsize=cache_size, ttl=cache_seconds)
        self._last: LRUCache = LRUCache(maxsize=cache_size)  # last answers, for outages
        self._lock = threading.Lock()

    def _get(self, key: tuple, path: str) -> Any:
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        try:
            found = self.source.get_json(path)
        except _Unavailable:
            # Not an answer: keep serving the last one we had (an unknown group is treated
            # as absent for this call only, not cached as absent).
            with self._lock:
                return self._last.get(key)
        with self._lock:
            self._cache[key] = found
            self._last[key] = found
        return found

    def _group(self, group_type: str, group_key: str) -> dict | None:
        return self._get(("g", group_type, group_key),
                         f"/api/groups/{quote(group_type, safe='')}/{quote(group_key, safe='')}"
                         "/properties")

    def group_properties(self, group_type: str, group_key: str) -> Mapping[str, Any] | None:
        found = self._group(group_type, group_key)
        return found.get("properties") if found else None

    def group_parent(self, group_type: str, group_key: str) -> tuple[str, str] | None:
        found = self._group(group_type, group_key)
        parent = found.get("parent") if found else None
        if not parent or not parent.get("group_type") or parent.get("group_key") is None:
            return None
        return parent["group_type"], parent["group_key"]

    def person_properties(self, distinct_id: str) -> Mapping[str, Any] | None:
        found = self._get(("p", distinct_id),
                          f"/api/persons/{quote(distinct_id, safe='')}/properties")
        return found.get("properties") if found else None


class _RemoteSource(_Source):
    def __init__(self, host: str, secret_key: str, poll_seconds: float, timeout: float,
                 cache_seconds: float, cache_size: int) -> None:
        self.host = host.rstrip("/")
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {secret_key}"
        self._etag: str | None = None
        self._flags: dict[str, CompiledFlag] = {}
        self._private: tuple[frozenset[str], str] = (frozenset(), "")
        self._policy: ContextPolicy = DEFAULT_POLICY
        self.last_success: float | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._resolver = _HttpResolver(self, cache_seconds, cache_size)
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
        flags, (keys, salt) = self._flags, self._private
        if self._policy is not DEFAULT_POLICY:  # the project's client_properties
            ctx = resolve_context(self._policy, ctx, trusted=True).ctx
        return flags, hash_context(ctx, keys, salt)

    def resolver(self) -> Resolver:
        return self._resolver

    def close(self) -> None:
        self._stop.set()
        self._session.close()


class FlagClient:
    """Evaluate flags in this process. Build one with `from_database` or `from_server`."""

    def __init__(self, source: _Source) -> None:
        self._source = source

    @classmethod
    def from_database(cls, path: str, api_token: str | None = None, project_id: int | None = None,
                      cache_seconds: float = 0.5) -> FlagClient:
        """Evaluate against the SQLite file a flagsvc server writes. The project is the one
        of `api_token` (or `project_id`; or the only project in the file)."""
        from .store import Store

        store = Store(path)
        service = FlagService(store, cache_seconds=cache_seconds)
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
        return cls(_EmbeddedSource(service, project_id))

    @classmethod
    def from_server(cls, host: str, secret_key: str, poll_seconds: float = 5.0,
                    timeout: float = 3.0, cache_seconds: float = 30.0,
                    cache_size: int = 10_000) -> FlagClient:
        """Evaluate with definitions polled from a flagsvc server (admin secret key)."""
        return cls(_RemoteSource(host, secret_key, poll_seconds, timeout, cache_seconds,
                                 cache_size))

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
        ctx: Context = make_context(distinct_id, groups, person_properties, group_properties, now)
        flags, ctx = self._source.prepare(ctx)
        return evaluate(flags, key, ctx, self._source.resolver())

    def get_flag(self, key: str, distinct_id: Any = None, groups: Any = None,
                 person_properties: Any = None, group_properties: Any = None,
                 now: float | None = None) -> bool | str:
        """False, True, or the variant key (False for an unknown flag)."""
        # evaluate() inlined: this is the call applications make on every request.
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
        ev = self._evaluation(distinct_id, groups, person_properties, group_properties, now)
        return {k: r.value for k, r in ev.all().items()}

    def evaluate_all(self, distinct_id: Any = None, groups: Any = None,
                     person_properties: Any = None, group_properties: Any = None,
                     now: float | None = None) -> dict[str, FlagResult]:
        return self._evaluation(distinct_id, groups, person_properties, group_properties,
                                now).all()

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> FlagClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
