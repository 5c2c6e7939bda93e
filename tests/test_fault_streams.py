"""Services of a request path draw from independent random streams: in the RAG chain
(embed → rerank → LLM) with replica failures on, rerank's and the LLM's failures are unrelated.

The failure times are observed in the simulation itself, cheaply: the path is built once per seed
and stepped only until both services have lost a replica (a few simulated seconds), with the
replica models shared between seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from simulator import parse_scenario
from simulator.scenario import ServingScenario
from simulator.serving.simulate import Cluster, build_replica_model, stage_scenarios
from simulator.serving.streams import service_streams
from simulator.serving.workload import generate

ROOT = Path(__file__).resolve().parents[1]
MTBF_H = 0.001                     # 3.6 s per replica: rerank and the LLM have 2 replicas each


def rag_chain_with_failures() -> ServingScenario:
    doc = yaml.safe_load((ROOT / "examples" / "serve_rag_chain.yaml").read_text())
    doc["workload"]["duration_s"] = 30          # failures come within seconds; fewer requests to draw
    for svc in doc["services"]:
        svc["faults"] = {"replica_mtbf_hours": MTBF_H}
    sc = parse_scenario(doc)
    assert isinstance(sc, ServingScenario)
    return sc


def first_failures(sc: ServingScenario, stages: list, seed: int) -> tuple[float, float]:
    """When rerank and llm first lose a replica, for scenario seed ``seed``."""
    sc = sc.model_copy(update={"seed": seed})
    reqs, _ = generate(sc.workload, seed)
    cluster = Cluster(sc, reqs, stages)
    names = [name for name, *_ in stages]
    watch = {name: cluster.stages[names.index(name)] for name in ("rerank", "llm")}
    seen: dict[str, float] = {}
    while len(seen) < len(watch):
        cluster.env.step()
        seen.update({n: cluster.env.now for n, svc in watch.items() if n not in seen and svc.failed_replicas})
    return seen["rerank"], seen["llm"]


def test_rerank_and_llm_fail_independently() -> None:
    sc = rag_chain_with_failures()
    stages = [(name, ssc, *build_replica_model(ssc)) for name, ssc in stage_scenarios(sc)]
    rerank, llm = first_failures(sc, stages, sc.seed)
    assert rerank != llm
    times = np.array([first_failures(sc, stages, s) for s in range(200)])
    r = np.corrcoef(times[:, 0], times[:, 1])[0, 1]
    assert abs(r) < 0.2
    # each is the first of two exponential failures: mean MTBF / 2 = 1.8 s (±4 standard errors)
    assert abs(times.mean() - MTBF_H * 3600 / 2) < 4 * 1.8 / np.sqrt(400)


def test_streams_are_spawned_once_and_a_single_service_keeps_its_own() -> None:
    """Children 0-3 of the scenario seed are the workload's; then five per service, so a single
    service's router and fault streams are children 4 and 5 whatever else the path holds."""
    children = np.random.SeedSequence(7).spawn(6)
    single = service_streams(7, 1)[0]
    assert single.router.random() == np.random.default_rng(children[4]).random()
    assert single.faults.random() == np.random.default_rng(children[5]).random()
    a, b, c = service_streams(7, 3)
    draws = {s.faults.random() for s in (a, b, c)} | {s.router.random() for s in (a, b, c)}
    assert len(draws) == 6
