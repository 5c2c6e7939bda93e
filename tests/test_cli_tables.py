"""Tables never cut an id or a configuration and money reads as money, at 80 columns, 200 columns
and piped (capsim.tables, used by every command)."""

import io
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from capsim.cli import app
from capsim.tables import Col, compact_usd, kv_table, metric, print_table, usd, usd_per_hour, usd_per_month
from simulator.catalog import catalog
from simulator.hardware import profile_paths

runner = CliRunner()


def test_money():
    assert usd(1.78e6) == "$1,780,000"
    assert usd(2_009_430.4) == "$2,009,430"
    assert usd(12.345) == "$12.35"
    assert usd(0.04512) == "$0.0451"
    assert usd(0) == "$0.00"
    assert usd_per_hour(2.3) == "$2.30/h"
    assert usd_per_hour(1234.4) == "$1,234/h"
    # 41,600 $/month is 56.986... $/h over the 730-hour month
    assert usd_per_month(41_600 / 730) == "$41.6k/month"
    assert usd_per_month(13.76) == "$10.0k/month"          # 13.76 × 730 = 10,044.8
    assert compact_usd(1.78e6) == "$1.78M" and compact_usd(950.0) == "$950"
    assert metric("cost_usd", 1.78e6) == "$1,780,000" and metric("usd_per_hour", 2.3) == "$2.30/h"
    assert metric("mfu", 0.50312) == "0.5031" and metric("tokens_per_s", 149299.2) == "149,299"


IDS = ["megatron-529.6b", "llama-3.1-405b", "deepseek-v3-671b-instruct-long-name"]
ROWS = [[i, "decoder", "96", "174.616 B", "a description that may wrap between its words"] for i in IDS]
COLS = [Col("model", "id"), Col("arch", "id"), Col("layers", "num"), Col("params", "num"), Col("note")]


@pytest.mark.parametrize("width", [40, 80, 200])
def test_print_table_keeps_every_id_whole(width):
    c = Console(width=width, record=True, file=io.StringIO())
    print_table(c, COLS, ROWS, title="t")
    lines = c.export_text().splitlines()
    for i in IDS:
        assert any(i in line for line in lines), (width, i)
    assert all(len(line.rstrip()) <= width for line in lines)
    if width == 40:       # too narrow for the table: one block per row, each value after its header
        assert "  params: 174.616 B" in lines
    if width == 200:
        assert any(line.startswith("megatron-529.6b") and "174.616 B" in line for line in lines)


def test_kv_table_keeps_labels_and_wraps_values():
    c = Console(width=40, record=True, file=io.StringIO())
    kv_table(c, [("memory / GPU", "word " * 20), ("cost", "$2,009,430 for 585,689 GPU-hours")])
    text = c.export_text()
    assert "memory / GPU" in text and "$2,009,430" in text and "585,689" in text


def _cli(width, *args):
    env = {"COLUMNS": str(width)} if width else {}
    r = runner.invoke(app, list(args), env=env)
    assert r.exit_code == 0, r.output
    return r.stdout


@pytest.mark.parametrize("width", [80, 200, None])   # None: piped with no COLUMNS (rich's 80)
def test_models_and_profiles_show_every_name_whole(width):
    text = _cli(width, "models")
    names = list(catalog())
    for n in names:
        assert re.search(rf"(^|\s){re.escape(n)}(\s|$)", text, flags=re.M), n
    # the check: COLUMNS=80 capsim models | grep -c llama-3.1- prints 3
    assert sum("llama-3.1-" in line for line in text.splitlines()) == sum(n.startswith("llama-3.1-") for n in names) == 3
    assert "…" not in text
    prof = _cli(width, "profiles")
    for p in profile_paths():
        assert re.search(rf"(^|\s){re.escape(p)}(\s|$)", prof, flags=re.M), p
    assert "…" not in prof


@pytest.mark.parametrize("width", [80, 200])
def test_training_result_money_and_layout(width):
    text = _cli(width, "train", "examples/train_gpt3_175b.yaml")
    assert re.search(r"cost\s+\$\d{1,3}(,\d{3})+ for [\d,]+ GPU-hours at \$3\.43/GPU-h", text), text
    assert "e+0" not in text and "…" not in text
