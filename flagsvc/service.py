"""The layer between the wire and the engine: cached projects, compiled flags, resolvers.

One `FlagService` lives per process (on the Flask app, or inside an embedded FlagClient).
Compiled flags are reused until the project's `flags_rev` changes, which is checked at
most every `cache_seconds`. Group and person properties stay in a bounded cache until
ingestion changes them: every `cache_seconds` the service reads the change log that
ingestion appends (migration 0002) and evicts exactly the groups and persons named there
(`PROPERTIES_MAX_AGE` bounds what the log cannot name, such as another distinct id of a
merged person). Parent links, which depend on other groups existing, are cached for
`cache_seconds` only. So an edit or an ingested property is seen by every worker (and
every embedded client) within `cache_seconds`, and hot groups are not re-read meanwhile.

Degradation: the read paths (token lookup, flags, properties) use a short busy timeout
(`READ_BUSY_TIMEOUT_MS`) instead of the store's 15 s one, and when the database errors (locked
by an exclusive lock, unreadable, missing) they serve the last good data they had, with a
warning in the log, instead of failing the request. In WAL mode a reader is never blocked by
writers, so this only triggers when something is really wrong (an exclusive-mode connection,
a file moved or unreadable, I/O errors). A property set never read before cannot be served
stale: the lookup answers "unknown" and the evaluation is marked degraded (decide then says
`errorsWhileComputingFlags: true`). Without any cached flags (a cold worker) the error
propagates (503).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache, TTLCache

from .contexts import DEFAULT_POLICY, ContextPolicy, context_policy
from .engine import CompiledFlag, Context, FlagResult, compile_flags, evaluate_all
from .engine.context import EMPTY
from .ingest.privacy import hash_flag, hash_given, hashed_keys, policy_of
from .propcache import DEFAULT_MAX_BYTES, ENTRY_OVERHEAD, PropertyCache, size_of
from .store import DatabaseError, Store
from .store.disk import DiskWatch

log = logging.getLogger("flagsvc.service")

# How long a read on the decide path waits for a lock before serving stale data (ms).
READ_BUSY_TIMEOUT_MS = 200
# Longest a cached property set is used without being re-read (s); changes evict sooner.
PROPERTIES_MAX_AGE = 300.0
# How often the same "serving stale" warning is logged per worker (s).
_WARN_EVERY = 5.0
# Projects whose flags and token a starting worker loads (warm_up): bounded, in the background
WARM_PROJECTS = 1000


@dataclass(slots=True)
class FlagSet:
    """A project's flags as of one `flags_rev`."""

    rev: int
    compiled: dict[str, CompiledFlag]
    definitions: list[dict[str, Any]]
    etag: str
    checked_at: float
    # Rendered results (the decide endpoint's JSON per distinct outcome), valid for this set.
    wire: dict[tuple, Any] = field(default_factory=dict)
    # Private properties stored as keyed hashes (ingest/privacy.py) and the project's key.
    private_keys: frozenset[str] = frozenset()
    salt: str = ""
    # What requests may claim (client_properties, signed groups): contexts.py.
    policy: ContextPolicy = DEFAULT_POLICY

    def prepare(self, ctx: Context) -> Context:
        """The context with request-given values of hashed private keys hashed as stored."""
        return hash_context(ctx, self.private_keys, self.salt)


def compile_project_flags(definitions: Iterable[Any], keys: frozenset[str],
                          salt: str) -> dict[str, CompiledFlag]:
    """A project's flags compiled as every evaluator must see them: values compared with
    hashed private keys hashed (decide, both FlagClients, preview and explain)."""
    return compile_flags(hash_flag(d, keys, salt) for d in definitions)


def hash_context(ctx: Context, keys: frozenset[str], salt: str) -> Context:
    """`ctx` with the request-given values of hashed private keys hashed as they are stored
    (ingest/privacy.py), so equality filters compare like with like."""
    if not keys:
        return ctx
    return ctx._replace(
        person_properties=hash_given(ctx.person_properties, keys, salt),
        group_properties={t: hash_given(p, keys, salt) for t, p in ctx.group_properties.items()})


