"""The terminal UI: Textual pilot tests, text snapshots of the main screens, and the real
``capsim tui`` driven in tmux."""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Select

from tui.app import CapsimApp, CompareScreen, EditorScreen, ExportScreen, ResultScreen
from tui.present import Session, run_labels

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = str(ROOT / "examples" / "serve_llama3_8b.yaml")
SNAPSHOTS = Path(__file__).parent / "snapshots"


def screen_text(app: CapsimApp) -> str:
    """The screen as text lines, from Textual's SVG screenshot (text runs placed by column)."""
    svg = app.export_screenshot()
    runs = re.findall(r'<text[^>]*x="([\d.]+)" y="([\d.]+)" textLength="([\d.]+)"[^>]*>(.*?)</text>', svg, re.S)
    widths = [float(n) / len(html.unescape(t)) for _, _, n, t in runs if html.unescape(t)]
    cw = min(widths) if widths else 1.0
    rows: dict[float, str] = {}
    for x, y, _, body in runs:
        text = html.unescape(re.sub(r"<[^>]+>", "", body)).replace("\xa0", " ")
        col = round(float(x) / cw)
        line = rows.get(float(y), "")
        rows[float(y)] = line.ljust(col)[:col] + text + line[col + len(text):]
    return "\n".join(line.rstrip() for _, line in sorted(rows.items()))


async def wait_for(pilot, predicate, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while not predicate():
        await pilot.pause(0.1)
        assert time.monotonic() - t0 < timeout, "timed out"


def check_snapshot(name: str, text: str) -> None:
    """Compare with the committed snapshot; CAPSIM_UPDATE_SNAPSHOTS=1 rewrites it (then review the diff)."""
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("CAPSIM_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text + "\n")
    assert path.exists(), f"missing snapshot {path}"
    assert text == path.read_text().rstrip("\n"), f"screen differs from {path}:\n{text}"


def test_edit_run_and_read_the_numbers() -> None:
    asyncio.run(_test_edit_run_and_read_the_numbers())


async def _test_edit_run_and_read_the_numbers() -> None:
    app = CapsimApp(Session.load(EXAMPLE))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, EditorScreen)
        app.screen.query_one("#f-cluster__replicas").value = "3"
        app.screen.query_one("#f-workload__duration_s").value = "120"
        await pilot.pause()
        assert "valid scenario" in str(app.screen.query_one("#error").render())
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        r = app.results[-1]
        assert r["replicas"]["max"] == 3 and r.scenario.workload.duration_s == 120
        await pilot.pause(0.2)
        shown = screen_text(app)
        assert f"{r['ttft_s']['p50'] * 1e3:,.1f} ms" in shown and "mean 3.0, max 3" in shown
        # a second run with one replica, then compare: the halved cost is shown as better
        await pilot.press("escape")
        app.screen.query_one("#f-cluster__replicas").value = "1"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(app.results) == 2 and isinstance(app.screen, ResultScreen))
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert "(-67%)" in screen_text(app)          # $/hour: 1 replica instead of 3


def test_invalid_values_show_inline_errors() -> None:
    asyncio.run(_test_invalid_values_show_inline_errors())


async def _test_invalid_values_show_inline_errors() -> None:
    app = CapsimApp(Session.load(EXAMPLE))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.screen.query_one("#f-replica__tp").value = "3"
        await pilot.pause()
        assert "must divide" in str(app.screen.query_one("#error").render())
        app.screen.query_one("#f-replica__tp").value = "1"
        app.screen.query_one("#f-model").value = "llama-9"
        await pilot.pause()
        err = str(app.screen.query_one("#error").render())
        assert "llama-9" in err and "valid scenario" not in err
        await pilot.press("ctrl+r")                  # refuses to run an invalid scenario
        await pilot.pause(0.3)
        assert isinstance(app.screen, EditorScreen) and not app.results


def test_export_writes_files(tmp_path: Path) -> None:
    asyncio.run(_test_export_writes_files(tmp_path))


async def _test_export_writes_files(tmp_path: Path) -> None:
    app = CapsimApp(Session.load(EXAMPLE), out_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.screen.query_one("#f-workload__duration_s").value = "60"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        for key, name in (("j", "run.json"), ("y", "scenario.yaml"), ("h", "report.html")):
            await pilot.press(key)                     # asks for a path, prefilled with the output folder's
            await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
            box = app.screen.query_one("#export-path", Input)
            assert box.value.startswith(str(tmp_path))
            box.value = str(tmp_path / name)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        await pilot.press("j")                          # escape cancels: nothing written
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        await pilot.press("escape")
        await pilot.press("j")                          # a folder that does not exist: an error shown, no file
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        app.screen.query_one("#export-path", Input).value = str(tmp_path / "nope" / "x.json")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ResultScreen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "run.json", "scenario.yaml"]


TRAIN_EXAMPLE = str(ROOT / "examples" / "train_gpt3_175b.yaml")
RAG_EXAMPLE = str(ROOT / "examples" / "serve_rag_chain.yaml")


