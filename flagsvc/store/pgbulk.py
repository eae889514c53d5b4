"""Executemany as one statement on PostgreSQL (pg.py's `executemany`).

An ingestion batch writes a few hundred rows (events, groups, persons, their distinct ids,
memberships, change-log rows); psycopg's executemany sends one statement per row, each
parsed, planned and run by PostgreSQL and each costing psycopg's per-row Python work. The
same `INSERT ... VALUES (?, ...)` or `UPDATE ... WHERE id = ?` text is rewritten once into a
statement over `json_to_recordset` of one JSON parameter (serialized by orjson), in the
columns' own types, read from the catalog once per table.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import psycopg

_BULK_INSERT = re.compile(
    r"^\s*INSERT INTO (\w+) \(([\w\s,]+)\) VALUES \(\s*%s(?:\s*,\s*%s)*\s*\)(.*)$", re.S)
_BULK_UPDATE = re.compile(r"^\s*UPDATE (\w+) SET ((?:\w+ = %s, )*\w+ = %s) WHERE id = %s\s*$",
                          re.S)
# statement -> (bulk text, table, columns), or None where it has no bulk form
_bulk_cache: dict[str, tuple[str, str, list[str], bool] | None] = {}
# table -> {column: type} (the same in every schema: the migrations make it)
_column_types: dict[str, dict[str, str]] = {}
_bulk_text: dict[str, str] = {}  # statement -> its bulk text with the columns' types


def bulk_form(sql: str, text: str) -> tuple[str, str, list[str], bool] | None:
    """The one-statement form of an executemany of `INSERT ... VALUES (?, ...) [ON
    CONFLICT ...]` or `UPDATE t SET a = ?, ... WHERE id = ?`: the rows travel as one JSON
    parameter, so a batch of rows is one statement for PostgreSQL to parse, plan and run
    instead of one per row, and psycopg's per-row work is gone (text with `__ROWS__` and
    `__COLUMNS__` for the row source and its typed columns, table, columns in parameter
    order, whether it is an UPDATE)."""
    if sql in _bulk_cache:
        return _bulk_cache[sql]
    out: tuple[str, str, list[str], bool] | None = None
    m = _BULK_INSERT.match(text)
    if m and "RETURNING" not in m.group(3).upper():
        cols = [c.strip() for c in m.group(2).split(",")]
        if m.group(0).count("%s") == len(cols) and "%s" not in m.group(3):
            names = ", ".join(cols)
            out = (f"INSERT INTO {m.group(1)} ({names}) SELECT {names} FROM "
                   f"__ROWS__ AS v(__COLUMNS__){m.group(3)}", m.group(1), cols, False)
    m = _BULK_UPDATE.match(text)
    if m:
        cols = [part.split(" = ")[0].strip() for part in m.group(2).split(", ")]
        sets = ", ".join(f"{c} = v.{c}" for c in cols)
        # (`id = ANY(...)` too: joined on v.id alone, the planner estimates the row source
        # at 100 rows and, for a table without statistics or of a few ten thousand rows,
        # hashes them against a scan of the whole table; the ids make it an index probe)
        out = (f"UPDATE {m.group(1)} SET {sets} FROM __ROWS__ AS v(__COLUMNS__) "
               f"WHERE {m.group(1)}.id = v.id AND {m.group(1)}.id = ANY(%s::bigint[])",
               m.group(1), [*cols, "id"], True)
    _bulk_cache[sql] = out
    return out


def _types(raw: psycopg.Connection, table: str) -> dict[str, str]:
    types = _column_types.get(table)
    if types is None:
        types = _column_types[table] = dict(raw.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (table,)).fetchall())
    return types


def run_bulk(raw: psycopg.Connection, cur: psycopg.Cursor, text: str,
             form: tuple[str, str, list[str], bool], rows: list[Any]) -> None:
    """Run an executemany (`text`: its statement) as its one-statement form (`bulk_form`):
    the rows travel as one JSON array (orjson: no per-value work in Python), expanded by
    json_to_recordset into the columns' own types. An UPDATE of the same id twice keeps
    executemany (one statement would apply only one of them)."""
    bulk, table, cols, update = form
    if update and len({r[-1] for r in rows}) < len(rows):
        cur.executemany(text, rows)
        return
    types = _types(raw, table)
    full = _bulk_text.get(text)
    if full is None:
        full = _bulk_text[text] = bulk.replace(
            "__ROWS__", "json_to_recordset(%s::json)").replace(
            "__COLUMNS__", ", ".join(f"{c} {types[c]}" for c in cols))
    documents = {i for i, c in enumerate(cols) if types[c] in ("jsonb", "json")}
    if documents:  # a serialized document goes in as JSON, not as a JSON string
        rows = [tuple(orjson.Fragment(v) if i in documents and v is not None else v
                      for i, v in enumerate(r)) for r in rows]
    document = orjson.dumps([dict(zip(cols, r, strict=True)) for r in rows]).decode()
    cur.execute(full, (document, [r[-1] for r in rows]) if update else (document,))
