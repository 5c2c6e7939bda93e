"""Prefill/decode disaggregation (xPyD): a prefill pool and a decode pool, the KV cache between them.

A ``disaggregation:`` block turns one service into a path of two pools (:func:`expand`), each a
service with its own GPU, layout, batching limits, replicas and autoscaling:

* **prefill**: every request runs there with one output token (vLLM's disaggregated proxy sends the
  prefill instance the request with ``max_tokens=1``: vllm examples/online_serving/disaggregated_serving;
  SGLang's mini load balancer does the same with ``--disaggregation-mode prefill``). Its KV blocks are
  freed when it finishes (the connector's send is asynchronous to the next batch).
* **KV transfer**: every prefill GPU sends its shard of the prompt's KV cache to the decode replica
  over its own link (one NIC per GPU on HGX nodes, NVLink inside a node), in parallel, so the
  transfer takes ``prompt × KV bytes per token per GPU of the prefill layout / link bandwidth +
  link latency`` (:func:`transfer_s`; the bytes: :func:`kv_bytes`). The link is the hardware
  profile's: ``intra_node`` NVLink at 80% of its per-direction rate, ``inter_node`` its measured
  bus bandwidth (InfiniBand NDR / RoCE), each with its step latency (:func:`~simulator.costmodel.collectives.p2p_time`).
* **decode**: the request arrives with its prompt's KV computed elsewhere. It waits in the decode
  replica's queue until the cache has room for the prompt's blocks (the scheduler's admission, with
  its KV capacity), then its first iteration computes the last prompt position and samples the
  first token the user sees (vLLM's decode instance recomputes that one position: a fully cached
  prompt is scheduled with one token to compute), then it decodes the rest. TTFT is therefore
  measured where users measure it: at the first token streamed by the decode side, after the
  transfer and the decode pool's queue.

Not modelled: re-sharding when the two pools' TP differ (the transfer time takes the prefill's
layout, each of its GPUs sending its shard), the prefill's blocks held while the send is in flight,
and contention of transfers on a shared link (each prefill GPU has its own NIC).
"""

from __future__ import annotations

from typing import Literal

from ..costmodel.collectives import p2p_time
from ..costmodel.inference import InferenceModel
from ..scenario import Fixed, Service, ServingScenario
from ..scenario.serving import Disaggregation

Role = Literal["both", "prefill", "decode"]


def enabled(sc: ServingScenario) -> Disaggregation | None:
    """The scenario's disaggregation block when it is on."""
    d = sc.disaggregation
    return d if d is not None and d.enabled else None


def expand(sc: ServingScenario) -> ServingScenario:
    """The scenario as a path of two services, ``prefill`` (one output token) then ``decode``; unchanged
    without an enabled ``disaggregation:`` block. A pool's key left out is the top-level one."""
    d = enabled(sc)
    if d is None:
        return sc
    services = []
    for name, pool in (("prefill", d.prefill), ("decode", d.decode)):
        services.append(Service(
            name=name, hardware=pool.hardware, precision=pool.precision,
            replica=pool.replica if pool.replica is not None else sc.replica,
            cluster=pool.cluster if pool.cluster is not None else sc.cluster,
            autoscaling=pool.autoscaling if pool.autoscaling is not None else sc.autoscaling,
            output_tokens=Fixed(dist="fixed", value=1) if name == "prefill" else None))
    return sc.model_copy(update={"services": services})


def roles(sc: ServingScenario) -> list[Role]:
    """Each service's role on the path."""
    if enabled(sc) is not None:
        return ["prefill", "decode"]
    return ["both"] * max(len(sc.services), 1)


def same_node(sc: ServingScenario, prefill: InferenceModel, gpus_prefill: int, gpus_decode: int) -> bool:
    """Whether the KV crosses NVLink: ``kv_link``, or under ``auto`` whether every replica of both
    pools (at their starting counts) fits in one NVLink domain of the prefill's GPU."""
    d = sc.disaggregation
    assert d is not None
    if d.kv_link != "auto":
        return d.kv_link == "intra_node"
    pools = [(d.prefill, gpus_prefill), (d.decode, gpus_decode)]
    total = sum((p.cluster or sc.cluster).replicas * g for p, g in pools)
    return total <= prefill.hw.nvlink_domain_gpus


def kv_bytes(prefill: InferenceModel, prompt: int) -> float:
    """KV bytes one prefill GPU sends for a prompt: prompt tokens × its KV bytes per token (its
    layers, its share of the KV heads, the cache's precision)."""
    return prompt * prefill.kv_bytes_per_token_per_gpu()


def transfer_s(prefill: InferenceModel, prompt: int, *, intra_node: bool) -> float:
    """Seconds to move a prompt's KV from the prefill replica to the decode replica (every prefill GPU
    sending its shard at once over its own link)."""
    return p2p_time(prefill.hw, kv_bytes(prefill, prompt), same_node=intra_node)
