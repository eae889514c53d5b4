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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("flagsvc", "unleash", "posthog")


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

    def warn(self, key: str, message: str) -> None:
        found = self.warnings.setdefault(key, [])
        if message not in found:
            found.append(message)


def convert(fmt: str, data: Any, **options: Any) -> Converted:
    """Convert an export of tool `fmt` (see FORMATS); options are the converter's own."""
    converters: dict[str, Callable[..., Converted]] = {
        "flagsvc": _from_flagsvc, "unleash": _unleash, "posthog": _posthog}
    if fmt not in converters:
        raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    return converters[fmt](data, **options)


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
