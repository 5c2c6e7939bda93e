"""Sweeps and search: evaluate many variants of a scenario, rank them, find the Pareto frontier.

A sweep is a base scenario plus a list of configurations, each a set of key overrides
(``{"parallelism.tp": 4, ...}``): a grid's cartesian product, a seeded random sample of it, or
every valid training layout (``layouts=True``). Each configuration is simulated by the same
public functions as ``capsim train``/``serve``, in a process pool or on Ray; a configuration that
is invalid or fails is a row with its error, never the end of the sweep. Rows come back in
configuration order whatever the executor or worker count, so the same sweep gives the same table.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .. import workbound
from ..errors import CapsimError, closest
from ..files import excerpt, write_atomic
from ..invariants import strict_json
from ..scenario import Scenario, ServingScenario, TrainingScenario, scenario_yaml
from .evaluate import evaluate, training_layouts
from .executors import Interrupted, run_configs
from .rows import row_columns

OPS: dict[str, Callable[[Any, Any], bool]] = {"<=": operator.le, ">=": operator.ge, "==": operator.eq,
                                               "!=": operator.ne, "<": operator.lt, ">": operator.gt}


@dataclass
class SweepResult:
    base: Scenario
    frame: pd.DataFrame
    objective: str
    maximize: bool
    best: int | None
    x: str
    y: str
    partial: bool = False
    """interrupted (Ctrl-C): only the configurations that finished, each row marked ``partial``"""
    planned: int | None = None
    """configurations planned (more than the rows when partial)"""

    def to_dict(self) -> dict[str, Any]:
        rows = json.loads(self.frame.to_json(orient="records"))
        best = rows[self.best] if self.best is not None else None
        return {"kind": "sweep", **({"partial": True, "planned": self.planned} if self.partial else {}),
                "configurations": len(rows), "feasible": int(self.frame["feasible"].sum()),
                "objective": ("max:" if self.maximize else "min:") + self.objective, "best": best, "rows": rows,
                "scenario": json.loads(json.dumps(self.base.model_dump(mode="json")))}

    def to_json(self, indent: int | None = 2) -> str:
        return strict_json(self.to_dict(), indent)

    def html(self) -> str:
        from ..report import sweep_html

        return sweep_html(self.frame, x=self.x, y=self.y, title=f"capsim sweep — {self.base.name}",
                          scenario_yaml=scenario_yaml(self.base), best=self.best)

    def save(self, path: str) -> None:
        """Write the table (.parquet or .csv) through a temporary file: a failed write leaves no partial file."""
        if path.endswith(".parquet"):
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise CapsimError("writing Parquet needs pyarrow (pip install pyarrow); or use --out results.csv") from None
            write_atomic(path, lambda f: self.frame.to_parquet(f, index=False), "--out")
        elif path.endswith(".csv"):
            write_atomic(path, self.frame.to_csv(index=False), "--out")
        else:
            raise CapsimError(f"--out {path!r}: use a .parquet or .csv file name")


def parse_grid(items: list[str] | None) -> dict[str, list[Any]]:
    """``["parallelism.tp=1,2,4", "cluster.replicas=2,4"]`` → ``{"parallelism.tp": [1, 2, 4], ...}`` (YAML values)."""
    grid: dict[str, list[Any]] = {}
    for item in items or []:
        if "=" not in item:
            raise CapsimError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. --grid parallelism.tp=1,2,4")
        key, _, vals = item.partition("=")
        values = [_yaml_value(v, f"--grid {item!r}") for v in vals.split(",") if v.strip()]
        if not key.strip() or not values:
            raise CapsimError(f"--grid {item!r}: needs a key and at least one value")
        grid[key.strip()] = values
    return grid


def _yaml_value(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise CapsimError(f"{where}: {excerpt(text.strip())} is not a YAML value (a list in a grid is written "
                          "without commas inside, e.g. KEY=1,2,4)") from None


def _set(doc: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` (dotted; a number indexes a list: ``services.2.cluster.replicas``) in ``doc``."""
    node: Any = doc
    parts: list[Any] = [int(p) if p.isdigit() else p for p in key.split(".")]
    for i, p in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not isinstance(p, int) or not 0 <= p < len(node):
                raise CapsimError(f"--grid {key}: {p} is not an index of a list of {len(node)}")
            node = node[p]
            continue
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict | list):
            where = ".".join(str(x) for x in parts[:i + 1])
            raise CapsimError(f"--grid {key}: {where} is not a mapping (it is {excerpt(nxt)})")
        node = nxt
    node[parts[-1]] = value


