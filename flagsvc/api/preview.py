"""Admin API, what a flag would do: the blast radius of a draft or saved flag over every
stored group of its bucket_by type (every stored person for a flag bucketed by person), the
groups a saved flag is on (or off) for, and why a flag has its value for one context
(explain). Nothing here writes.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Mapping
from typing import Any

from flask import Response

from .. import schemas as s
from ..engine import Context, Evaluation, FlagResult, explain
from ..errors import ValidationFailed
from ..evaluation import request_context
from ..limits import LimitError
from ..service import compile_project_flags
from .adminlib import body, bp, check_flag, json_response, load, query, stored_flag
from .common import admin_project, config, service

SAMPLE_SIZE = 10


class ScanResolver:
    """Stored data for scanning every group of a type: the scanned group's properties come
    with the scan; other lookups (parents, ancestors' properties) go to the store through a
    small per-request cache, so a preview never floods the service's shared cache."""

    def __init__(self, project_id: int, max_entries: int = 50_000) -> None:
        self.store = service().store
        self.project_id = project_id
        self.current: tuple[str, str, dict] | None = None  # (type, key, properties) scanned
        self.current_person: tuple[str, dict] | None = None  # (distinct id, properties)
        self._cache: dict[tuple, Any] = {}
        self._max = max_entries

    def _cached(self, key: tuple, fn: Any, *args: Any) -> Any:
        try:
            return self._cache[key]
        except KeyError:
            pass
        if len(self._cache) >= self._max:
            self._cache.clear()
        value = self._cache[key] = fn(self.project_id, *args)
        return value

    def person_properties(self, distinct_id: str) -> Mapping[str, Any] | None:
        cur = self.current_person
        if cur is not None and cur[0] == distinct_id:
            return cur[1]
        return self._cached(("p", distinct_id), self.store.person_properties, distinct_id)

    def group_properties(self, group_type: str, group_key: str) -> Mapping[str, Any] | None:
        cur = self.current
        if cur is not None and cur[0] == group_type and cur[1] == group_key:
            return cur[2]
        return self._cached(("g", group_type, group_key), self.store.group_properties,
                            group_type, group_key)

    def group_parent(self, group_type: str, group_key: str) -> tuple[str, str] | None:
        cur = self.current
        if cur is not None and cur[0] == group_type and cur[1] == group_key:
            return self.store.group_parent(self.project_id, group_type, group_key)
        return self._cached(("up", group_type, group_key), self.store.group_parent,
                            group_type, group_key)


def compiled_with(project_id: int, defn: Mapping[str, Any]) -> dict[str, Any]:
    """The project's flags compiled with `defn` in place of the stored flag of its key, as
    decide compiles them (values compared with hashed private keys hashed)."""
    flag_set = service().flag_set(project_id)
    others = [f for f in flag_set.definitions if f["key"] != defn["key"]]
    return compile_project_flags([*others, defn], flag_set.private_keys, flag_set.salt)


def _names_groups(defn: Mapping[str, Any]) -> bool:
    """Whether a flag's answer can depend on the groups a request names (a group property,
    a condition bucketed by a group type, or another flag, which may be)."""
    for c in defn.get("conditions") or []:
        if c.get("bucket_by") not in (None, s.PERSON):
            return True
        if any(p.get("type") in ("group", "flag") for p in c.get("properties") or []):
            return True
    return False


class Scan:
    """(key, result) for every stored group of the flag's bucket_by type — or, for a flag
    bucketed by person, (distinct id, result) for every stored person, with their stored
    properties and the groups they were last seen with — streamed, for at most `seconds`
    (the setting PREVIEW_SECONDS): a request that outlives the worker timeout is killed
    with nothing said (≈ 5 µs per group: 30 s is ~6M groups; ≈ 14 µs per person, 25 with
    their groups looked up), so a scan stops there and says so (`complete` is False; the
    counts cover the groups scanned, in group key order, or the persons scanned, in the
    order they were first stored)."""

    CHECK_EVERY = 1024  # groups between looks at the clock

    def __init__(self, project_id: int, defn: Mapping[str, Any], seconds: float,
                 persons: bool = True) -> None:
        bucket_by = defn.get("bucket_by") or s.PERSON
        if bucket_by == s.PERSON and not persons:
            raise ValidationFailed(
                "this lists groups of the flag's bucket_by type; this flag is bucketed by "
                "$person (its preview counts persons)",
                errors={"bucket_by": ["this needs a group type, not $person"]})
        self.project_id, self.defn, self.bucket_by = project_id, defn, bucket_by
        self.seconds = seconds
        self.complete = True

    def _contexts(self, resolver: ScanResolver,
                  now: float) -> Generator[tuple[str, Context], None, None]:
        store, bucket_by = service().store, self.bucket_by
        if bucket_by != s.PERSON:
            groups = store.iter_groups(self.project_id, bucket_by)
            try:
                for group_key, props in groups:
                    resolver.current = (bucket_by, group_key, props)
                    yield group_key, Context(groups={bucket_by: group_key}, now=now)
            finally:
                groups.close()  # ends the read (a long one holds the WAL back)
            return
        with_groups = _names_groups(self.defn)
        persons = store.iter_persons(self.project_id)
        try:
            for person_id, distinct_id, props in persons:
                resolver.current_person = (distinct_id, props)
                named = store.person_last_groups(person_id) if with_groups else {}
                yield distinct_id, Context(distinct_id=distinct_id, groups=named, now=now)
        finally:
            persons.close()

    def __iter__(self) -> Iterator[tuple[str, FlagResult]]:
        flags = compiled_with(self.project_id, self.defn)
        resolver = ScanResolver(self.project_id)
        deadline = time.monotonic() + self.seconds
        key = self.defn["key"]
        contexts = self._contexts(resolver, time.time())
        for n, (unit_key, ctx) in enumerate(contexts):  # n scanned before this one
            if n and n % self.CHECK_EVERY == 0 and time.monotonic() > deadline:
                self.complete = False
                contexts.close()
                return
            result = Evaluation(flags, ctx, resolver).flag(key)
            if result is not None:
                yield unit_key, result


def _scan(project_id: int, defn: Mapping[str, Any], persons: bool = True) -> Scan:
    return Scan(project_id, defn, config("PREVIEW_SECONDS"), persons)


def preview(project_id: int, defn: Mapping[str, Any]) -> dict[str, Any]:
    variants = [v["key"] for v in defn.get("variants") or []]
    counts = {"false": 0, **({v: 0 for v in variants} if variants else {"true": 0})}
    sample: dict[str, list[str]] = {k: [] for k in counts if k != "false"}
    reasons: dict[str, int] = {}
    total = 0
    scan = _scan(project_id, defn)
    for group_key, r in scan:
        total += 1
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
        label = "false" if not r.enabled else (r.variant if r.variant is not None else "true")
        counts[label] = counts.get(label, 0) + 1
        if label != "false":
            keys = sample.setdefault(label, [])
            if len(keys) < SAMPLE_SIZE:
                keys.append(group_key)
    return {"key": defn["key"], "bucket_by": defn.get("bucket_by"), "total": total,
            "enabled": total - counts["false"], "counts": counts, "reasons": reasons,
            "sample": sample, "complete": scan.complete}


def draft(project_id: int, data: Any) -> dict[str, Any]:
    """A draft flag validated as if it were saved (nothing is written)."""
    defn = load(s.FlagInputSchema(), data)
    defn.pop("version", None)
    check_flag(project_id, defn)
    return defn


@bp.post("/flags/preview")
def preview_draft() -> Response:
    project = admin_project("read")
    defn = draft(project["id"], body())
    return json_response(s.PreviewSchema().dump(preview(project["id"], defn)))


@bp.get("/flags/<ref>/preview")
def preview_saved(ref: str) -> Response:
    project = admin_project("read")
    flag = stored_flag(project["id"], ref)
    return json_response(s.PreviewSchema().dump(preview(project["id"], flag)))


@bp.get("/flags/<ref>/groups")
def flag_groups(ref: str) -> Response:
    """The groups a saved flag is on (or off) for, a page at a time, with their variant."""
    project = admin_project("read")
    args = query(s.FlagGroupsQuerySchema())
    flag = stored_flag(project["id"], ref)
    want, limit, offset = args["enabled"], args["limit"], args["offset"]
    page, total = [], 0
    scan = _scan(project["id"], flag, persons=False)
    for group_key, r in scan:
        if want is not None and r.enabled != want:
            continue
        if offset <= total < offset + limit:
            page.append({"group_key": group_key, "enabled": r.enabled, "variant": r.variant,
                         "value": r.value, "reason": r.reason})
        total += 1
    return json_response(s.FlagGroupsPageSchema().dump({
        "bucket_by": flag.get("bucket_by"), "total": total, "limit": limit, "offset": offset,
        "groups": page, "complete": scan.complete}))


# ---------------------------------------------------------------- explain


def _explain(project_id: int, defn: Mapping[str, Any], data: Mapping[str, Any]) -> Response:
    # The context as decide would use it (limits, client_properties, signed groups) ...
    try:
        resolved = request_context(service(), project_id, data.get("distinct_id"),
                                   data.get("groups"), data.get("person_properties"),
                                   data.get("group_properties"), data.get("signature"))
    except LimitError as e:
        raise ValidationFailed(str(e), errors={e.field: [e.message]}) from None
    ctx = service().flag_set(project_id).prepare(resolved.ctx)  # ... hashed as decide does
    out = explain(compiled_with(project_id, defn), defn["key"], ctx, service().resolver(project_id))
    return json_response(s.ExplainSchema().dump(
        {**(out or {}), "groups_ignored": resolved.groups_ignored,
         "person_ignored": resolved.person_ignored}))


@bp.post("/flags/explain")
def explain_draft() -> Response:
    project = admin_project("read")
    data = load(s.ExplainRequestSchema(), body())
    if "flag" not in data:
        raise ValidationFailed("a draft flag is required",
                               errors={"flag": ["a draft flag is required here"]})
    return _explain(project["id"], draft(project["id"], data["flag"]), data)


@bp.post("/flags/<ref>/explain")
def explain_saved(ref: str) -> Response:
    """Why the flag has its value for a context. A `flag` in the body explains that draft
    (with this flag's key) instead of the saved rules."""
    project = admin_project("read")
    data = load(s.ExplainRequestSchema(), body())
    saved = stored_flag(project["id"], ref)
    defn = draft(project["id"], {**data["flag"], "key": saved["key"]}) if "flag" in data else saved
    return _explain(project["id"], defn, data)

