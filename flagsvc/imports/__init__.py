"""Flags from other tools, as flagsvc definitions: pure conversions, plain data in and out.

    result = convert("unleash", exported_json, environment="production")
    result.flags      # flagsvc flag definitions (the admin API's input shape)
    result.skipped    # source name -> why it has no flagsvc equivalent
    result.warnings   # flag key -> what behaves differently after the move

A flag is converted only when flagsvc evaluates it as the source tool does; what cannot be
kept exactly is either refused (`skipped`, with the reason) or, where the difference is
known and bounded (PostHog's hash), imported with a warning. Nothing here touches a store.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("flagsvc", "unleash", "posthog")
# The options each format's converter takes (convert() refuses the others).
OPTIONS: dict[str, tuple[str, ...]] = {
    "flagsvc": (), "unleash": ("environment", "group_types", "fields"),
    "posthog": ("group_types",)}
# A flagsvc flag key (the admin API's schema says the same).
KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class Unimportable(ValueError):
    """A source flag that flagsvc cannot evaluate the way its tool does."""


@dataclass
class Converted:
    """What a conversion produced."""

    flags: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    # Unleash: flag key -> {context field -> where flagsvc reads it}; see unleash.placement.
    fields: dict[str, dict[str, str]] = field(default_factory=dict)

    def refuse(self, key: str, reason: str) -> None:
        """`key` cannot be imported: said once, with nothing else said of it."""
        self.skipped.setdefault(key, reason)
        self.warnings.pop(key, None)
        self.fields.pop(key, None)

    def warn(self, key: str, message: str) -> None:
        found = self.warnings.setdefault(key, [])
        if message not in found:
            found.append(message)


def objects(value: Any, what: str) -> list[Mapping[str, Any]]:
    """A list of objects from an export (None: none), or Unimportable naming what is off."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise Unimportable(f"{what} must be a list of objects")
    return value


def object_of(value: Any, what: str) -> Mapping[str, Any]:
    """An object from an export (None: empty), or Unimportable naming what is off."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Unimportable(f"{what} must be an object")
    return value


def no_constant(name: str) -> Any:
    """json.loads' parse_constant: NaN and Infinity are JavaScript, not JSON."""
    raise ValueError(f"{name} is no JSON value")


def convert(fmt: str, data: Any, **options: Any) -> Converted:
    """Convert an export of tool `fmt` (see FORMATS); options are the converter's own."""
    converters: dict[str, Callable[..., Converted]] = {
        "flagsvc": _from_flagsvc, "unleash": _unleash, "posthog": _posthog}
    if fmt not in converters:
        raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    foreign = [k for k, v in options.items() if v and k not in OPTIONS[fmt]]
    if foreign:
        raise ValueError(f"{', '.join(foreign)}: not an option of format {fmt}")
    options = {k: v for k, v in options.items() if k in OPTIONS[fmt]}
    try:
        result = converters[fmt](data, **options)
    except Unimportable:
        raise
    except Exception as e:  # a shape no check above foresaw: say so, never crash the caller
        raise Unimportable(f"malformed {fmt} export ({type(e).__name__}: {e})") from None
    skip_dependants(result)
    return result


def dependencies_of(flag: Any) -> set[str]:
    """The keys of the flags a flag definition depends on (anything malformed: none)."""
    conditions = flag.get("conditions") if isinstance(flag, Mapping) else None
    found = set()
    for c in conditions if isinstance(conditions, list) else []:
        props = c.get("properties") if isinstance(c, Mapping) else None
        for f in props if isinstance(props, list) else []:
            if isinstance(f, Mapping) and f.get("type") == "flag":
                found.add(str(f.get("key")))
    return found


def skip_dependants(result: Converted) -> None:
    """Flags in `skipped` leave `flags`, and so does a flag that depends on one of them
    (transitively): said so, instead of a missing dependency the write would refuse."""
    while True:
        keep = []
        for flag in result.flags:
            key = flag.get("key") if isinstance(flag, Mapping) else None
            missing = sorted(dependencies_of(flag) & result.skipped.keys())
            if not isinstance(key, str) or (key not in result.skipped and not missing):
                keep.append(flag)  # (a malformed entry: the write says what is wrong)
                continue
            result.refuse(key, f"depends on {', '.join(missing)}, which cannot be imported")
        if len(keep) == len(result.flags):
            return
        result.flags = keep


def _from_flagsvc(data: Any) -> Converted:
    """flagsvc's own export ({"flags": [...]} or a list): taken as it is."""
    raw = data.get("flags") if isinstance(data, Mapping) else data
    if not isinstance(raw, list):
        raise Unimportable('expected {"flags": [...]} or a list of flags')
    return Converted(flags=list(raw))


def _unleash(data: Any, **options: Any) -> Converted:
    from .unleash import convert_unleash

    return convert_unleash(data, **options)


def _posthog(data: Any, **options: Any) -> Converted:
    from .posthog import convert_posthog

    return convert_posthog(data, **options)
