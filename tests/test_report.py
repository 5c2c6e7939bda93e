"""HTML reports: rendered for small scenarios and opened in a real headless Chromium.

Skipped (with how to enable) when no ``chromium`` is on PATH; ``.ci/run`` installs it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from simulator import parse_scenario, simulate_serving, simulate_training
from simulator.report import sweep_html, write_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not found: install Debian's 'chromium' (apt-get install chromium) "
                             "to run the report rendering tests")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "build" / "screenshots"


def training_result():
    return simulate_training(parse_scenario({
        "kind": "training", "model": "megatron-1.7b", "hardware": "a100-sxm-80gb", "name": "report-train",
        "cluster": {"nodes": 1, "gpus_per_node": 8}, "parallelism": {"tp": 2, "pp": 2},
        "training": {"seq_len": 2048, "global_batch": 32, "micro_batch": 2, "total_tokens": 1e9},
        "reliability": {"node_mtbf_hours": 500, "runs": 50}}))


def serving_result():
    return simulate_serving(parse_scenario({
        "kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm", "name": "report-serve",
        "workload": {"arrival": {"process": "gamma", "rate_rps": 6, "cv": 2, "requests": 600},
                     "prompt_tokens": {"dist": "lognormal", "mean": 600}, "output_tokens": {"dist": "fixed", "value": 100}},
        "cluster": {"replicas": 2}, "slo": {"ttft_p99_s": 0.5},
        "autoscaling": {"policy": "hpa", "target": 4, "min_replicas": 1, "max_replicas": 4, "node_provision_s": 20,
                        "model_load_s": 10}}))


def chromium(html_path: Path, tmp: Path, shot: Path) -> str:
    """Open the page headless: take a screenshot and return the DOM after the scripts ran."""
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--virtual-time-budget=10000", "--window-size=1280,2000"]
    subprocess.run([*base, f"--user-data-dir={tmp / 'shot'}", f"--screenshot={shot}", html_path.as_uri()],
                   capture_output=True, timeout=120, check=False)
    dom = subprocess.run([*base, f"--user-data-dir={tmp / 'dom'}", "--dump-dom", html_path.as_uri()],
                         capture_output=True, text=True, timeout=120, check=False).stdout
    return dom


def check_page(dom: str, expected: list[str]) -> None:
    errors = re.search(r'<pre id="capsim-errors"[^>]*>(.*?)</pre>', dom, re.S)
    assert errors is not None and errors.group(1).strip() == "", errors.group(1) if errors else dom[:500]
    charts = re.search(r'data-charts="(\d+)"', dom)
    assert charts and int(charts.group(1)) == len(expected)
    for cid in expected:
        m = re.search(rf'id="{cid}"[^>]*data-points="(\d+)"', dom) or re.search(rf'data-points="(\d+)"[^>]*id="{cid}"', dom)
        assert m and int(m.group(1)) > 0, f"chart {cid} drew no data"


def no_network_references(text: str) -> None:
    # nothing is loaded from elsewhere: no external scripts, styles, images or fonts
    assert not re.search(r'<(script|link|img|iframe)[^>]*(src|href)="(https?:)?//', text)
    assert "Content-Security-Policy" in text and "connect-src 'none'" in text


def test_reports_are_self_contained(tmp_path: Path) -> None:
    for r in (training_result(), serving_result()):
        p = write_html(r, tmp_path / "r.html")
        text = p.read_text()
        no_network_references(text)
        assert 'id="capsim-scenario"' in text and r.scenario.name in text
        assert '"capsim_version"' in text


@needs_chromium
@pytest.mark.parametrize("kind", ["training", "serving"])
def test_report_renders_in_chromium(kind: str, tmp_path: Path) -> None:
    r = training_result() if kind == "training" else serving_result()
    page = write_html(r, tmp_path / f"{kind}.html")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"{kind}.png"
    shot.unlink(missing_ok=True)
    dom = chromium(page, tmp_path, shot)
    expected = (["chart-breakdown", "chart-memory", "chart-pipeline", "chart-ttt", "chart-cost"] if kind == "training"
                else ["chart-cdf", "chart-rate", "chart-queue", "chart-latency", "chart-util", "chart-cost",
                   "chart-replicas"])
    check_page(dom, expected)
    assert shot.exists() and shot.stat().st_size > 20_000


@needs_chromium
def test_sweep_report_renders(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"config": ["a", "b", "c", "d"], "cost_usd": [10.0, 8.0, 12.0, 20.0],
                          "p99_s": [1.0, 2.0, 0.8, 0.5], "feasible": [True, True, True, False],
                          "pareto": [True, True, True, False]})
    page = tmp_path / "sweep.html"
    page.write_text(sweep_html(frame, x="p99_s", y="cost_usd", title="sweep", scenario_yaml="kind: serving\n", best=0))
    shot = SCREENSHOTS / "sweep.png"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    dom = chromium(page, tmp_path, shot)
    check_page(dom, ["chart-pareto"])
    assert dom.count("<tr") == 5      # header + 4 configurations, infeasible ones included


HOSTILE = "<!--<script>document.body.setAttribute('data-pwned', 1)</script>&\u2028"


def test_embedded_json_is_escaped_and_scripts_are_allowed_by_hash() -> None:
    import base64
    import hashlib
    import json

    from simulator.report.page import script_json

    text = script_json({"name": HOSTILE})
    assert not any(c in text for c in "<>&\u2028") and json.loads(text) == {"name": HOSTILE}
    page = sweep_html(_hostile_frame(), x="p99_s", y="cost_usd", title=HOSTILE, scenario_yaml=f"name: {HOSTILE}\n",
                      best=0)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert csp is not None and "'unsafe-inline'" not in csp.group(1).split("script-src")[1].split(";")[0]
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)      # the page's own inline scripts
    assert len(scripts) == 3
    for s in scripts:
        digest = base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp.group(1)
    assert "data-pwned" not in "".join(scripts) and "<!--<script>" not in page


def _hostile_frame():
    import pandas as pd

    return pd.DataFrame({"config": [f"name={HOSTILE}", "b", "c"], "cost_usd": [10.0, 8.0, 12.0],
                         "p99_s": [1.0, 2.0, 0.8], "feasible": [True, True, True], "pareto": [True, True, True]})


@needs_chromium
def test_hostile_names_neither_run_nor_blank_the_charts(tmp_path: Path) -> None:
    """`<!--<script>` in a sweep value used to open an HTML comment inside the figures' JSON: every chart
    blank, no error. Escaped, the chart draws every point and nothing injected runs."""
    page = tmp_path / "hostile.html"
    page.write_text(sweep_html(_hostile_frame(), x="p99_s", y="cost_usd", title=HOSTILE,
                               scenario_yaml=f"name: {HOSTILE}\n", best=0))
    dom = chromium(page, tmp_path, tmp_path / "hostile.png")
    check_page(dom, ["chart-pareto"])
    assert 'data-pwned="1"' not in dom and "data-pwned" in dom        # shown as text, never run


def test_the_serving_report_lists_the_engine_settings_and_their_sources(tmp_path: Path) -> None:
    """Every engine setting the replicas ran with, its value and where it came from: the preset's cited source
    (vLLM's default batch size) or the scenario, and the kernel tables."""
    r = serving_result()
    text = write_html(r, tmp_path / "r.html").read_text()
    section = text[text.index("<h2>Engine</h2>"):text.index("<h2>Scenario</h2>")]
    assert "vllm 0.9+ preset (max_num_seqs 1024" in section and "kernel tables: vllm" in section
    for key in ("max_num_seqs", "chunked_prefill", "kv_cache_precision", "host_us_per_request"):
        assert f">{key}</td>" in section
    assert "default_max_num_seqs" in section           # the preset's source for max_num_seqs
    assert "0: not modelled" in section                # vLLM carries no host time per request
