"""The peer SDKs set up as their users run them, with the reference flag bootstrapped: no
network, event sending off (issue 18). Each `*_client` returns an object whose public
call bench_client.py times.

- PostHog (`posthog`): `Posthog(..., send=False)` with the local-evaluation definitions
  set as the SDK's own poller sets them (`feature_flags`, `group_type_mapping`); calls
  `get_feature_flag(..., only_evaluate_locally=True, send_feature_flag_events=False)` and
  `get_all_flags(..., only_evaluate_locally=True)`; and the bare matcher
  `posthog.feature_flags.match_feature_flag_properties`.
- GrowthBook (`growthbook`): one `GrowthBook(features=...)`, `set_attributes()` per request
  then `get_feature_value()` (cheaper than a new instance per request, which its docs also
  show: both are printed).
- Unleash (`UnleashClient`): bootstrapped through `FileCache.bootstrap_from_dict`,
  `initialize_client(fetch_toggles=False)`, metrics and registration disabled; calls
  `get_variant(key, context)`. Its hash is flagsvc's (SPEC §4), so its answers must equal
  flagsvc's exactly; PostHog and GrowthBook hash differently, so only the organizations the
  conditions exclude must agree (False everywhere).
"""

from __future__ import annotations

import tempfile
import warnings
from typing import Any

import common


def posthog_client(flags: list[dict[str, Any]]) -> Any:
    from posthog import Posthog

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ph = Posthog("phc_bench", host="http://127.0.0.1:9", personal_api_key="phx_bench",
                     send=False, poll_interval=10**6, disable_geoip=True,
                     enable_exception_autocapture=False)
    ph.feature_flags = flags
    ph.group_type_mapping = dict(common.POSTHOG_GROUP_TYPE_MAPPING)
    return ph


def posthog_get(ph: Any, key: str, org: str, props: dict[str, Any]) -> Any:
    return ph.get_feature_flag(key, org, groups={common.GROUP_TYPE: org},
                               group_properties={common.GROUP_TYPE: props},
                               only_evaluate_locally=True, send_feature_flag_events=False)


def posthog_all(ph: Any, org: str, props: dict[str, Any]) -> Any:
    return ph.get_all_flags(org, groups={common.GROUP_TYPE: org},
                            group_properties={common.GROUP_TYPE: props},
                            only_evaluate_locally=True)


def growthbook_features(n: int = 1) -> dict[str, Any]:
    """The reference flag (and `n - 1` variations, as common.flag_variations) as GrowthBook
    features: condition on the org's attributes, an experiment rule hashed on the org."""
    out = {}
    for f in common.flag_variations(n):
        rollout = f["conditions"][0]["rollout_percentage"]
        out[f["key"]] = {"defaultValue": False, "rules": [{
            "condition": {"plan": {"$in": ["enterprise", "pro"]}, "employees": {"$gt": 50}},
            "coverage": rollout / 100, "hashAttribute": common.GROUP_TYPE, "key": f["key"],
            "seed": f["key"], "hashVersion": 2, "variations": ["control", "test"],
            "weights": [0.5, 0.5]}]}
    return out


def growthbook_client() -> Any:
    from growthbook import GrowthBook

    return GrowthBook(features=growthbook_features())


def growthbook_get(gb: Any, key: str, org: str, props: dict[str, Any]) -> Any:
    gb.set_attributes({common.GROUP_TYPE: org, **props})
    return gb.get_feature_value(key, False)


def growthbook_new(key: str, org: str, props: dict[str, Any], features: dict[str, Any]) -> Any:
    from growthbook import GrowthBook

    return GrowthBook(attributes={common.GROUP_TYPE: org, **props},
                      features=features).get_feature_value(key, False)


def unleash_client() -> Any:
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    cache = FileCache("flagsvc-bench", directory=tempfile.mkdtemp(prefix="flagsvc-unleash-"))
    cache.bootstrap_from_dict(common.unleash_state())
    client = UnleashClient(url="http://127.0.0.1:9", app_name="flagsvc-bench",
                           disable_metrics=True, disable_registration=True, cache=cache)
    client.initialize_client(fetch_toggles=False)
    return client


def unleash_context(org: str, props: dict[str, Any]) -> dict[str, Any]:
    return {"properties": {common.GROUP_TYPE: org, "plan": props["plan"],
                           "employees": str(props["employees"])}}


def unleash_value(variant: dict[str, Any]) -> Any:
    """get_variant's answer as flagsvc's get_flag value."""
    return variant["name"] if variant["feature_enabled"] and variant["enabled"] else False


def excluded(props: dict[str, Any]) -> bool:
    """The reference condition (plan in enterprise/pro, employees > 50) is false."""
    return props["plan"] not in ("enterprise", "pro") or props["employees"] <= 50
