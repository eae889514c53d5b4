"""Finding the key of a group type for a request, through parent links if needed (SPEC §4).

The request names some groups (`{type: key}`). The key of type T is the request's own
if it names T; otherwise it is inferred by walking up parent links from each named group
in turn (the first MAX_STARTS of them: the work per request is bounded whatever the size
of its map), at most MAX_DEPTH steps, stopping at a cycle. No key is ever made up: a type
that cannot be found is None (the caller reports `no_group_type`).
"""

from __future__ import annotations

from collections.abc import Mapping

from .context import Resolver

MAX_DEPTH = 10
MAX_STARTS = 10  # named groups inference walks from, at most (flagsvc.limits)

Path = tuple[tuple[str, str], ...]


def find_group_key(
    group_type: str, groups: Mapping[str, str], resolver: Resolver
) -> tuple[str, Path | None] | None:
    """(key, path) where path is None when the request named the type itself, or the
    chain of (type, key) walked from a named group up to the found one."""
    key = groups.get(group_type)
    if key is not None and key != "":  # an empty key names no group
        return str(key), None
    starts = 0
    for start_type, start_key in groups.items():
        if start_key is None or start_key == "":
            continue
        starts += 1
        if starts > MAX_STARTS:
            break
        node = (start_type, str(start_key))
        path = [node]
        seen = {node}
        for _ in range(MAX_DEPTH):
            found = resolver.group_parent(*node)
            if not found or found[1] is None or found[1] == "":
                break
            # A store may hand back a list or a row: make it a hashable (type, key) pair.
            parent = (str(found[0]), str(found[1]))
            if parent in seen:
                break
            path.append(parent)
            if parent[0] == group_type:
                return parent[1], tuple(path)
            seen.add(parent)
            node = parent
    return None
