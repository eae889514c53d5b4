"""Issue 18 baseline: FlagClient.get_flag (properties given / stored, warm cache) vs engine evaluate,
interleaved rounds, then cProfile of the stored-properties path.  python bench/profile_client_stored.py"""
import sys, os, cProfile, pstats, time
sys.path.insert(0, "bench")
import common
from flagsvc.client import FlagClient
from flagsvc.engine import Context, compile_flags, evaluate
orgs = common.make_orgs(20000)
d = common.tmpdir("p18"); db = os.path.join(d, "one.db")
common.setup_database(db, [common.flagsvc_flag()], orgs)
c = FlagClient.from_database(db, api_token=common.API_TOKEN, cache_seconds=60)
key = common.FLAG_KEY; T = common.GROUP_TYPE
args = [({T: o}, {T: p}) for o, p in orgs]
compiled = compile_flags([common.flagsvc_flag()])
ctxs = [Context(groups=g, group_properties=gp) for g, gp in args]
def given():
    for g, gp in args: c.get_flag(key, groups=g, group_properties=gp)
def stored():
    for g, gp in args: c.get_flag(key, groups=g)
def eng():
    for x in ctxs: evaluate(compiled, key, x)
for f in (given, stored, eng): f()
for r in range(3):
    for f in (eng, given, stored):
        t = time.perf_counter(); f(); print(f.__name__, round((time.perf_counter()-t)/len(args)*1e6, 2), "us")
cProfile.run("stored()", "/tmp/p18.out")
pstats.Stats("/tmp/p18.out").sort_stats("tottime").print_stats(14)