class StoreResolver:
    """The engine's view of stored persons and groups of one project, through the cache."""

    __slots__ = ("service", "project_id", "degraded")

    def __init__(self, service: FlagService, project_id: int) -> None:
        self.service = service
        self.project_id = project_id
        self.degraded = False  # a lookup failed and had no stale value to fall back on

    def _get(self, key: tuple, fn: Any, *args: Any, links: bool = False) -> Any:
        try:
            return self.service.cached(key, fn, *args, links=links)
        except DatabaseError:
            self.degraded = True
            return None

    def person_properties(self, distinct_id: str) -> Mapping[str, Any] | None:
        return self._get(("p", self.project_id, distinct_id),
                         self.service.reader.person_properties, self.project_id, distinct_id)

    def group_properties(self, group_type: str, group_key: str) -> Mapping[str, Any] | None:
        return self._get(("g", self.project_id, group_type, group_key),
                         self.service.reader.group_properties, self.project_id,
                         group_type, group_key)

    def group_parent(self, group_type: str, group_key: str) -> tuple[str, str] | None:
        return self._get(("up", self.project_id, group_type, group_key),
                         self.service.reader.group_parent, self.project_id,
                         group_type, group_key, links=True)


class FlagService:
    """Cached access to flags and properties for evaluation."""

    def __init__(self, store: Store, cache_seconds: float = 0.5, cache_size: int = 100_000,
                 min_free_bytes: int = 0, cache_bytes: int = DEFAULT_MAX_BYTES,
                 prefill: int = 0) -> None:
        self.store = store
        self.prefill = min(prefill, cache_size)  # see _prefill
        self._prefilled: set[int] = set()
        self._prefills: list[threading.Thread] = []
        self.disk = DiskWatch(min_free_bytes)  # can writes succeed? (/readyz)
        self.reader = store.reader(READ_BUSY_TIMEOUT_MS)
        self.cache_seconds = cache_seconds
        self._flags: dict[int, FlagSet] = {}
        self._flags_lock = threading.Lock()
        # Property sets by ("g", project, type, key) / ("p", project, distinct id): bounded
        # by bytes and entries; read lock-free by the embedded FlagClient (propcache.py).
        self._props = PropertyCache(cache_bytes, cache_size, max_age=PROPERTIES_MAX_AGE)
        self._links: TTLCache = TTLCache(maxsize=cache_bytes, ttl=cache_seconds,
                                         getsizeof=_entry_size)
        self._props_lock = threading.Lock()
        self._change_id: int | None = None  # position in the change log
        self._changes_checked = -float("inf")
        self._tokens: TTLCache = TTLCache(maxsize=10_000, ttl=min(cache_seconds, 1.0))
        # Last good values, kept past their TTL for when the database is unavailable.
        self._stale = PropertyCache(cache_bytes, cache_size)
        self._stale_tokens: LRUCache = LRUCache(maxsize=10_000)
        self._warned: dict[str, float] = {}

    def close(self) -> None:
        for thread in self._prefills:  # never close the store under a prefill's read
            thread.join(timeout=10)
        self.reader.close()
        self.store.close()

    # ------------------------------------------------------------ caches

    def read(self, fn: Any, *args: Any) -> Any:
        """A store read; `fn` is a method of `self.reader`, whose connections have a short
        busy timeout: decide must not hang for the store's 15 s write timeout when
        something holds an exclusive lock."""
        return fn(*args)

    def _serving_stale(self, what: str, error: Exception) -> None:
        now = time.monotonic()
        if now - self._warned.get(what, -_WARN_EVERY) >= _WARN_EVERY:
            self._warned[what] = now
            log.warning("database unavailable (%s); serving the last good %s", error, what)

    def sync_changes(self) -> None:
        """Evict the property sets ingestion changed since the last look (at most every
        `cache_seconds`); a worker that fell behind the kept log forgets everything."""
        now = time.monotonic()
        if now - self._changes_checked < self.cache_seconds:
            return
        self._changes_checked = now
        self._props.expire(now)  # PROPERTIES_MAX_AGE
        try:
            rows, last, first = self.reader.changes_since(self._change_id)
        except DatabaseError:
            return  # the next look catches up; meanwhile PROPERTIES_MAX_AGE bounds staleness
        with self._props_lock:
            if self._change_id is not None and first > self._change_id + 1:
                self._props.clear()
            for pid, kind, group_type, key in rows:
                self._props.pop(("g", pid, group_type, key) if kind == "group"
                                else ("p", pid, key), None)
            self._change_id = last

    @property
    def property_cache(self) -> PropertyCache:
        """The cache of stored property sets (`cached` fills it; `sync_changes` evicts)."""
        return self._props

    def cached(self, key: tuple, fn: Any, *args: Any, links: bool = False) -> Any:
        """`fn(*args)` through the cache (`links`: the short-lived one for parent links); on
        a database error the last good value (kept past its TTL) is served; the error
        propagates only if there is none."""
        self.sync_changes()
        cache = self._links if links else self._props
        with self._props_lock:
            try:
                return cache[key]
            except KeyError:
                pass
        position = self._change_id
        try:
            value = self.read(fn, *args)
        except DatabaseError as e:
            with self._props_lock:
                try:
                    value = self._stale[key]
                except KeyError:
                    raise e from None
                cache[key] = value  # retried after the TTL, not on every request
            self._serving_stale("properties", e)
            return value
        value = self._props.canonical(value)  # one copy for both caches (propcache.py)
        with self._props_lock:
            # If another thread moved through the change log while this read ran, the
            # eviction it did may have been for this very key: do not keep the value.
            if self._change_id == position:
                cache[key] = value
            self._stale[key] = value
        return value

    def project_for_token(self, token: str, kind: str) -> dict[str, Any] | None:
        """The project of a live token (cached briefly; a revoked token stops within a second).
        While the database is unavailable a token seen valid before keeps working."""
        if not isinstance(token, str) or not token:
            return None
        key = (kind, token)
        with self._props_lock:
            hit = self._tokens.get(key)
        if hit is not None:
            return hit or None
        try:
            project = self.read(self.reader.project_for_token, token, kind)
        except DatabaseError as e:
            with self._props_lock:
                project = self._stale_tokens.get(key)
            if project is None:
                raise
            self._serving_stale("tokens", e)
        with self._props_lock:
            self._tokens[key] = project or {}
            if project:
                self._stale_tokens[key] = project
            else:
                self._stale_tokens.pop(key, None)
        return project

    def flag_set(self, project_id: int) -> FlagSet:
        """The project's compiled flags, re-read when `flags_rev` changed (checked at most
        every `cache_seconds`); the last good set while the database is unavailable."""
        now = time.monotonic()
        current = self._flags.get(project_id)
        if current is not None and now - current.checked_at < self.cache_seconds:
            return current
        try:
            rev = self.read(self.reader.flags_rev, project_id)
            if current is not None and current.rev == rev:
                current.checked_at = now
                return current
            with self._flags_lock:
                definitions = self.read(self.reader.list_flags, project_id)
                project = self.read(self.reader.get_project, project_id) or {}
                keys = hashed_keys(policy_of(project.get("private_properties")))
                salt = self.read(self.reader.hash_salt, project_id) if keys else ""
                compiled = compile_project_flags(definitions, keys, salt)
                signing = (self.read(self.reader.signing_keys, project_id, True)
                           if project.get("require_signed_groups")
                           or project.get("require_signed_persons") else None)
                fresh = FlagSet(rev, compiled, definitions, _etag(definitions, keys), now,
                                private_keys=keys, salt=salt,
                                policy=context_policy(project, signing))
                self._flags[project_id] = fresh
            if current is None:
                self._start_prefill(project_id)
        except DatabaseError as e:
            if current is None:
                raise
            current.checked_at = now  # retried after cache_seconds, not on every request
            self._serving_stale("flag definitions", e)
            return current
        return fresh

    def _start_prefill(self, project_id: int) -> None:
        if self.prefill <= 0 or project_id in self._prefilled:
            return
        self._prefilled.add(project_id)
        thread = threading.Thread(target=self._prefill, args=(project_id,), daemon=True,
                                  name="flagsvc-prefill")
        self._prefills.append(thread)
        thread.start()

    def _prefill(self, project_id: int, chunk: int = 500) -> None:
        """Load the project's most recently created groups into the property cache (the
        `CACHE_PREFILL` setting), oldest first so that the newest are the last evicted.
        Consistent with the change log as `cached` is: the position is taken before the
        read, and filling stops as soon as the position moves (an eviction done meanwhile
        may have been for a set read before it); entries already cached are kept."""
        try:
            self.sync_changes()
            position = self._change_id
            rows = self.read(self.reader.recent_group_properties, project_id, self.prefill)
        except Exception:  # noqa: BLE001 (only a warm-up: requests read what they need)
            log.debug("cache prefill of project %s skipped", project_id, exc_info=True)
            return
        if position is None:
            return
        rows.reverse()
        for i in range(0, len(rows), chunk):
            with self._props_lock:  # a chunk at a time: requests are not held up
                if self._change_id != position:
                    return
                for gtype, key, props in rows[i:i + chunk]:
                    cache_key = ("g", project_id, gtype, key)
                    if cache_key not in self._props:
                        self._props.put(cache_key, props)

    def warm_up(self, max_projects: int = WARM_PROJECTS) -> int:
        """Load every project's flag set and api token (up to `max_projects`) into the
        caches, so that this worker answers decide from them during an outage even if it
        served nothing before (degraded decide used to be per worker: a fresh one answered
        503). Returns how many projects it loaded; a database error ends it quietly."""
        done = 0
        try:
            for project in self.read(self.reader.list_projects)[:max_projects]:
                if project.get("api_token"):
                    self.project_for_token(project["api_token"], "api")
                self.flag_set(project["id"])
                done += 1
        except DatabaseError as e:
            log.info("warm-up stopped after %d projects: %s", done, e)
        finally:
            self.reader.release()  # this thread serves no request: its connections go back
            self.store.release()
        return done

    def start_warm_up(self) -> threading.Thread:
        """`warm_up` in the background (a gunicorn worker's start: flagsvc/server.py)."""
        thread = threading.Thread(target=self.warm_up, daemon=True, name="flagsvc-warm-up")
        thread.start()
        return thread

    def forget_tokens(self) -> None:
        """Forget cached token lookups (after a rotation made here)."""
        with self._props_lock:
            self._tokens.clear()

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
        return self.evaluate_checked(project_id, ctx, keys)[0]

    def evaluate_checked(self, project_id: int, ctx: Context, keys: Iterable[str] | None = None
                         ) -> tuple[dict[str, FlagResult], bool, FlagSet]:
        """Results, whether a property lookup failed with nothing stale to serve (the
        answers may then miss stored properties), and the flag set they come from."""
        resolver = self.resolver(project_id)
        flag_set = self.flag_set(project_id)
        results = evaluate_all(flag_set.compiled, flag_set.prepare(ctx), resolver, keys)
        return results, resolver.degraded, flag_set