def error_text(app: CapsimApp) -> str:
    return str(app.screen.query_one("#error").render())


def test_editor_runs_the_memory_fit_check() -> None:
    asyncio.run(_test_editor_runs_the_memory_fit_check())


async def _test_editor_runs_the_memory_fit_check() -> None:
    # GPT-3 175B at tp=8 pp=4 on 80 GiB A100s: 105.8 GiB per GPU on the busiest stage (params 10.3,
    # fp32 gradients 20.6, Adam states 61.7, activations 12.0, buffers 1.3)
    app = CapsimApp(Session.load(TRAIN_EXAMPLE))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert "valid scenario" in error_text(app) and "of 80 GiB per GPU" in error_text(app)
        app.screen.query_one("#f-parallelism__pp").value = "4"
        await pilot.pause()
        text = error_text(app)
        assert "valid scenario" not in text and "does not fit in memory: 105.8 of 80 GiB per GPU" in text
        assert app.screen.query_one("#error").has_class("warning")


def test_enum_keys_are_choice_lists_and_every_arrival_has_its_keys() -> None:
    asyncio.run(_test_enum_keys_are_choice_lists_and_every_arrival_has_its_keys())


async def _test_enum_keys_are_choice_lists_and_every_arrival_has_its_keys() -> None:
    app = CapsimApp(Session.load(EXAMPLE))
    async with app.run_test(size=(80, 30)) as pilot:
        await pilot.pause()
        batching = app.screen.query_one("#f-replica__batching", Select)
        assert batching.value == "continuous"
        assert {"none", "static", "dynamic", "continuous", "prefill_first"} <= {str(v) for _, v in batching._options}
        assert isinstance(app.screen.query_one("#f-model"), Input)       # a catalog name or a path: free text
        process = app.screen.query_one("#f-workload__arrival__process", Select)
        assert {"poisson", "gamma", "diurnal", "closed_loop", "offline", "trace"} <= \
            {str(v) for _, v in process._options}
        process.value = "diurnal"                        # the diurnal rate and its shape become editable
        await wait_for(pilot, lambda: bool(app.screen.query("#f-workload__arrival__mean_rps")))
        assert not app.screen.query("#f-workload__arrival__rate_rps")
        for key in ("peak_to_trough", "period_s", "peak_at_s"):
            assert app.screen.query(f"#f-workload__arrival__{key}"), key
        assert "mean_rps" in error_text(app)            # a diurnal day needs its mean rate
        app.screen.query_one("#f-workload__arrival__mean_rps", Input).value = "6"
        await pilot.pause()
        assert "valid scenario" in error_text(app)
        sc = app.session.scenario()
        assert sc.workload.arrival.process == "diurnal" and sc.workload.arrival.mean_rps == 6
        process = app.screen.query_one("#f-workload__arrival__process", Select)
        process.value = "closed_loop"
        await wait_for(pilot, lambda: bool(app.screen.query("#f-workload__arrival__concurrency")))
        assert app.screen.query("#f-workload__arrival__think_time_s")


def test_run_is_disabled_while_running(monkeypatch: pytest.MonkeyPatch) -> None:
    # the run waits for the test's go-ahead, so it is still running, on any machine, while keys are pressed
    release = threading.Event()
    real_run = Session.run

    def held_run(self: Session) -> object:
        assert release.wait(60)
        return real_run(self)

    monkeypatch.setattr(Session, "run", held_run)
    asyncio.run(_test_run_is_disabled_while_running(release))


async def _test_run_is_disabled_while_running(release: threading.Event) -> None:
    app = CapsimApp(Session.load(EXAMPLE))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.screen.query_one("#f-workload__duration_s").value = "60"
        await pilot.press("ctrl+r")
        assert app.running
        for _ in range(3):                               # impatient presses while it runs
            await pilot.press("ctrl+r")
            await pilot.press("f5")
        assert app.running
        release.set()
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        await pilot.pause(1.0)
        assert len(app.results) == 1 and not app.running
        await pilot.press("escape")
        await pilot.pause()
        assert "ctrl+l shows it · ctrl+t compares" in str(app.screen.query_one("#status").render())


def test_hints_name_only_bound_keys() -> None:
    hint = EditorScreen.HINT
    bound = {k for b in EditorScreen.BINDINGS for k in b.key.split(",")}     # type: ignore[union-attr]
    named = set(re.findall(r"\b(ctrl\+\w|f\d+)\b", hint))
    assert named and named <= bound
    assert all("+" in k or k.startswith("f") for k in bound)      # nothing a plain letter would type


def test_compare_labels_are_distinct_and_fit_80_columns() -> None:
    asyncio.run(_test_compare_labels_are_distinct_and_fit_80_columns())