def configurations(base: Scenario, *, grid: dict[str, list[Any]], random: int | None, layouts: bool | str,
                   seed: int) -> list[dict[str, Any]]:
    configs: list[dict[str, Any]] = []
    if layouts:
        if not isinstance(base, TrainingScenario):
            raise CapsimError("layout search (--layouts) is for training scenarios; use --grid for serving")
        configs = training_layouts(base, full=layouts == "full")
    if grid:
        n = math.prod(len(v) for v in grid.values()) * max(len(configs), 1)
        if n > workbound.MAX_CONFIGS:    # counted before the product is built (10^6 dicts is GiBs)
            workbound.refuse(f"the sweep has {n:,} configurations (bound {workbound.MAX_CONFIGS:,}): give fewer "
                             "--grid values, or --random N after --force")
        keys = list(grid)
        product = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*(grid[k] for k in keys))]
        configs = [{**c, **g} for c in (configs or [{}]) for g in product]
    if not configs:
        if layouts:
            assert isinstance(base, TrainingScenario)
            raise CapsimError(no_layout_reason(base, full=layouts == "full"))
        raise CapsimError("nothing to sweep: give --grid KEY=V1,V2,... or --layouts")
    if random is not None and random < 1:
        raise CapsimError(f"--random {random}: give a number of configurations >= 1")
    if random is not None and random < len(configs):
        idx = np.sort(np.random.default_rng(seed).choice(len(configs), size=random, replace=False))
        configs = [configs[i] for i in idx]
    return configs


