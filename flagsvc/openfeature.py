"""An in-process OpenFeature provider (SPEC §5.2) for the `openfeature-sdk` package, over a
`FlagClient` (embedded or remote): the same engine as the server, no HTTP per decision.

    from openfeature import api
    from flagsvc import FlagClient
    from flagsvc.openfeature import FlagsvcProvider

    api.set_provider(FlagsvcProvider(FlagClient.from_server(url, secret_key)))
    api.get_client().get_string_value("ab-test", "control",
                                      EvaluationContext(attributes={"groups": {"project": "p1"}}))

Context convention: flagsvc/ofconvention.py (targetingKey, `groups`, `group_properties`, other
attributes as person properties). Values: boolean -> whether the flag is on; string -> the
variant key; integer / float / object -> the flag's payload. A value of another type is
TYPE_MISMATCH (the SDK then answers the default), and so is a string asked of a flag
without variants. Requires the `openfeature-sdk` package.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import (
    FlagNotFoundError,
    InvalidContextError,
    TargetingKeyMissingError,
    TypeMismatchError,
)
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from . import ofconvention as ofc
from .client import FlagClient
from .engine import FlagResult

__all__ = ["FlagsvcProvider"]


def _payload_json(payload: Any) -> str:
    import orjson

    return orjson.dumps(payload).decode()


class FlagsvcProvider(AbstractProvider):
    """OpenFeature provider over `client`. `watch_seconds`: how often it checks the flag
    definitions for changes (each flag's version) and emits PROVIDER_CONFIGURATION_CHANGED
    naming the changed flags; 0 turns that off. The client stays the caller's to close."""

    def __init__(self, client: FlagClient, watch_seconds: float = 1.0) -> None:
        super().__init__()
        self.client = client
        self.watch_seconds = watch_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._versions: dict[str, Any] = {}

    def get_metadata(self) -> Metadata:
        return Metadata(name="flagsvc")

    # ------------------------------------------------------------ lifecycle, events

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        self._versions = self._definition_versions()
        if self.watch_seconds > 0 and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="flagsvc-openfeature",
                                            daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _definition_versions(self) -> dict[str, Any]:
        """Each flag's (id, version), through the client's public calls."""
        return {k: (r.flag_id, r.version) for k, r in self.client.evaluate_all().items()}

    def _watch(self) -> None:
        while not self._stop.wait(self.watch_seconds):
            try:
                now = self._definition_versions()
            except Exception:  # noqa: BLE001 (a failing check is retried next time)
                continue
            before = self._versions
            changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
            self._versions = now
            if changed and hasattr(self, "_on_emit"):
                self.emit_provider_configuration_changed(
                    ProviderEventDetails(flags_changed=changed,
                                         message="flag definitions changed"))

    # ------------------------------------------------------------ resolution

    def _result(self, key: str, context: EvaluationContext | None) -> FlagResult:
        context = context or EvaluationContext()
        try:
            args = ofc.context_arguments(context.targeting_key, context.attributes)
        except ofc.InvalidContext as e:
            raise InvalidContextError(str(e)) from None
        args.pop("signature")  # in-process callers are trusted: nothing to verify
        r = self.client.evaluate(key, **args)
        if r is None:
            raise FlagNotFoundError(f"no flag {key!r}")
        if ofc.needs_targeting_key(r, args["distinct_id"]):
            raise TargetingKeyMissingError(
                f"{key!r} is bucketed by person: the context needs a targetingKey")
        return r

    def _details(self, r: FlagResult, value: Any) -> FlagResolutionDetails[Any]:
        return FlagResolutionDetails(value=value, reason=Reason(ofc.reason(r)),
                                     variant=ofc.variant(r),
                                     flag_metadata=ofc.metadata(r, _payload_json))

    def _payload(self, key: str, default: Any, context: EvaluationContext | None,
                 types: type | tuple[type, ...], name: str) -> FlagResolutionDetails[Any]:
        r = self._result(key, context)
        if not r.enabled or r.payload is None:
            return self._details(r, default)
        value = r.payload
        if isinstance(value, bool) or not isinstance(value, types):
            raise TypeMismatchError(f"{key!r}'s payload is not {name}")
        if name == "a float":
            value = float(value)  # type: ignore[arg-type]
        return self._details(r, value)

    def resolve_boolean_details(self, flag_key: str, default_value: bool,
                                evaluation_context: EvaluationContext | None = None
                                ) -> FlagResolutionDetails[bool]:
        r = self._result(flag_key, evaluation_context)
        return self._details(r, r.enabled)

    def resolve_string_details(self, flag_key: str, default_value: str,
                               evaluation_context: EvaluationContext | None = None
                               ) -> FlagResolutionDetails[str]:
        r = self._result(flag_key, evaluation_context)
        if not r.enabled:
            return self._details(r, default_value)
        if r.variant is None:
            raise TypeMismatchError(f"{flag_key!r} has no variants: resolve it as a boolean")
        return self._details(r, r.variant)

    def resolve_integer_details(self, flag_key: str, default_value: int,
                                evaluation_context: EvaluationContext | None = None
                                ) -> FlagResolutionDetails[int]:
        return self._payload(flag_key, default_value, evaluation_context, int, "an integer")

    def resolve_float_details(self, flag_key: str, default_value: float,
                              evaluation_context: EvaluationContext | None = None
                              ) -> FlagResolutionDetails[float]:
        return self._payload(flag_key, default_value, evaluation_context, (int, float),
                             "a float")

    def resolve_object_details(
            self, flag_key: str,
            default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
            evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._payload(flag_key, default_value, evaluation_context, (dict, list),
                             "an object")
