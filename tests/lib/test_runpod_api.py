"""RunPod's interpolated GraphQL: every value TradeCore sends arrives as itself, or is refused."""

from __future__ import annotations

import pytest
from graphql import parse
from graphql.utilities import value_from_ast_untyped
from hypothesis import given, settings
from hypothesis import strategies as st
from runpod.api.mutations.pods import generate_pod_deployment_mutation

from tradecore_lib.runpod import (
    PodConfigError,
    env_items,
    graphql_text,
    hourly_price,
    interruptible_pod_mutation,
    load_pod_spec,
)

# Any text, surrogates excluded (not encodable as UTF-8, so not sendable at all).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


def _input_of(query: str) -> dict:
    """The decoded ``input`` argument of the single mutation field of ``query``."""
    field = parse(query).definitions[0].selection_set.selections[0]
    (argument,) = [a for a in field.arguments if a.name.value == "input"]
    return value_from_ast_untyped(argument.value)


@settings(max_examples=200, deadline=None)
@given(value=TEXT, name=TEXT)
def test_values_encoded_for_the_sdk_interpolation_decode_to_themselves(value, name):
    # The SDK's own mutation builder, fed our encoding: the query parses and means the values.
    query = generate_pod_deployment_mutation(
        name=graphql_text(name), image_name="img", gpu_type_id="NVIDIA L4",
        docker_args=graphql_text(value), env={"VALUE": graphql_text(value)})
    decoded = _input_of(query)
    assert decoded["name"] == name
    assert decoded["dockerArgs"] == value
    assert decoded["env"] == [{"key": "VALUE", "value": value}]


@settings(max_examples=100, deadline=None)
@given(value=TEXT)
def test_the_spot_mutation_encodes_every_value(value):
    query = interruptible_pod_mutation(
        name=value, image=value, gpu_type_id=value, gpu_count=2, bid_per_gpu=0.31,
        cloud_type="SECURE", network_volume_id=value, data_center_id=None,
        volume_mount_path="/workspace", container_disk_in_gb=20, min_vcpu_count=4,
        min_memory_in_gb=16, docker_args=value, env={"A": value, "B_2": "x"})
    decoded = _input_of(query)
    assert parse(query).definitions[0].selection_set.selections[0].name.value == \
        "podRentInterruptable"
    assert decoded["bidPerGpu"] == 0.31 and decoded["gpuCount"] == 2
    assert decoded["cloudType"] == "SECURE"
    for key in ("name", "imageName", "gpuTypeId", "networkVolumeId", "dockerArgs"):
        assert decoded[key] == value
    assert decoded["env"] == [{"key": "A", "value": value}, {"key": "B_2", "value": "x"}]


def test_a_raw_quote_breaks_the_sdk_query_which_is_why_values_are_encoded():
    from graphql import GraphQLError

    raw = generate_pod_deployment_mutation(name="n", image_name="img", gpu_type_id="g",
                                           env={"A": 'say "hi"'})
    with pytest.raises(GraphQLError):
        parse(raw)


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A B", "", 'A"'])
def test_env_names_that_are_not_variable_names_are_refused(name):
    with pytest.raises(PodConfigError, match="not a valid variable name"):
        env_items({name: "v"})
    with pytest.raises(PodConfigError, match="not a valid variable name"):
        load_pod_spec("pytorch", {"env": {name: "v"}})


def test_an_unknown_cloud_type_is_refused_before_it_is_interpolated_bare():
    with pytest.raises(PodConfigError, match="cloud_type"):
        interruptible_pod_mutation(
            name="n", image="i", gpu_type_id="g", gpu_count=1, bid_per_gpu=0.2,
            cloud_type="SECURE } mutation {", network_volume_id="v", data_center_id=None,
            volume_mount_path="/workspace", container_disk_in_gb=20, min_vcpu_count=1,
            min_memory_in_gb=1, docker_args="", env={})


def test_pod_presets_load_and_bad_fields_are_named():
    for preset in ("pytorch", "pytorch-spot"):
        spec = load_pod_spec(preset)
        assert spec.gpu_type_ids and spec.max_pods == 1
    with pytest.raises(PodConfigError, match="max_hourly_pric"):
        load_pod_spec("pytorch", {"max_hourly_pric": 2})
    with pytest.raises(PodConfigError, match="above max_hourly_price"):
        load_pod_spec("pytorch-spot", {"bid_per_gpu": 0.9, "gpu_count": 2,
                                       "max_hourly_price": 1.0})
    with pytest.raises(PodConfigError, match="not found"):
        load_pod_spec("pytorh")


def test_hourly_price_reads_the_cloud_and_the_spot_bid():
    gpu = {"securePrice": 0.69, "communityPrice": 0.44, "secureSpotPrice": 0.35,
           "communitySpotPrice": 0.20,
           "lowestPrice": {"minimumBidPrice": 0.20, "uninterruptablePrice": 0.44}}
    spec = load_pod_spec("pytorch", {"gpu_count": 2})
    anywhere = spec.model_copy(update={"cloud_type": "ALL"})
    assert hourly_price(gpu, spec, interruptible=False) == pytest.approx(1.38)
    assert hourly_price(gpu, anywhere, False) == pytest.approx(0.88)
    # a secure spot pod bids the secure cloud's minimum, not the cheapest cloud's
    assert hourly_price(gpu, spec, interruptible=True) == pytest.approx(0.70)
    assert hourly_price(gpu, anywhere, True) == pytest.approx(0.40)
    assert hourly_price({"lowestPrice": {"minimumBidPrice": 0.3}}, anywhere, True) == \
        pytest.approx(0.60)
    assert hourly_price(gpu, spec.model_copy(update={"bid_per_gpu": 0.45}), True) == \
        pytest.approx(0.90)
    assert hourly_price({"securePrice": None}, spec, False) is None
