"""KV offload tiers behind the GPU KV cache: host (CPU) memory and, optionally, a local NVMe drive.

A block the GPU prefix cache evicts (:mod:`.prefix_cache`) is written to the first tier instead of
being lost, and a tier full of blocks passes its least recently used one to the next tier (or drops
it from the last). A later request whose prefix continues in a tier loads those blocks back over
PCIe (and, from NVMe, first off the drive) instead of recomputing them: as vLLM V1's
``OffloadingConnector`` (``--kv-offloading-size`` GiB of CPU blocks kept in LRU order, transfers on
their own CUDA streams; vllm/v1/kv_offload/cpu.py) and LMCache's local CPU and local disk backends
(``LMCACHE_MAX_LOCAL_CPU_SIZE``, ``LMCACHE_LOCAL_DISK``) do. A preempted request's blocks take the
same path, so preemption becomes a swap-out to host memory and a swap-in on resume when its blocks
are evicted from the GPU before it returns.

Timing: writing an evicted block to host memory overlaps compute (its own stream), so it is not
charged; a load is on the request's critical path: ``latency + bytes / bandwidth`` per tier it reads
from, added to the iteration that admits the request (each GPU of a tensor-parallel replica moves its
own shard over its own link, so the bytes are one GPU's). Charging the whole iteration is the
conservative side of vLLM's asynchronous load, which delays only the loading request.
"""

from __future__ import annotations

from collections import OrderedDict

from pydantic import Field, model_validator

from ...scenario.base import _Strict

GIB = 2**30

# PCIe 5.0 x16, one direction: 32 GT/s x 16 lanes x 128/130 encoding = 63.0 GB/s (PCI-SIG PCIe 5.0 base
# specification); the host link of H100/H200/B200 (NVIDIA H100 datasheet: "PCIe Gen5 128 GB/s" both ways).
PCIE5_X16_GBPS = 63.0
# one load's fixed cost (copy launch, DMA setup, the connector's bookkeeping): assumed 10 us, a few kernel-launch
# times; it matters only for short prefixes (a 16-token block of Llama-3.1-8B is 2 MiB, 33 us at 63 GB/s)
PCIE_LATENCY_US = 10.0


class KVOffload(_Strict):
    """Tiers behind one replica's GPU KV cache (per replica: host memory and drives are per node)."""

    cpu_gib: float = Field(gt=0, description=(
        "host memory for offloaded KV blocks, GiB per replica (vLLM --kv-offloading-size, LMCache "
        "LMCACHE_MAX_LOCAL_CPU_SIZE)"))
    pcie_gbps: float = Field(default=PCIE5_X16_GBPS, gt=0, description=(
        "host-to-GPU bandwidth per GPU, GB/s (default 63: PCIe 5.0 x16 one way, 32 GT/s x 16 lanes x 128/130)"))
    pcie_latency_us: float = Field(default=PCIE_LATENCY_US, ge=0, description=(
        "fixed cost of one load from host memory, microseconds (default 10, assumed: a copy's launch and DMA setup)"))
    nvme_gib: float | None = Field(default=None, gt=0, description=(
        "a local NVMe tier behind host memory, GiB per replica (LMCache local disk backend); default: none"))
    nvme_gbps: float | None = Field(default=None, gt=0, description=(
        "NVMe read bandwidth, GB/s (required with nvme_gib: a drive's datasheet sequential read, e.g. 6.8 for a "
        "PCIe 4.0 data-center SSD)"))
    nvme_latency_us: float = Field(default=100.0, ge=0, description=(
        "fixed cost of one read from the NVMe tier, microseconds (default 100, assumed: the order of an NVMe "
        "drive's read latency at queue depth 1)"))

    @model_validator(mode="after")
    def _nvme(self) -> KVOffload:
        if (self.nvme_gib is None) != (self.nvme_gbps is None):
            raise ValueError("nvme_gib and nvme_gbps go together: a drive's capacity and its read bandwidth")
        return self


class Tier:
    """One offload tier: blocks by hash in LRU order (front: least recently used)."""

    __slots__ = ("blocks", "capacity", "evicted", "latency_s", "loaded", "name", "s_per_block", "stored")

    def __init__(self, name: str, capacity_blocks: int, s_per_block: float, latency_s: float) -> None:
        self.name = name
        self.capacity = capacity_blocks
        self.s_per_block = s_per_block
        self.latency_s = latency_s
        self.blocks: OrderedDict[int, None] = OrderedDict()
        self.stored = 0      # blocks written here
        self.loaded = 0      # blocks read back to the GPU
        self.evicted = 0     # blocks pushed out (to the next tier or dropped)

    def __contains__(self, h: int) -> bool:
        return h in self.blocks

    def load_s(self, n: int) -> float:
        """Time to bring ``n`` blocks from this tier to the GPU."""
        return self.latency_s + n * self.s_per_block if n else 0.0


def build_tiers(cfg: KVOffload | None, block_bytes: float) -> list[Tier]:
    """The tiers of ``cfg`` for blocks of ``block_bytes`` bytes per GPU (none without ``cfg``)."""
    if cfg is None or block_bytes <= 0:
        return []
    pcie = block_bytes / (cfg.pcie_gbps * 1e9)
    tiers = [Tier("cpu", int(cfg.cpu_gib * GIB // block_bytes), pcie, cfg.pcie_latency_us * 1e-6)]
    if cfg.nvme_gib is not None and cfg.nvme_gbps is not None:
        # read off the drive into host memory, then over PCIe: both legs per block
        tiers.append(Tier("nvme", int(cfg.nvme_gib * GIB // block_bytes), pcie + block_bytes / (cfg.nvme_gbps * 1e9),
                          (cfg.nvme_latency_us + cfg.pcie_latency_us) * 1e-6))
    return tiers


def offload(tiers: list[Tier], h: int) -> None:
    """Block ``h``, evicted from the GPU, goes to the first tier; each full tier passes on its LRU block."""
    for tier in tiers:
        if tier.capacity <= 0:
            return
        if h in tier.blocks:                 # already there (loaded back earlier and kept): refresh it
            tier.blocks.move_to_end(h)
            return
        tier.blocks[h] = None
        tier.stored += 1
        if len(tier.blocks) <= tier.capacity:
            return
        h, _ = tier.blocks.popitem(last=False)
        tier.evicted += 1
