"""The layer between the wire and the engine: cached projects, compiled flags, resolvers.

One `FlagService` lives per process (on the Flask app, or inside an embedded FlagClient).
Compiled flags are reused until the project's `flags_rev` changes, which is checked at
most every `cache_seconds`; group and person properties are cached for the same time
in a bounded TTL cache. So an edit made through any worker (or another process) is seen
everywhere within `cache_seconds`, with no per-request reload.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from cachetools import TTLCache

from .engine import CompiledFlag, Context, FlagResult, compile_flags, evaluate_all
from .store import Store


@dataclass(slots=True)
class FlagSet:
    """A project's flags as of one `flags_rev`."""

    rev: int
    compiled: dict[str, CompiledFlag]
    definitions: list[dict[str, Any]]
    etag: str
    checked_at: float


class StoreResolver:
    """The engine's view of stored persons and groups of one project, through the cache."""

    __slots__ = ("service", "project_id")

    def __init__(self, service: "FlagService", project_id: int) -> None:
        self.service = service
        self.project_id = project_id

    def person_properties(self, distinct_id: str) -> Mapping[str, Any] | None:
        return self.service.cached(("p", self.project_id, distinct_id),
                                   self.service.store.person_properties, self.project_id, distinct_id)

    def group_properties(self, group_type: str, group_key: str) -> Mapping[str, Any] | None:
        return self.service.cached(("g", self.project_id, group_type, group_key),
                                   self.service.store.group_properties, self.project_id,
                                   group_type, group_key)

    def group_parent(self, group_type: str, group_key: str) -> tuple[str, str] | None:
        return self.service.cached(("up", self.project_id, group_type, group_key),
                                   self.service.store.group_parent, self.project_id,
                                   group_type, group_key)


class FlagService:
    """Cached access to flags and properties for evaluation."""

    def __init__(self, store: Store, cache_seconds: float = 0.5, cache_size: int = 100_000) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._flags: dict[int, FlagSet] = {}
        self._flags_lock = threading.Lock()
        self._props: TTLCache = TTLCache(maxsize=cache_size, ttl=cache_seconds)
        self._props_lock = threading.Lock()
        self._tokens: TTLCache = TTLCache(maxsize=10_000, ttl=min(cache_seconds, 1.0))

    # ------------------------------------------------------------ caches

    def cached(self, key: tuple, fn: Any, *args: Any) -> Any:
        with self._props_lock:
            try:
                return self._props[key]
            except KeyError:
                pass
        value = fn(*args)
        with self._props_lock:
            self._props[key] = value
        return value

    def project_for_token(self, token: str, kind: str) -> dict[str, Any] | None:
        """The project of a live token (cached briefly; a revoked token stops within a second)."""
        if not isinstance(token, str) or not token:
            return None
        key = (kind, token)
        with self._props_lock:
            hit = self._tokens.get(key)
        if hit is not None:
            return hit or None
        project = self.store.project_for_token(token, kind)
        with self._props_lock:
            self._tokens[key] = project or {}
        return project

    def flag_set(self, project_id: int) -> FlagSet:
        now = time.monotonic()
        current = self._flags.get(project_id)
        if current is not None and now - current.checked_at < self.cache_seconds:
            return current
        rev = self.store.flags_rev(project_id)
        if current is not None and current.rev == rev:
            current.checked_at = now
            return current
        with self._flags_lock:
            definitions = self.store.list_flags(project_id)
            fresh = FlagSet(rev, compile_flags(definitions), definitions,
                            _etag(definitions), now)
            self._flags[project_id] = fresh
        return fresh

    def invalidate(self, project_id: int | None = None) -> None:
        """Forget cached flags (after a local write, so this process sees it at once)."""
        with self._flags_lock:
            if project_id is None:
                self._flags.clear()
            else:
                self._flags.pop(project_id, None)

    # ------------------------------------------------------------ evaluation

    def resolver(self, project_id: int) -> StoreResolver:
        return StoreResolver(self, project_id)

    def evaluate(self, project_id: int, ctx: Context,
                 keys: Iterable[str] | None = None) -> dict[str, FlagResult]:
        return evaluate_all(self.flag_set(project_id).compiled, ctx, self.resolver(project_id), keys)


def make_context(distinct_id: Any = None, groups: Any = None, person_properties: Any = None,
                 group_properties: Any = None, now: float | None = None) -> Context:
    """A Context from loosely typed request data (wrong shapes are dropped, never raised)."""
    groups = {str(k): str(v) for k, v in (groups or {}).items()
              if v is not None and not isinstance(v, (dict, list))} if isinstance(groups, Mapping) else {}
    person_properties = dict(person_properties) if isinstance(person_properties, Mapping) else {}
    gp = {}
    if isinstance(group_properties, Mapping):
        gp = {str(k): dict(v) for k, v in group_properties.items() if isinstance(v, Mapping)}
    did = None if distinct_id in (None, "") else str(distinct_id)
    return Context(did, groups, person_properties, gp, time.time() if now is None else now)


def _etag(definitions: list[dict[str, Any]]) -> str:
    body = json.dumps([(d["id"], d["version"]) for d in definitions], separators=(",", ":"))
    return '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
