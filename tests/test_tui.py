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
import time
from pathlib import Path

import pytest

from tui.app import CapsimApp, CompareScreen, EditorScreen, ResultScreen
from tui.present import Session

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
        app.screen.query_one("#f-replica__batching").value = "bogus"
        await pilot.pause()
        err = str(app.screen.query_one("#error").render())
        assert "replica.batching" in err and "continuous" in err
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
        for key in ("j", "y", "h"):
            await pilot.press(key)
        await pilot.pause()
    names = sorted(p.suffix for p in tmp_path.iterdir())
    assert names == [".html", ".json", ".yml"]


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
    assert [p.name for p in out.iterdir()] == ["x-0.yml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