async def _test_compare_labels_are_distinct_and_fit_80_columns() -> None:
    app = CapsimApp(Session.load(EXAMPLE))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.screen.query_one("#f-workload__duration_s").value = "60"
        for replicas in ("2", "1", "3"):
            app.screen.query_one("#f-cluster__replicas").value = replicas
            await pilot.pause()
            n = len(app.results)
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda n=n: len(app.results) == n + 1 and isinstance(app.screen, ResultScreen))
            await pilot.press("escape")
            await pilot.pause()
        assert run_labels(app.results) == ["#1 base", "#2 replicas=1", "#3 replicas=3"]
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        await pilot.pause(0.2)
        shown = screen_text(app)
        for label in ("#1 base", "#2 replicas=1", "#3 replicas=3", "#2: cluster.replicas=1"):
            assert label in shown, (label, shown)
        assert max(map(len, shown.splitlines())) <= 80
        table = app.screen.query_one("#compare", DataTable)
        assert table.virtual_size.width <= 80            # three runs fit; more scroll sideways


def test_multi_service_scenarios_show_per_service_fields() -> None:
    asyncio.run(_test_multi_service_scenarios_show_per_service_fields())


async def _test_multi_service_scenarios_show_per_service_fields() -> None:
    app = CapsimApp(Session.load(RAG_EXAMPLE))
    async with app.run_test(size=(100, 50)) as pilot:
        await pilot.pause()
        shown = screen_text(app)
        assert "embed · cluster.replicas" in shown and "llm · replica.batching" in shown
        assert not app.screen.query("#f-cluster__replicas")     # the top-level one does not apply
        assert app.screen.query_one("#f-services__0__cluster__replicas", Input).value == "1"
        app.screen.query_one("#f-services__0__cluster__replicas", Input).value = "3"
        await pilot.pause()
        assert "valid scenario" in error_text(app)
        assert app.session.scenario().services[0].cluster.replicas == 3


def test_snapshots_of_the_main_screens() -> None:
    asyncio.run(_test_snapshots_of_the_main_screens())


async def _test_snapshots_of_the_main_screens() -> None:
    app = CapsimApp(Session.load(EXAMPLE))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        check_snapshot("editor", screen_text(app))
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        await pilot.pause(0.2)
        check_snapshot("result", screen_text(app))


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed (apt-get install tmux)")
def test_real_tui_in_tmux() -> None:
    session = "capsim-test"
    capsim = str(Path(sys.executable).parent / "capsim")
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, check=False)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "32",
                    f"{capsim} tui {EXAMPLE}"], check=True, cwd=ROOT)
    try:
        def pane() -> str:
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

        deadline = time.time() + 60
        while "serving scenario" not in pane():
            assert time.time() < deadline, pane()
            time.sleep(0.3)
        subprocess.run(["tmux", "send-keys", "-t", session, "C-r"], check=True)
        while "TTFT p50/p99" not in pane():
            assert time.time() < deadline + 60, pane()
            time.sleep(0.3)
        screen = pane()
        assert re.search(r"TTFT p50/p99\s+[\d.]+ ms / [\d.]+ ms", screen), screen
        assert "SLO attainment" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, check=False)


def test_pipeline_busy_is_the_share_of_stages_computing() -> None:
    import pandas as pd

    from simulator.training.result import pipeline_busy

    # two stages: stage 0 computes over [0, 1] and [2, 3], stage 1 over [1, 3]; in thirds of the
    # 3 s step that is 1 of 2 stages busy, then 1 of 2, then 2 of 2
    tl = pd.DataFrame({"stage": [0, 0, 1], "start_s": [0.0, 2.0, 1.0], "end_s": [1.0, 3.0, 3.0]})
    assert pipeline_busy(tl, bins=3) == pytest.approx([0.5, 0.5, 1.0])
    assert pipeline_busy(tl.iloc[:0]) == []


def test_export_names_stay_in_the_folder(tmp_path: Path) -> None:
    """A scenario named '../../../x' used to write outside the export folder."""
    asyncio.run(_test_export_names_stay_in_the_folder(tmp_path))


async def _test_export_names_stay_in_the_folder(tmp_path: Path) -> None:
    session = Session.load(EXAMPLE)
    session.doc["name"] = "../../../x"
    out = tmp_path / "a" / "b" / "c"
    out.mkdir(parents=True)
    app = CapsimApp(session, out_dir=out)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.export("yaml", None)
        await pilot.pause()
        await pilot.press("enter")          # the prompt's prefilled path: the folder and the name made safe
        await pilot.pause()
    assert [p.name for p in out.iterdir()] == ["x-0.yml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_an_moe_training_scenario_shows_its_expert_keys() -> None:
    moe = Session.load(str(ROOT / "examples" / "train_qwen3_moe_b200.yaml"))
    keys = [k for k, _ in moe.keys()]
    assert keys[keys.index("parallelism.pp") + 1] == "parallelism.ep"
    fields = {f.key: f for f in moe.fields()}
    assert fields["parallelism.ep"].value == "8"
    assert fields["training.moe_dispatcher"].value == "flex"
    assert fields["training.moe_dispatcher"].choices == ("alltoall", "flex")
    # a dense model has none of them
    dense = [k for k, _ in Session.load(TRAIN_EXAMPLE).keys()]
    assert "parallelism.ep" not in dense and "training.moe_dispatcher" not in dense
