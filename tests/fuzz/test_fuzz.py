"""The fuzz campaign's cases, in CI with a bounded number of examples (bench/fuzz.py runs it for longer).

Each example must end ``ok`` (exactly right) or ``clean`` (a MicroviumError or a
documented standard error), and leave bystander VMs computing correctly.
"""

from __future__ import annotations

import math
import random

import harness
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mvactors

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(
    st.none(), st.just(mvactors.null), st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.sampled_from([8191, 8192, -8192, -8193, 2**53, -(2**53), 2**53 + 1]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([-0.0, math.nan, 5e-324]),
    st.text(max_size=40), st.binary(max_size=40),
)
keys = st.one_of(st.text(max_size=8), st.sampled_from(["__proto__", "12", "length", ""]), st.integers(0, 9))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.tuples(inner, inner),
                            st.dictionaries(keys, inner, max_size=6)),
    max_leaves=30,
)


def assert_fine(outcome: harness.Outcome) -> None:
    assert outcome.kind in ("ok", "clean"), outcome


@FUZZ
@given(values)
def test_values_round_trip_exactly_or_fail_cleanly(value):
    assert_fine(harness.value_case(value))


@settings(FUZZ, max_examples=15)
@given(st.integers(min_value=0, max_value=2**32))
def test_random_nested_values(seed):
    assert_fine(harness.value_case(harness.random_value(random.Random(seed))))


@FUZZ
@given(st.sampled_from(["base", "abuse", "bystander"]), st.sampled_from(harness.MUTATIONS), st.booleans(),
       st.integers(min_value=0, max_value=2**32))
def test_mutated_snapshots_fail_cleanly(name, how, fix, seed):
    data = harness.mutate(random.Random(seed), harness.snapshot(name), how, fix)
    assert_fine(harness.snapshot_case(data))


@settings(FUZZ, max_examples=len(harness.ABUSES) * 2)
@given(st.sampled_from(harness.ABUSES), st.integers(min_value=0, max_value=2**32))
def test_guest_abuse_fails_cleanly(kind, seed):
    assert_fine(harness.abuse_case(random.Random(seed), kind))


@settings(FUZZ, max_examples=4)
@given(st.integers(min_value=0, max_value=2**32))
def test_actor_traffic_matches_the_model(seed):
    assert_fine(harness.actor_case(random.Random(seed), steps=15))


@settings(FUZZ, max_examples=8)
@given(st.integers(min_value=0, max_value=2**32))
def test_heaps_near_the_limit_survive_or_die_truthfully(seed):
    assert_fine(harness.heap_case(random.Random(seed)))