def make_context(distinct_id: Any = None, groups: Any = None, person_properties: Any = None,
                 group_properties: Any = None, now: float | None = None) -> Context:
    """A Context from loosely typed request data (wrong shapes are dropped, never raised).
    Well-formed dicts are used as they are (the engine never changes them)."""
    if type(groups) is dict:
        for k, v in groups.items():
            if type(k) is not str or type(v) is not str:
                groups = _clean_groups(groups)
                break
    else:
        groups = _clean_groups(groups)
    if type(person_properties) is not dict:
        person_properties = EMPTY if person_properties is None else (
            dict(person_properties) if isinstance(person_properties, Mapping) else EMPTY)
    if type(group_properties) is dict:
        for k, v in group_properties.items():
            if type(k) is not str or type(v) is not dict:
                group_properties = _clean_group_properties(group_properties)
                break
    else:
        group_properties = _clean_group_properties(group_properties)
    did = None if distinct_id is None or distinct_id == "" else str(distinct_id)
    return Context(did, groups, person_properties, group_properties,
                   time.time() if now is None else now)


def _clean_groups(groups: Any) -> Mapping[str, str]:
    if groups is None or not isinstance(groups, Mapping):
        return EMPTY
    return {str(k): str(v) for k, v in groups.items()
            if v is not None and not isinstance(v, (dict, list))}


def _clean_group_properties(group_properties: Any) -> Mapping[str, Mapping[str, Any]]:
    if group_properties is None or not isinstance(group_properties, Mapping):
        return EMPTY
    return {str(k): dict(v) for k, v in group_properties.items() if isinstance(v, Mapping)}


def _entry_size(value: Any) -> int:
    return ENTRY_OVERHEAD + size_of(value)


def _etag(definitions: list[dict[str, Any]], private_keys: frozenset[str] = frozenset()) -> str:
    body = json.dumps([[(d["id"], d["version"]) for d in definitions], sorted(private_keys)],
                      separators=(",", ":"))
    return '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
