"""What the console's pickers offer: the property keys ingestion has stored for each group
type (and for persons), and which group type is the parent of which (the hierarchy)."""

from __future__ import annotations

from typing import Any

from .db import loads

KEYS_SAMPLED = 500  # the most recently updated groups (persons) of a type read for their keys


class CatalogMixin:
    conn: Any

    def group_property_keys(self, project_id: int, group_type: str,
                            sample: int = KEYS_SAMPLED) -> list[str]:
        rows = self.conn().execute(
            "SELECT properties FROM groups WHERE project_id = ? AND group_type = ? "
            "ORDER BY updated_at DESC LIMIT ?", (project_id, group_type, sample))
        return _keys(r[0] for r in rows)

    def person_property_keys(self, project_id: int, sample: int = KEYS_SAMPLED) -> list[str]:
        rows = self.conn().execute(
            "SELECT properties FROM persons WHERE project_id = ? ORDER BY id DESC LIMIT ?",
            (project_id, sample))
        return _keys(r[0] for r in rows)

    def type_links(self, project_id: int, sample: int = 5000) -> list[tuple[str, str]]:
        """(child type, parent type) pairs seen among the project's groups with a parent (a
        parent named without its type is the stored group of that key)."""
        rows = self.conn().execute(
            "SELECT DISTINCT c.group_type, COALESCE(c.parent_type, p.group_type) FROM "
            "(SELECT group_type, parent_type, parent_key FROM groups WHERE project_id = ? "
            "AND parent_key IS NOT NULL ORDER BY updated_at DESC LIMIT ?) c "
            "LEFT JOIN groups p ON p.project_id = ? AND p.group_key = c.parent_key "
            "AND c.parent_type IS NULL AND p.group_type <> c.group_type",
            (project_id, sample, project_id)).fetchall()
        return sorted({(c, p) for c, p in rows if p is not None and p != c})


def _keys(texts: Any) -> list[str]:
    found: set[str] = set()
    for text in texts:
        props = loads(text)
        if isinstance(props, dict):
            found.update(k for k in props if isinstance(k, str))
    return sorted(found)
