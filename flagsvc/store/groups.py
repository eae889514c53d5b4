"""Reading groups and persons: properties, parents, children, members, recent events."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from .db import NotFound, json_key_path, loads

# A group's "recent events" are looked for among this many events its project stored last:
# events are not indexed by group, so this bounds the scan however many are stored (≈ 0.15 s
# when none match, ≈ 10 ms when 20 are found early; it took 5.5 s over 2M events unbounded).
# A group quiet for longer shows none.
RECENT_EVENTS_SCANNED = 200_000
# Rows a preview's scan of every group reads per query (iter_groups).
SCAN_PAGE = 5000


def _group(row: tuple) -> dict[str, Any]:
    gid, gtype, key, props, ptype, pkey, created, last_seen, updated = row
    return {"id": gid, "group_type": gtype, "group_key": key, "properties": loads(props),
            "parent": {"group_type": ptype, "group_key": pkey} if pkey is not None else None,
            "created_at": created, "last_seen": last_seen, "updated_at": updated}


_GCOLS = ("id, group_type, group_key, properties, parent_type, parent_key, created_at, "
          "last_seen, updated_at")


class GroupsMixin:
    conn: Any

    def group_properties(self, project_id: int, group_type: str, key: str) -> dict | None:
        row = self.conn().execute(
            "SELECT properties FROM groups "
            "WHERE project_id = ? AND group_type = ? AND group_key = ?",
            (project_id, group_type, key)).fetchone()
        return loads(row[0]) if row else None

    def recent_group_properties(self, project_id: int,
                                limit: int) -> list[tuple[str, str, dict]]:
        """(type, key, properties) of the project's `limit` most recently created groups,
        newest first (a worker's cache prefill, service.py)."""
        rows = self.conn().execute(
            "SELECT group_type, group_key, properties FROM groups WHERE project_id = ? "
            "ORDER BY id DESC LIMIT ?", (project_id, limit))
        return [(t, k, loads(p)) for t, k, p in rows]

    def group_parent(self, project_id: int, group_type: str, key: str) -> tuple[str, str] | None:
        """The parent (type, key) of a group. A parent given without its type is the stored
        group with that key (of another type by preference), looked up now, so a parent
        that arrives after its child is still found."""
        row = self.conn().execute(
            "SELECT parent_type, parent_key FROM groups WHERE project_id = ? AND group_type = ? "
            "AND group_key = ?", (project_id, group_type, key)).fetchone()
        if row is None or row[1] is None:
            return None
        ptype, pkey = row
        if ptype is None:
            ptype = self.type_of_key(project_id, pkey, prefer_not=group_type)
            if ptype is None:
                return None
        return ptype, pkey

    def type_of_key(self, project_id: int, key: str, prefer_not: str | None = None) -> str | None:
        found = self.conn().execute(
            "SELECT group_type FROM groups WHERE project_id = ? AND group_key = ? "
            "ORDER BY group_type = ?, updated_at DESC LIMIT 1",
            (project_id, key, prefer_not)).fetchone()
        return found[0] if found else None

    def children_page(self, project_id: int, group_type: str, key: str,
                      after: tuple[str, str] | None = None, limit: int = 50
                      ) -> tuple[list[dict[str, Any]], bool]:
        """One page of a group's children, in get_group's order, from just after `after`
        (type, key): at most `limit`, each with `has_children`, and whether more follow.
        Keyset paging over the parent index: a group with 100,000 children costs a page
        what one with 100 does (the console's tree loads each level a page at a time)."""
        conn = self.conn()
        out: list[dict[str, Any]] = []
        resolved: dict[str, str | None] = {}
        cursor = after or ("", "")
        while len(out) <= limit:
            rows = conn.execute(
                "SELECT c.group_type, c.group_key, c.parent_type, EXISTS (SELECT 1 FROM groups "
                "g WHERE g.project_id = c.project_id AND g.parent_key = c.group_key) "
                "FROM groups c WHERE c.project_id = ? AND c.parent_key = ? AND "
                "(c.parent_type = ? OR c.parent_type IS NULL) AND (c.group_type > ? OR "
                "(c.group_type = ? AND c.group_key > ?)) ORDER BY c.group_type, c.group_key "
                "LIMIT ?", (project_id, key, group_type, cursor[0], cursor[0], cursor[1],
                            limit + 1)).fetchall()
            for t, k, ptype, has in rows:
                if ptype is None:  # a typeless parent: this group's only if it resolves here
                    if t not in resolved:
                        resolved[t] = self.type_of_key(project_id, key, prefer_not=t)
                    if resolved[t] != group_type:
                        continue
                out.append({"group_type": t, "group_key": k, "has_children": bool(has)})
            if len(rows) <= limit:
                break
            cursor = (rows[-1][0], rows[-1][1])
        return out[:limit], len(out) > limit

    def children_count(self, project_id: int, group_type: str, key: str,
                       up_to: int = 10_000) -> int:
        """How many children a group has (as children_page counts them; typeless parents
        resolved once per child type), counted up to `up_to` + 1 rows of the parent index:
        more than `up_to` answers `up_to` + 1, at a bounded cost."""
        total = 0
        for t, typeless, n in self.conn().execute(
                "SELECT group_type, typeless, COUNT(*) FROM (SELECT group_type, "
                "CASE WHEN parent_type IS NULL THEN 1 ELSE 0 END AS typeless FROM groups "
                "WHERE project_id = ? AND parent_key = ? AND (parent_type = ? OR parent_type "
                "IS NULL) LIMIT ?) c GROUP BY group_type, typeless",
                (project_id, key, group_type, up_to + 1)):
            if not typeless or self.type_of_key(project_id, key, prefer_not=t) == group_type:
                total += n
        return min(total, up_to + 1)

    def members_page(self, group_id: int, after: tuple[float, int] | None = None,
                     limit: int = 50) -> tuple[list[dict[str, Any]], bool]:
        """One page of a group's members (get_group's `group["id"]`), most recently seen
        first, from just after `after` (last_seen, person_id: the `cursor` of a page's last
        member), and whether more follow: keyset pages, so the 10,000th member is reached
        a page at a time, never by an offset."""
        sql = ("SELECT m.person_id, (SELECT distinct_id FROM person_distinct_ids p "
               "WHERE p.person_id = m.person_id ORDER BY rowid LIMIT 1), m.first_seen, "
               "m.last_seen FROM memberships m WHERE m.group_id = ?")
        args: tuple[Any, ...] = (group_id,)
        if after is not None:
            sql += " AND (m.last_seen < ? OR (m.last_seen = ? AND m.person_id < ?))"
            args += (after[0], after[0], after[1])
        rows = self.conn().execute(sql + " ORDER BY m.last_seen DESC, m.person_id DESC LIMIT ?",
                                   (*args, limit + 1)).fetchall()
        return [{"distinct_id": d, "first_seen": f, "last_seen": last, "cursor": (last, pid)}
                for pid, d, f, last in rows[:limit]], len(rows) > limit

    def members_count(self, group_id: int, up_to: int = 10_000) -> int:
        """How many members a group has, counted up to `up_to` + 1 (then `up_to` + 1)."""
        row = self.conn().execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM memberships WHERE group_id = ? LIMIT ?) m",
            (group_id, up_to + 1)).fetchone()
        return int(row[0])

    def get_group(self, project_id: int, group_type: str, key: str,
                  events: int = 20, members: int = 100, children: int = 1000
                  ) -> dict[str, Any]:
        """A group's profile: properties, parent, children (the first `children`; the
        console pages them with children_page), members, recent events."""
        conn = self.conn()
        row = conn.execute(f"SELECT {_GCOLS} FROM groups WHERE project_id = ? AND group_type = ? "
                           "AND group_key = ?", (project_id, group_type, key)).fetchone()
        if row is None:
            raise NotFound(f"group {group_type}/{key} does not exist")
        group = _group(row)
        parent = self.group_parent(project_id, group_type, key)
        group["parent"] = {"group_type": parent[0], "group_key": parent[1]} if parent else (
            group["parent"])
        kids = conn.execute(
            "SELECT group_type, group_key, parent_type FROM groups WHERE project_id = ? AND "
            "parent_key = ? AND (parent_type = ? OR parent_type IS NULL) "
            "ORDER BY group_type, group_key LIMIT ?", (project_id, key, group_type, children)
        ).fetchall() if children else []
        # A parent named without its type is whichever group has that key (see group_parent);
        # list the child only under that one, not under every group sharing the key.
        resolved: dict[str, str | None] = {}
        for t, _, ptype in kids:
            if ptype is None and t not in resolved:
                resolved[t] = self.type_of_key(project_id, key, prefer_not=t)
        group["children"] = [{"group_type": t, "group_key": k} for t, k, ptype in kids
                             if ptype is not None or resolved[t] == group_type]
        group["members"] = [
            {"distinct_id": d, "first_seen": f, "last_seen": last}
            for d, f, last in conn.execute(
                "SELECT (SELECT distinct_id FROM person_distinct_ids p "
                "WHERE p.person_id = m.person_id ORDER BY rowid LIMIT 1), "
                "m.first_seen, m.last_seen FROM memberships m "
                "WHERE m.group_id = ? ORDER BY m.last_seen DESC LIMIT ?", (group["id"], members))]
        # The group's events among the project's last RECENT_EVENTS_SCANNED stored, newest
        # first: the retention index (project, receive time) walked backwards, stopping at
        # `events` found — a busy project beside it does not push a quiet project's events
        # out of the window. Ordered by receive time: after the server clock steps back,
        # events received before the step sort above those received after it for a while.
        in_group, in_group_args = self._event_in_group(group_type, key)
        group["recent_events"] = [
            {"event": e, "type": t, "distinct_id": d, "timestamp": ts,
             "properties": loads(p)}
            for e, t, d, ts, p in conn.execute(
                "SELECT event, type, distinct_id, timestamp, properties FROM events e "
                "JOIN (SELECT id, received_at FROM (SELECT id, received_at, groups FROM events "
                "INDEXED BY events_received WHERE project_id = ? "
                "ORDER BY received_at DESC, id DESC LIMIT ?) recent "
                f"WHERE {in_group} LIMIT ?) w ON e.id = w.id "
                "ORDER BY w.received_at DESC, w.id DESC",
                (project_id, RECENT_EVENTS_SCANNED, *in_group_args, events))]
        return group

    @staticmethod
    def _event_in_group(group_type: str, key: str) -> tuple[str, list[Any]]:
        """A WHERE clause (and its parameters) for "the event's groups name this group":
        {type: key}, or {type: [keys]} when the event named several groups of the type."""
        return ("EXISTS (SELECT 1 FROM json_each(groups) g WHERE g.key = ? "
                "AND (g.value = ? OR (g.type = 'array' AND EXISTS (SELECT 1 FROM "
                "json_each(g.value) v WHERE v.value = ?))))", [group_type, key, key])

    @staticmethod
    def _property_filter(key: str, value: Any) -> tuple[str, list[Any]]:
        """A WHERE clause (and its parameters) for "property `key` equals `value`" (a list:
        any of its values — the console searches a typed value as text and as JSON)."""
        values = (value if isinstance(value, list) else [value]) or [None]
        marks = ", ".join("?" * len(values))
        path = json_key_path(key)
        if path is None:
            return ("EXISTS (SELECT 1 FROM json_each(properties) WHERE key = ? "
                    f"AND value IN ({marks}))", [key, *values])
        return f"json_extract(properties, ?) IN ({marks})", [path, *values]

    _search_filter = "instr(group_key, ?) > 0"  # a substring of the key

    @staticmethod
    def _search_pattern(search: str) -> str:
        return search

    def list_groups(self, project_id: int, group_type: str | None = None,
                    properties: dict[str, Any] | None = None, search: str | None = None,
                    limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Groups (optionally of one type, with property equality filters — a list: any of
        its values —, or whose key contains `search`), and the total count."""
        where = ["project_id = ?"]
        args: list[Any] = [project_id]
        if group_type:
            where.append("group_type = ?")
            args.append(group_type)
        for k, v in (properties or {}).items():
            clause, values = self._property_filter(k, v)
            where.append(clause)
            args += values
        if search:
            where.append(self._search_filter)
            args.append(self._search_pattern(search))
        clause = " AND ".join(where)
        conn = self.conn()
        total = conn.execute(f"SELECT count(*) FROM groups WHERE {clause}", args).fetchone()[0]
        rows = conn.execute(f"SELECT {_GCOLS} FROM groups WHERE {clause} "
                            "ORDER BY group_type, group_key LIMIT ? OFFSET ?",
                            (*args, limit, offset))
        return [_group(r) for r in rows], total

    def iter_groups(self, project_id: int, group_type: str,
                    page: int = SCAN_PAGE) -> Generator[tuple[str, dict], None, None]:
        """(key, properties) of every group of a type in key order, for previews: read
        `page` rows at a time, each page one short index range read after the last key
        seen. A single query held every row at once on PostgreSQL (its client-side result:
        ~350 MB in the worker at 1M groups) and a read transaction open on SQLite for the
        whole scan (the WAL cannot be reset behind it). Groups written during the scan are
        seen if their key is past the page being read."""
        conn = self.conn()
        sql = ("SELECT group_key, properties FROM groups WHERE project_id = ? AND "
               "group_type = ? {} ORDER BY group_key LIMIT ?")
        rows = conn.execute(sql.format(""), (project_id, group_type, page)).fetchall()
        while True:
            for key, props in rows:
                yield key, loads(props)
            if len(rows) < page:
                return
            rows = conn.execute(sql.format("AND group_key > ?"),
                                (project_id, group_type, rows[-1][0], page)).fetchall()

    def changes_since(self, after_id: int | None) -> tuple[list[tuple], int, int]:
        """(project_id, kind, group_type, key) of property changes logged after `after_id`
        (None: none, just the position), the last id, and the oldest id still kept (a
        reader behind it has missed changes)."""
        conn = self.conn()
        # Two subqueries: SQLite answers a lone MIN or MAX from the index end, not both at once.
        last, first = conn.execute("SELECT COALESCE((SELECT MAX(id) FROM changes), 0), "
                                   "COALESCE((SELECT MIN(id) FROM changes), 0)").fetchone()
        if after_id is None or last <= after_id:
            return [], last, first
        rows = conn.execute("SELECT project_id, kind, group_type, key FROM changes "
                            "WHERE id > ? AND id <= ? ORDER BY id", (after_id, last)).fetchall()
        return rows, last, first

    # ------------------------------------------------------------ persons

    def person_properties(self, project_id: int, distinct_id: str) -> dict | None:
        row = self.conn().execute(
            "SELECT p.properties FROM person_distinct_ids d JOIN persons p ON p.id = d.person_id "
            "WHERE d.project_id = ? AND d.distinct_id = ?", (project_id, distinct_id)).fetchone()
        return loads(row[0]) if row else None

    def get_person(self, project_id: int, distinct_id: str) -> dict[str, Any]:
        conn = self.conn()
        row = conn.execute(
            "SELECT p.id, p.properties, p.created_at, p.last_seen FROM person_distinct_ids d "
            "JOIN persons p ON p.id = d.person_id WHERE d.project_id = ? AND d.distinct_id = ?",
            (project_id, distinct_id)).fetchone()
        if row is None:
            raise NotFound(f"person {distinct_id!r} does not exist")
        pid, props, created, last_seen = row
        ids = [r[0] for r in conn.execute(
            "SELECT distinct_id FROM person_distinct_ids WHERE person_id = ? ORDER BY rowid",
            (pid,))]
        groups = [{"group_type": t, "group_key": k, "first_seen": f, "last_seen": last}
                  for t, k, f, last in conn.execute(
                      "SELECT g.group_type, g.group_key, m.first_seen, m.last_seen "
                      "FROM memberships m "
                      "JOIN groups g ON g.id = m.group_id WHERE m.person_id = ? "
                      "ORDER BY g.group_type, g.group_key", (pid,))]
        return {"id": pid, "distinct_ids": ids, "properties": loads(props),
                "created_at": created, "last_seen": last_seen, "groups": groups}

    def iter_persons(self, project_id: int, page: int = SCAN_PAGE
                     ) -> Generator[tuple[int, str, dict], None, None]:
        """(person id, distinct id, properties) of every person, for previews of flags
        bucketed by person: the distinct id is the first the person had, the one the
        persons page shows. Read `page` persons at a time, as `iter_groups` reads groups."""
        conn = self.conn()
        sql = ("SELECT p.id, (SELECT distinct_id FROM person_distinct_ids d WHERE "
               "d.person_id = p.id ORDER BY rowid LIMIT 1), p.properties FROM persons p "
               "WHERE p.project_id = ? AND p.id > ? ORDER BY p.id LIMIT ?")
        after = -1
        while True:
            rows = conn.execute(sql, (project_id, after, page)).fetchall()
            for pid, distinct_id, props in rows:
                if distinct_id is not None:
                    yield pid, distinct_id, loads(props)
            if len(rows) < page:
                return
            after = rows[-1][0]

    def person_last_groups(self, person_id: int) -> dict[str, str]:
        """{group type: key} of the groups a person was last seen with, one per type (what
        an SDK would name for them)."""
        rows = self.conn().execute(
            "SELECT g.group_type, g.group_key FROM memberships m JOIN groups g "
            "ON g.id = m.group_id WHERE m.person_id = ? ORDER BY m.last_seen, g.group_key",
            (person_id,))
        return {gtype: key for gtype, key in rows}

    def list_persons(self, project_id: int, limit: int = 100,
                     offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        conn = self.conn()
        total = conn.execute("SELECT count(*) FROM persons WHERE project_id = ?",
                             (project_id,)).fetchone()[0]
        rows = conn.execute(
            "SELECT p.id, (SELECT distinct_id FROM person_distinct_ids d WHERE d.person_id = p.id "
            "ORDER BY rowid LIMIT 1), p.properties, p.created_at, p.last_seen FROM persons p "
            "WHERE p.project_id = ? ORDER BY p.id LIMIT ? OFFSET ?", (project_id, limit, offset))
        return [{"id": i, "distinct_id": d, "properties": loads(p), "created_at": c,
                 "last_seen": s} for i, d, p, c, s in rows], total