def no_layout_reason(sc: TrainingScenario, *, full: bool = False) -> str:
    """Why :func:`training_layouts` found nothing: the first divisibility rule no layout passes."""
    from ..catalog import get_model
    from .evaluate import _divisors

    m = get_model(sc.model)
    gpn, gpus, gb = sc.cluster.gpus_per_node, sc.cluster.nodes * sc.cluster.gpus_per_node, sc.training.global_batch
    where = f"--layouts found no layout of {sc.model} on {gpus} GPUs ({sc.cluster.nodes} nodes × {gpn})"
    tps = [tp for tp in _divisors(gpn) if m.heads % tp == 0 and gpus % tp == 0]
    if not tps:
        return f"{where}: no TP size divides both {gpn} GPUs per node and the model's {m.heads} heads"
    pairs = [(tp, pp) for tp in tps for pp in _divisors(m.layers) if gpus % (tp * pp) == 0]
    dps = sorted({gpus // (tp * pp) for tp, pp in pairs})
    ok = [dp for dp in dps if gb % dp == 0]
    if not ok:
        return (f"{where}: data-parallel size GPUs / (TP × PP) can be {', '.join(map(str, dps))} (TP from "
                f"{', '.join(map(str, tps))}, PP dividing the {m.layers} layers), and none divides "
                f"training.global_batch {gb}; change the GPU count (cluster.nodes, cluster.gpus_per_node) or the batch")
    return (f"{where}: every TP/PP/DP split failed the schedule's micro-batch rules (global batch {gb}); "
            "try --layouts-full or another training.global_batch")


def check_keys(base: Scenario, grid: dict[str, list[Any]], layouts: bool | str) -> None:
    """A grid key must be a scenario key: otherwise every configuration would fail with the same
    'unknown key' (and the sweep's summary would then complain about a missing column)."""
    from ..scenario.reference import key_rows

    paths = key_rows(base.kind)
    known = {r.path for r in paths}
    free = [r.path for r in paths if "mapping" in r.type]      # an inline model: any key below it
    for key in grid:
        norm = re.sub(r"\.\d+(?=\.|$)", "[]", key)
        if norm in known or any(norm.startswith(f + ".") for f in free):
            continue
        hint = closest(norm, known, n=3)
        raise CapsimError(f"--grid {key}: not a key of a {base.kind} scenario"
                          + (f"; closest: {', '.join(hint)}" if hint else "") + " (capsim keys lists them)")


def check_columns(base: Scenario, grid: dict[str, list[Any]], columns: list[str], what: str, max_rate: bool,
                  layouts: bool | str) -> None:
    """An objective or a constraint must name a column the rows will have."""
    training = isinstance(base, TrainingScenario)
    known = ["config", *grid, *row_columns(training=training, max_rate=max_rate)]
    if layouts and training:
        known += ["parallelism.tp", "parallelism.pp", "parallelism.dp", "parallelism.sequence_parallel",
                  "parallelism.zero_stage", "training.micro_batch", "training.recompute"]
        if layouts == "full":
            known += ["parallelism.cp", "parallelism.virtual_stages", "parallelism.schedule"]
        elif isinstance(base, TrainingScenario) and base.parallelism.chunks_per_stage > 1:
            known += ["parallelism.virtual_stages", "parallelism.schedule"]   # interleaving kept where valid
    for col in columns:
        if col not in known:
            hint = closest(col, known, n=3)
            extra = ("; max_rate_rps and headroom_x need --max-rate"
                     if col in ("max_rate_rps", "headroom_x", "handles_2x", "handles_3x") else "")
            raise CapsimError(f"{what} on unknown column {col!r}"
                              + (f"; closest: {', '.join(hint)}" if hint else "")
                              + f"{extra}; columns: {', '.join(dict.fromkeys(known))}")


def parse_constraint(text: str) -> tuple[str, Callable[[Any, Any], bool], Any]:
    m = re.fullmatch(r"\s*([\w.]+)\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*", text)
    if not m:
        raise CapsimError(f"--constraint {text!r}: expected COLUMN OP VALUE, e.g. 'ttft_p99_s<=0.5' or 'slo_met==true'")
    value = _yaml_value(m.group(3), f"--constraint {text!r}")
    if not isinstance(value, int | float | bool | str) or (isinstance(value, str) and m.group(2) not in ("==", "!=")):
        raise CapsimError(f"--constraint {text!r}: {excerpt(value)} is not a number (a text value compares only "
                          "with == or !=)")
    return m.group(1), OPS[m.group(2)], value


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points not dominated (lower x and lower y are better)."""
    order = np.lexsort((y, x))
    keep = np.zeros(len(x), dtype=bool)
    best_y = np.inf
    for i in order:
        if y[i] < best_y:
            keep[i] = True
            best_y = y[i]
    return keep


def sweep(scenario: Scenario, *, grid: dict[str, list[Any]] | None = None, random: int | None = None,
          layouts: bool | str = False, objective: str | None = None, constraints: list[str] | None = None,
          executor: str = "local", workers: int | None = None, max_rate: bool = False, seed: int = 0,
          progress: Callable[[float, int], None] | None = None) -> SweepResult:
    """Evaluate every configuration of the sweep and rank those that are feasible and meet the constraints."""
    base = scenario
    if base.kind == "multi_model":
        raise CapsimError("capsim sweep runs training and serving scenarios; a multi_model scenario is one run of its "
                          "pool: compare settings with capsim serve and --set (e.g. --set policy.kind=static)")
    training = isinstance(base, TrainingScenario)
    check_keys(base, grid or {}, layouts)
    cons = [parse_constraint(c) for c in constraints or []]
    if objective is not None:
        check_columns(base, grid or {}, [objective.removeprefix("max:").removeprefix("min:")], "objective",
                      max_rate, layouts)
    check_columns(base, grid or {}, [c[0] for c in cons], "constraint", max_rate, layouts)
    configs = configurations(base, grid=grid or {}, random=random, layouts=layouts, seed=seed)
    cons = [parse_constraint(c) for c in constraints or []]     # before the run: a typo loses nothing
    doc = base.model_dump(mode="json", exclude_unset=True)   # only what the user wrote: a grid may switch a variant
    docs = []
    for c in configs:
        d = copy.deepcopy(doc)
        for k, v in c.items():
            _set(d, k, v)
        docs.append(d)
    partial = False
    try:
        rows = run_configs(docs, executor=executor, workers=workers, max_rate=max_rate, progress=progress)
    except Interrupted as stop:      # Ctrl-C: rank what finished and hand it back marked partial
        keep = [i for i, row in enumerate(stop.rows) if row is not None]
        if not keep:
            raise SweepInterrupted(None, len(docs)) from None
        configs, rows, partial = [configs[i] for i in keep], [stop.rows[i] for i in keep], True  # type: ignore[misc]
    frame = pd.DataFrame([{"config": ", ".join(f"{k}={v}" for k, v in c.items()), **c, **r}
                          for c, r in zip(configs, rows, strict=True)])
    if isinstance(base, ServingScenario) and base.slo.model_dump(exclude_none=True) and not any(c[0] == "slo_met" for c in cons):
        cons.append(("slo_met", operator.eq, True))
    ok = frame["feasible"].astype(bool).to_numpy().copy()
    for col, op, val in cons:
        if col not in frame:          # every configuration failed: no row has the metric
            frame[col] = None
        ok &= np.array([v is not None and v == v and bool(op(v, val)) for v in frame[col]])
    frame["meets_constraints"] = ok
    default = ("time_to_train_days" if "time_to_train_days" in frame and frame["time_to_train_days"].notna().any()
               else "iteration_time_s") if training else "usd_per_hour"
    obj = objective or default
    maximize = obj.startswith("max:")
    obj = obj.removeprefix("max:").removeprefix("min:")
    x, y = (("time_to_train_days", "cost_usd") if training and "cost_usd" in frame and frame["cost_usd"].notna().any()
            else ("iteration_time_s", "gpu_seconds_per_step") if training else ("e2e_p99_s", "usd_per_hour"))
    if not frame["feasible"].astype(bool).any():
        # every configuration failed: no metric column exists to rank by; the rows keep their errors
        for col in {obj, x, y} - set(frame.columns):
            frame[col] = np.nan
    if obj not in frame:
        raise CapsimError(f"unknown objective {obj!r}; columns: {', '.join(frame.columns)}")
    vals = pd.to_numeric(frame[obj], errors="coerce").to_numpy(dtype=float)
    score = np.where(ok & np.isfinite(vals), -vals if maximize else vals, np.inf)
    best = int(np.argmin(score)) if np.isfinite(score).any() else None
    frame["rank"] = pd.Series(score).rank(method="first").where(np.isfinite(score)).astype("Int64")
    xs = pd.to_numeric(frame[x], errors="coerce").to_numpy(dtype=float)
    ys = pd.to_numeric(frame[y], errors="coerce").to_numpy(dtype=float)
    fin = ok & np.isfinite(xs) & np.isfinite(ys)
    par = np.zeros(len(frame), dtype=bool)
    if fin.any():
        idx = np.flatnonzero(fin)
        par[idx] = pareto_mask(xs[idx], ys[idx])
    frame["pareto"] = par
    if partial:
        frame["partial"] = True
        raise SweepInterrupted(SweepResult(base, frame, obj, maximize, best, x, y, partial=True, planned=len(docs)),
                               len(docs))
    return SweepResult(base, frame, obj, maximize, best, x, y)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`sweep`: ``result`` ranks the configurations that finished (None if none did),
    ``planned`` is how many there were. A KeyboardInterrupt, so an uncaught one stops the program as before."""

    def __init__(self, result: SweepResult | None, planned: int) -> None:
        super().__init__("sweep interrupted")
        self.result, self.planned = result, planned


__all__ = ["SweepInterrupted", "SweepResult", "evaluate", "pareto_mask", "parse_grid", "sweep"]
