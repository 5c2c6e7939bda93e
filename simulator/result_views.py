"""What every result shares: its summary as a dict (the JSON without the scenario), ``result["key"]``
reads of it, JSON with the scenario, and the scenario as YAML.

The results keep their numbers in typed fields; the dict is derived from them on request, so it
can never disagree with the attributes.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

from .invariants import strict_json
from .scenario import scenario_yaml

NOT_SUMMARY = {"summary": False}   # dataclass field metadata: the scenario and the frames, not summary fields


class ResultViews(ABC):
    """Mixin for a result dataclass with a ``scenario`` field and a ``summary`` property."""

    scenario: Any

    @property
    @abstractmethod
    def summary(self) -> dict[str, Any]:
        """The result as JSON-ready data, keys in their documented order (no scenario)."""

    def __getitem__(self, key: str) -> Any:
        """``result["key"]`` is ``result.to_dict()["key"]`` (the dict-style access of earlier versions)."""
        if key == "scenario":
            return self.to_dict()["scenario"]
        return self.summary[key]

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary, "scenario": json.loads(json.dumps(self.scenario.model_dump(mode="json")))}

    def to_json(self, indent: int | None = 2) -> str:
        return strict_json(self.to_dict(), indent)

    def scenario_yaml(self) -> str:
        return scenario_yaml(self.scenario)


# ---- serving latencies as text (CLI table, TUI, HTML report) -------------------------------------------
def ms_or_s(seconds: float | None) -> str:
    """A latency in the unit that shows it: ``24.1 ms`` below a second, ``1.32 s`` above; ``-`` for None."""
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:,.1f} ms" if abs(seconds) < 1 else f"{seconds:,.2f} s"


def percentiles_text(d: Any, *, ms: bool | None = None) -> str:
    """``p50 · p90 · p99 · mean`` of a :class:`~simulator.serving.summary.Percentiles` in ms (``ms`` True),
    seconds (False), or ms when its p99 is under a second (None); ``-`` when it is None or empty."""
    if d is None or d.p50 is None or d.p90 is None or d.p99 is None or d.mean is None:
        return "-"
    in_ms = d.p99 < 1 if ms is None else ms
    unit, suffix, fmt = (1e3, "ms", ",.2f" if d.p99 < 0.01 else ",.1f") if in_ms else (1.0, "s", ",.2f")
    return (f"p50 {d.p50 * unit:{fmt}} · p90 {d.p90 * unit:{fmt}} · p99 {d.p99 * unit:{fmt}} · "
            f"mean {d.mean * unit:{fmt}} {suffix}")


def serving_latency_rows(r: Any) -> list[tuple[str, str]]:
    """(label, text) per latency a serving result has: TTFT, TPOT, ITL, end-to-end and queueing for a
    model that generates tokens; latency (end to end, in ms) and queueing for one that runs one forward
    per request (an encoder, ViT or CNN has no first token, no decode and no KV cache)."""
    if not r.generative:
        return [("latency", percentiles_text(r.e2e_s, ms=True) + f" per {r.item or 'request'} (end to end)"),
                ("queueing", percentiles_text(r.queue_s, ms=True))]
    rows = [("TTFT", percentiles_text(r.ttft_s, ms=True)), ("TPOT", percentiles_text(r.tpot_s, ms=True))]
    if r.itl_s is not None and r.itl_s.p50 is not None:
        rows.append(("ITL", percentiles_text(r.itl_s, ms=True) + " (every gap between streamed tokens)"))
    rows += [("end-to-end", percentiles_text(r.e2e_s)), ("queueing", percentiles_text(r.queue_s, ms=True))]
    return rows


def serving_throughput_text(r: Any) -> str:
    """Requests per second and output tokens per second, or a non-generative model's inputs per second
    (images/s, sequences/s) and, with an energy figure, per joule (images/s per watt)."""
    if r.generative:
        return f"{r.throughput_rps:,.2f} req/s, {r.output_tokens_per_s:,.0f} output tokens/s"
    text = f"{r.items_per_s or 0:,.1f} {r.item or 'input'}s/s"
    if r.items_per_joule is not None:
        text += f", {r.items_per_joule:,.2f} {r.item or 'input'}s/s per W"
    return text
