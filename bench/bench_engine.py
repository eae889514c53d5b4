"""Target 1 — in-process evaluation of the reference flag over 20,000 organizations.

Measured side by side, interleaved (several rounds, median of the per-round means):

  bare-mmh3     mmh3.hash(f"{key}:{org}", 0, False) % 100 + 1     (the floor)
  engine        flagsvc.engine.evaluate(compiled, key, Context(groups, group_properties))
  client        FlagClient.get_flag(key, groups=..., group_properties=...) (embedded, temp db,
                default cache_seconds=0.5 — stored properties are looked up too)
  client-warm   same, cache_seconds=60 (stored-property lookups served from the worker cache)
  posthog       posthog.feature_flags.match_feature_flag_properties on the equivalent flag
  ygg-enabled   yggdrasil_engine UnleashEngine.is_enabled on the equivalent flexibleRollout
  ygg-variant   UnleashEngine.get_variant (what gives the same answer as get_flag)

Targets: posthog/engine ≥ 5, yggdrasil/engine ≥ 20, engine/bare-mmh3 ≤ 8, engine ≤ 2 µs;
get_all_flags over 100 flags ≤ 150 µs. Also checks that flagsvc and yggdrasil enable the
same organizations with the same variants (exit 1 on any mismatch).

    python bench/bench_engine.py [--rounds 5] [--orgs 20000] [--no-record]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
import mmh3

from flagsvc.client import FlagClient
from flagsvc.engine import Context, compile_flags, evaluate, evaluate_all


def build(n_orgs: int) -> dict[str, Any]:
    orgs = common.make_orgs(n_orgs)
    d = common.tmpdir("bench-engine")
    db1 = os.path.join(d, "one.db")
    common.setup_database(db1, [common.flagsvc_flag()], orgs)
    db100 = os.path.join(d, "hundred.db")
    common.setup_database(db100, common.flag_variations(100), orgs[:2000])
    return {"orgs": orgs, "db1": db1, "db100": db100, "dir": d}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--orgs", type=int, default=common.N_ORGS)
    ap.add_argument("--all-orgs", type=int, default=2000, help="orgs for get_all_flags")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    t0 = time.time()
    data = build(args.orgs)
    orgs = data["orgs"]
    print(f"set-up: {len(orgs)} orgs stored in {time.time() - t0:.1f} s")

    key = common.FLAG_KEY
    compiled = compile_flags([common.flagsvc_flag()])
    contexts = [Context(groups={common.GROUP_TYPE: o}, group_properties={common.GROUP_TYPE: p})
                for o, p in orgs]
    client_args = [({common.GROUP_TYPE: o}, {common.GROUP_TYPE: p}) for o, p in orgs]
    client = FlagClient.from_database(data["db1"], api_token=common.API_TOKEN)
    client_warm = FlagClient.from_database(data["db1"], api_token=common.API_TOKEN,
                                           cache_seconds=60)

    from posthog.feature_flags import match_feature_flag_properties

    ph_flag = common.posthog_flag()
    mapping = common.POSTHOG_GROUP_TYPE_MAPPING
    ph_args = [(o, p, {common.GROUP_TYPE: o}, {common.GROUP_TYPE: p}) for o, p in orgs]

    from yggdrasil_engine.engine import UnleashEngine

    ygg = UnleashEngine()
    warn = ygg.take_state(json.dumps(common.unleash_state()))
    if warn:
        print("yggdrasil warnings:", warn)
    ygg_ctx = [{"properties": {"organization": o, "plan": p["plan"],
                               "employees": str(p["employees"])}} for o, p in orgs]
    org_keys = [o for o, _ in orgs]

    # ---------------------------------------------------------------- correctness
    mism_enabled = mism_variant = mism_client = 0
    enabled_count = 0
    for ctx, yc, (g, gp) in zip(contexts, ygg_ctx, client_args, strict=True):
        r = evaluate(compiled, key, ctx)
        yv = ygg.get_variant(key, yc).variant
        ye = ygg.is_enabled(key, yc).is_enabled
        enabled_count += r.enabled
        if r.enabled != ye or r.enabled != yv.feature_enabled:
            mism_enabled += 1
        elif r.enabled and r.variant != yv.name:
            mism_variant += 1
        if client.get_flag(key, groups=g, group_properties=gp) != r.value:
            mism_client += 1
    print(f"correctness: {enabled_count} of {len(orgs)} orgs enabled; mismatches vs yggdrasil: "
          f"enabled {mism_enabled}, variant {mism_variant}; FlagClient vs engine {mism_client}")

    # ---------------------------------------------------------------- timing
    def t_mmh3() -> None:
        h = mmh3.hash
        for o in org_keys:  # the expression of the brief, string formatting included
            h(f"{key}:{o}", 0, False) % 100 + 1

    def t_engine() -> None:
        for ctx in contexts:
            evaluate(compiled, key, ctx)

    def t_client() -> None:
        get = client.get_flag
        for g, gp in client_args:
            get(key, groups=g, group_properties=gp)

    def t_client_warm() -> None:
        get = client_warm.get_flag
        for g, gp in client_args:
            get(key, groups=g, group_properties=gp)

    def t_posthog() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for o, p, g, gp in ph_args:
                match_feature_flag_properties(ph_flag, o, p, bucketing_value=o,
                                              group_type_mapping=mapping, groups=g,
                                              group_properties=gp)

    def t_ygg_enabled() -> None:
        f = ygg.is_enabled
        for c in ygg_ctx:
            f(key, c)

    def t_ygg_variant() -> None:
        f = ygg.get_variant
        for c in ygg_ctx:
            f(key, c)

    cases: dict[str, Callable[[], None]] = {
        "bare-mmh3": t_mmh3, "engine": t_engine, "client": t_client,
        "client-warm": t_client_warm, "posthog": t_posthog, "ygg-enabled": t_ygg_enabled,
        "ygg-variant": t_ygg_variant,
    }
    for fn in cases.values():  # warm-up (caches, imports, branch predictors)
        fn()
    per_eval: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    n = len(orgs)
    for rnd in range(args.rounds):
        order = names[rnd % len(names):] + names[:rnd % len(names)]  # rotate the order
        for name in order:
            start = time.perf_counter()
            cases[name]()
            per_eval[name].append((time.perf_counter() - start) / n * 1e6)
    us = {k: common.median(v) for k, v in per_eval.items()}

    # ---------------------------------------------------------------- get_all_flags (100)
    client100 = FlagClient.from_database(data["db100"], api_token=common.API_TOKEN)
    client100_warm = FlagClient.from_database(data["db100"], api_token=common.API_TOKEN,
                                              cache_seconds=60)
    compiled100 = compile_flags(common.flag_variations(100))
    assert len(compiled100) == 100 and len(client100.get_all_flags(
        groups=client_args[0][0], group_properties=client_args[0][1])) == 100
    sub_ctx = contexts[:args.all_orgs]
    sub_args = client_args[:args.all_orgs]

    def t_all_engine() -> None:
        for ctx in sub_ctx:
            evaluate_all(compiled100, ctx)

    def t_all_client() -> None:
        for g, gp in sub_args:
            client100.get_all_flags(groups=g, group_properties=gp)

    def t_all_client_warm() -> None:
        for g, gp in sub_args:
            client100_warm.get_all_flags(groups=g, group_properties=gp)

    all_cases = {"evaluate_all(100)": t_all_engine, "client.get_all_flags(100)": t_all_client,
                 "client-warm.get_all_flags(100)": t_all_client_warm}
    for fn in all_cases.values():
        fn()
    all_us: dict[str, list[float]] = {k: [] for k in all_cases}
    for _ in range(args.rounds):
        for name, fn in all_cases.items():
            start = time.perf_counter()
            fn()
            all_us[name].append((time.perf_counter() - start) / len(sub_ctx) * 1e6)
    all_med = {k: common.median(v) for k, v in all_us.items()}

    # ---------------------------------------------------------------- report
    e = us["engine"]
    rows = [[k, us[k], us[k] / e, min(per_eval[k]), max(per_eval[k])] for k in names]
    body = [f"Reference flag, {n} orgs, {args.rounds} interleaved rounds (median of per-round "
            "means; min/max across rounds).", "",
            common.table(rows, ["path", "µs/eval", "× engine", "min", "max"]), ""]
    checks = [
        ("posthog / engine", us["posthog"] / e, ">= 5", us["posthog"] / e >= 5),
        ("yggdrasil is_enabled / engine", us["ygg-enabled"] / e, ">= 20",
         us["ygg-enabled"] / e >= 20),
        ("yggdrasil get_variant / engine", us["ygg-variant"] / e, "(info)", True),
        ("engine / bare-mmh3", e / us["bare-mmh3"], "<= 8", e / us["bare-mmh3"] <= 8),
        ("engine µs/eval", e, "<= 2", e <= 2),
        ("posthog / client.get_flag", us["posthog"] / us["client"], "(info)", True),
        ("yggdrasil is_enabled / client.get_flag", us["ygg-enabled"] / us["client"], "(info)",
         True),
        ("client.get_flag / bare-mmh3", us["client"] / us["bare-mmh3"], "(info)", True),
        ("client.get_flag µs/eval", us["client"], "(info)", True),
    ]
    for k, v in all_med.items():
        checks.append((f"{k} µs/call", v, "<= 150", v <= 150))
    body += [common.table([[a, b, c, common.verdict(d) if c != "(info)" else ""]
                           for a, b, c, d in checks], ["measure", "value", "target", ""]), ""]
    body += [f"Correctness (flagsvc vs yggdrasil, same hash, {n} orgs; {enabled_count} "
             f"enabled): enabled mismatches **{mism_enabled}**, variant mismatches "
             f"**{mism_variant}**; FlagClient vs engine mismatches **{mism_client}**."]
    common.record("bench_engine (target 1)", "\n".join(body))
    for c in (client, client_warm, client100, client100_warm):
        c.close()
    return 1 if (mism_enabled or mism_variant or mism_client) else 0


if __name__ == "__main__":
    sys.exit(main())
