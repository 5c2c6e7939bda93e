"""With ``services:``, the top-level replica, cluster and autoscaling keys would be ignored (each
service has its own), so they are an error naming the per-service keys; the other top-level keys
(model, hardware, pricing, ...) are still every service's default."""

from pathlib import Path

import pytest

from simulator.errors import CapsimError
from simulator.scenario import load_scenario, parse_scenario
from simulator.serving.simulate import stage_scenarios

RAG = Path(__file__).resolve().parents[1] / "examples" / "serve_rag_chain.yaml"


@pytest.mark.parametrize("override,key", [("cluster.replicas=4", "cluster.replicas"), ("replica.tp=2", "replica.tp"),
                                          ("autoscaling.policy=hpa", "autoscaling.policy")])
def test_top_level_per_service_keys_are_errors(override, key):
    with pytest.raises(CapsimError) as e:
        load_scenario(RAG, [override])
    msg = str(e.value)
    section, leaf = key.split(".")
    assert f"top-level {key} has no effect when services are listed" in msg
    assert f"set services.N.{section}.{leaf} instead (N: 0 embed, 1 rerank, 2 llm)" in msg


def test_defaults_written_out_still_load_and_other_keys_are_inherited():
    sc = load_scenario(RAG)
    # a result's scenario dump (every default written) loads again: defaults are not an override
    again = parse_scenario(sc.model_dump(mode="json"))
    assert again == sc
    stages = dict(stage_scenarios(load_scenario(RAG, ["pricing.usd_per_gpu_hour=3.5"])))
    assert stages["llm"].pricing.usd_per_gpu_hour == 3.5 and stages["embed"].pricing.usd_per_gpu_hour == 3.5
    assert stages["llm"].cluster.replicas == 2 and stages["rerank"].cluster.replicas == 2
    assert stages["embed"].cluster.replicas == 1
