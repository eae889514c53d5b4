"""Issue 18: FlagClient.get_flag (properties given / stored, warm cache) vs the engine's
evaluate, three interleaved rounds, then cProfile of the stored-properties path and of the
properties-given path (where the time goes; bench/RESULTS.md).

    python bench/profile_client_stored.py
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common

from flagsvc.client import FlagClient
from flagsvc.engine import Context, compile_flags, evaluate


def main() -> None:
    orgs = common.make_orgs(20000)
    db = os.path.join(common.tmpdir("profile-client"), "one.db")
    common.setup_database(db, [common.flagsvc_flag()], orgs)
    client = FlagClient.from_database(db, api_token=common.API_TOKEN, cache_seconds=60)
    key, gtype = common.FLAG_KEY, common.GROUP_TYPE
    args = [({gtype: o}, {gtype: p}) for o, p in orgs]
    compiled = compile_flags([common.flagsvc_flag()])
    ctxs = [Context(groups=g, group_properties=gp) for g, gp in args]

    def given() -> None:
        for g, gp in args:
            client.get_flag(key, groups=g, group_properties=gp)

    def stored() -> None:
        for g, _ in args:
            client.get_flag(key, groups=g)

    def engine() -> None:
        for c in ctxs:
            evaluate(compiled, key, c)

    for fn in (given, stored, engine):  # warm-up: the property cache is filled here
        fn()
    for _ in range(3):
        for fn in (engine, given, stored):
            t = time.perf_counter()
            fn()
            print(fn.__name__, round((time.perf_counter() - t) / len(args) * 1e6, 2), "us")
    for fn in (stored, given):
        print(f"--- cProfile, {fn.__name__} properties")
        prof = cProfile.Profile()
        prof.runcall(fn)
        pstats.Stats(prof).sort_stats("tottime").print_stats(10)


if __name__ == "__main__":
    main()
