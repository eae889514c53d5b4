"""The bucket hash is a contract (SPEC §4): these vectors pin it so a flag migrated from
Unleash keeps every organization in the same bucket. Expected values come from the SPEC and
the Unleash client specification, never from the code under test."""

from __future__ import annotations

import pytest

from flagsvc.engine import bucket, variant_target
from flagsvc.engine.hashing import VARIANT_SEED

STICKINESS_50 = "Feature.flexible.rollout.custom.stickiness_50"


@pytest.mark.parametrize(
    ("namespace", "identifier", "expected"),
    [
        ("AB12A", "122", 23),
        ("AB12A", "155", 100),
        (STICKINESS_50, "402", 55),
        (STICKINESS_50, "388", 10),
        (STICKINESS_50, "39", 25),
    ],
)
def test_spec_golden_buckets(namespace, identifier, expected):
    assert bucket(namespace, identifier) == expected


def test_variant_seed_is_unleash_seed():
    # Unleash's variant hash seed; changing it would reshuffle every variant assignment.
    assert VARIANT_SEED == 86028157


@pytest.mark.parametrize(
    ("namespace", "identifier", "total", "expected"),
    [
        # From Unleash spec 12-custom-stickiness: four variants of weight 25 (total 100),
        # customField 616/503/438/44 yield blue/red/green/yellow, i.e. targets in
        # 1-25, 26-50, 51-75, 76-100.
        ("Feature.flexible.rollout.custom.stickiness_100", "616", 100, range(1, 26)),
        ("Feature.flexible.rollout.custom.stickiness_100", "503", 100, range(26, 51)),
        ("Feature.flexible.rollout.custom.stickiness_100", "438", 100, range(51, 76)),
        ("Feature.flexible.rollout.custom.stickiness_100", "44", 100, range(76, 101)),
        # 08-variants, Feature.Variants.B: weights 1/1, user 0 -> variant1, user 2 -> variant2.
        ("Feature.Variants.B", "0", 2, range(1, 2)),
        ("Feature.Variants.B", "2", 2, range(2, 3)),
    ],
)
def test_variant_target_matches_unleash(namespace, identifier, total, expected):
    assert variant_target(namespace, identifier, total) in expected


def test_bucket_and_variant_ranges():
    buckets = {bucket("ns", str(i)) for i in range(5000)}
    assert buckets == set(range(1, 101))
    targets = {variant_target("ns", str(i), 3) for i in range(500)}
    assert targets == {1, 2, 3}


def test_bucket_depends_on_namespace_and_identifier_only():
    assert bucket("AB12A", "122") == bucket("AB12A", "122")
    assert bucket("AB12A", "122") != bucket("AB12A", "155")
    # rollout and variant hashes are independent (different seeds)
    same = sum(bucket("ns", str(i)) == variant_target("ns", str(i), 100) for i in range(1000))
    assert same < 50


@pytest.mark.parametrize("identifier", ["zürich", "東京", "🙂", "plain"])
def test_bucket_hashes_the_utf8_bytes(identifier):
    # The SPEC formula: mmh3 over the UTF-8 text "ns:identifier", seed 0, unsigned.
    import mmh3

    expected = mmh3.hash(f"ns:{identifier}".encode(), 0, False) % 100 + 1
    assert bucket("ns", identifier) == expected


def test_lone_surrogate_identifier_does_not_crash():
    # mmh3.hash("\ud800") segfaults the interpreter; JSON can carry "\ud800" in a group key.
    assert 1 <= bucket("ns", "\ud800") <= 100
    assert 1 <= variant_target("ns\udfff", "x", 3) <= 3
