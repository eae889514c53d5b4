"""Group hierarchy inference (SPEC §2, §4): a request naming a project is bucketed and
targeted by its account, found through parent links; bad links never hang or crash."""

from __future__ import annotations

from flagsvc.engine import Context, compile_flags, evaluate, explain, find_group_key
from flagsvc.engine.hierarchy import MAX_DEPTH


class ParentResolver:
    """Parent links and group properties from dicts; counts parent lookups."""

    def __init__(self, parents, groups=None):
        self.parents = parents
        self.groups = groups or {}
        self.lookups = 0

    def person_properties(self, distinct_id):
        return None

    def group_properties(self, group_type, group_key):
        return self.groups.get((group_type, group_key))

    def group_parent(self, group_type, group_key):
        self.lookups += 1
        return self.parents.get((group_type, group_key))


# account 122 > workspaces w1, w2 > projects p1, p2, p3; account 155 > workspace w9 > project p9
PARENTS = {
    ("project", "p1"): ("workspace", "w1"),
    ("project", "p2"): ("workspace", "w1"),
    ("project", "p3"): ("workspace", "w2"),
    ("workspace", "w1"): ("account", "122"),
    ("workspace", "w2"): ("account", "122"),
    ("project", "p9"): ("workspace", "w9"),
    ("workspace", "w9"): ("account", "155"),
}
GROUPS = {("account", "122"): {"plan": "enterprise"}, ("account", "155"): {"plan": "free"},
          ("project", "p1"): {"plan": "hobby"}}


def resolver():
    return ParentResolver(PARENTS, GROUPS)


def test_find_group_key_walks_up_and_reports_the_path():
    assert find_group_key("account", {"project": "p1"}, resolver()) == (
        "122", (("project", "p1"), ("workspace", "w1"), ("account", "122")))
    assert find_group_key("workspace", {"project": "p3"}, resolver()) == (
        "w2", (("project", "p3"), ("workspace", "w2")))
    # a type the request names itself wins, with no path
    assert find_group_key("account", {"project": "p1", "account": "x"}, resolver()) == ("x", None)
    assert find_group_key("organization", {"project": "p1"}, resolver()) is None
    assert find_group_key("account", {}, resolver()) is None


def test_bucket_is_the_accounts_for_every_project_under_it():
    # namespace AB12A: account "122" -> bucket 23 (in at 50 %), "155" -> bucket 100 (out).
    flags = compile_flags([{"key": "f", "hash_namespace": "AB12A", "bucket_by": "account",
                            "variants": [{"key": k, "weight": 1} for k in "abcdef"],
                            "conditions": [{"rollout_percentage": 50}]}])
    results = [evaluate(flags, "f", Context(distinct_id=f"u{i}", groups={"project": p}), resolver())
               for i, p in enumerate(["p1", "p2", "p3"])]
    assert all(r.enabled and r.identifier == "122" and r.bucket_by == "account" for r in results)
    assert len({r.variant for r in results}) == 1
    assert results[0].inferred_from == (("project", "p1"), ("workspace", "w1"), ("account", "122"))
    assert results[2].inferred_from == (("project", "p3"), ("workspace", "w2"), ("account", "122"))
    out = evaluate(flags, "f", Context(distinct_id="u", groups={"project": "p9"}), resolver())
    assert (out.enabled, out.reason, out.identifier) == (False, "out_of_rollout_bound", "155")


def test_account_properties_target_a_project_level_request():
    flags = compile_flags([{"key": "f", "bucket_by": "project", "conditions": [{"properties": [
        {"type": "group", "group_type": "account", "key": "plan", "value": "enterprise"}]}]}])
    on = evaluate(flags, "f", Context(distinct_id="u", groups={"project": "p2"}), resolver())
    # bucketed on the project, targeted by account
    assert (on.enabled, on.identifier) == (True, "p2")
    off = evaluate(flags, "f", Context(distinct_id="u", groups={"project": "p9"}), resolver())
    assert (off.enabled, off.reason) == (False, "no_condition_match")
    # request group properties for the inferred account override the stored ones
    ctx = Context(distinct_id="u", groups={"project": "p9"},
                  group_properties={"account": {"plan": "enterprise"}})
    assert evaluate(flags, "f", ctx, resolver()).enabled


def test_cycles_in_parent_links_terminate():
    cyclic = ParentResolver({("project", "p"): ("workspace", "w"),
                             ("workspace", "w"): ("project", "p"),
                             ("team", "t"): ("team", "t")})
    flags = compile_flags([{"key": "f", "bucket_by": "account"}])
    r = evaluate(flags, "f", Context(distinct_id="u", groups={"project": "p", "team": "t"}), cyclic)
    assert (r.enabled, r.reason) == (False, "no_group_type")
    assert cyclic.lookups <= 2 * (MAX_DEPTH + 1)


def chain(depth: int) -> dict:
    """level0 -> level1 -> ... -> level{depth-1} -> account a (depth parent hops)."""
    parents = {(f"level{i}", f"k{i}"): (f"level{i + 1}", f"k{i + 1}") for i in range(depth - 1)}
    parents[(f"level{depth - 1}", f"k{depth - 1}")] = ("account", "a")
    return parents


def test_chain_of_ten_is_followed_and_deeper_gives_no_group_type():
    assert MAX_DEPTH == 10
    flags = compile_flags([{"key": "f", "bucket_by": "account"}])
    ctx = Context(distinct_id="u", groups={"level0": "k0"})
    ten = evaluate(flags, "f", ctx, ParentResolver(chain(10)))
    assert (ten.enabled, ten.identifier, len(ten.inferred_from)) == (True, "a", 11)
    deep = ParentResolver(chain(11))
    eleven = evaluate(flags, "f", ctx, deep)
    assert (eleven.enabled, eleven.reason) == (False, "no_group_type")
    assert deep.lookups == MAX_DEPTH
    endless = ParentResolver({})
    endless.group_parent = lambda t, k: (t, k + "x")  # a fresh parent forever
    assert evaluate(flags, "f", ctx, endless).reason == "no_group_type"


def test_parent_links_as_lists_and_broken_resolvers():
    as_lists = ParentResolver({("project", "p"): ["account", "a"]})
    flags = compile_flags([{"key": "f", "bucket_by": "account"}])
    assert evaluate(flags, "f", Context(groups={"project": "p"}), as_lists).identifier == "a"

    class Broken(ParentResolver):
        def group_parent(self, group_type, group_key):
            raise RuntimeError("boom")

    r = evaluate(flags, "f", Context(groups={"project": "p"}), Broken({}))
    assert (r.enabled, r.reason) == (False, "no_group_type")


def test_explain_reports_the_inference_path():
    flags = compile_flags([{"key": "f", "bucket_by": "account"}])
    out = explain(flags, "f", Context(distinct_id="u", groups={"project": "p1"}), resolver())
    path = [["project", "p1"], ["workspace", "w1"], ["account", "122"]]
    assert out["group_key"] == "122" and out["inferred_from"] == path
    assert out["conditions"][0]["inferred_from"] == path
