"""The capsim terminal UI: App → screens → widgets. Widgets only show what ``tui.present`` computes
and call the public API (``simulate_training``/``simulate_serving``) through the session, in a
thread worker so the interface never freezes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, LoadingIndicator, Sparkline, Static

from simulator import CapsimError
from simulator.files import safe_name, write_atomic
from simulator.serving import ServingResult
from simulator.training import TrainingResult

from .present import Session, compare, headline

VERDICT = {1: "green", -1: "red", 0: ""}


class _CapsimScreen(Screen[Any]):
    """A screen of this app: ``capsim`` is the app with its session, results and actions, typed."""

    @property
    def capsim(self) -> CapsimApp:
        return cast("CapsimApp", self.app)


class EditorScreen(_CapsimScreen):
    """The scenario's main keys, each editable; the whole scenario is validated on every change."""

    # ctrl+ keys: plain letters go into the focused field
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "run", "Run"), Binding("ctrl+t", "compare", "Compare"),
        Binding("ctrl+l", "results", "Last result"), Binding("ctrl+s", "export('yaml')", "Save YAML"),
        Binding("ctrl+q", "app.quit", "Quit")]

    def compose(self) -> ComposeResult:
        s: Session = self.capsim.session
        yield Static(f"capsim · {s.kind} scenario · {Path(s.source).name}", id="title")
        with VerticalScroll(id="fields"):
            for key, value in s.fields():
                with Horizontal(classes="field"):
                    yield Label(key)
                    yield Input(value=value, id="f-" + key.replace(".", "__"), name=key)
        yield Static("", id="error")
        yield LoadingIndicator(id="progress")
        yield Static("Tab moves · type to edit · ctrl+r run · ctrl+t compare · ctrl+l last result", id="status")
        yield Footer()

    def on_mount(self) -> None:
        self._show(self.capsim.session.error())

    @on(Input.Changed)
    def edited(self, event: Input.Changed) -> None:
        self._show(self.capsim.session.set(event.input.name or "", event.value))

    def _show(self, error: str | None) -> None:
        box = self.query_one("#error", Static)
        box.update(error or "✓ valid scenario")
        box.set_class(error is None, "ok")

    def action_run(self) -> None:
        err = self.capsim.session.error()
        if err:
            self.app.notify("fix the scenario first", severity="error")
            self._show(err)
            return
        self.query_one("#progress").add_class("running")
        self.query_one("#status", Static).update("simulating… (the UI stays responsive)")
        self.capsim.start_run()

    def run_finished(self, ok: bool, message: str) -> None:
        self.query_one("#progress").remove_class("running")
        self.query_one("#status", Static).update(message)

    def action_compare(self) -> None:
        self.capsim.show_compare()

    def action_results(self) -> None:
        if self.capsim.results:
            self.app.push_screen(ResultScreen(self.capsim.results[-1]))

    def action_export(self, fmt: str) -> None:
        self.capsim.export(fmt, None)


class ResultScreen(_CapsimScreen):
    """Headline numbers, tables and terminal charts of one run; export from here."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,e", "app.pop_screen", "Edit"), Binding("h", "export('html')", "HTML"),
        Binding("j", "export('json')", "JSON"), Binding("y", "export('yaml')", "YAML"),
        Binding("c", "compare", "Compare"), Binding("q", "app.quit", "Quit")]

    def __init__(self, result: TrainingResult | ServingResult) -> None:
        super().__init__()
        self.result = result

    def compose(self) -> ComposeResult:
        r = self.result
        yield Static(f"result · {r.name} · {r.model} on {r.hardware}", id="title")
        table: DataTable[str] = DataTable(id="headline", show_cursor=False)
        table.add_columns("metric", "value")
        for k, v in headline(self.result):
            table.add_row(k, v)
        yield table
        with VerticalScroll(id="details"):
            for label, data in self._series():
                with Horizontal(classes="sparkrow"):
                    yield Label(label)
                    yield Sparkline(data, summary_function=max)
            yield DataTable(id="breakdown", show_cursor=False)
        yield Footer()

    def _series(self) -> list[tuple[str, list[float]]]:
        r = self.result
        if isinstance(r, TrainingResult):
            busy = r.pipeline_busy()
            return [("stages busy over step", busy)] if busy else []
        sf, fleet = r.scaling_frame(), r.fleet_frame()
        return [("arrivals /s", sf.arrival_rps.fillna(0).tolist()), ("replicas ready", sf.replicas_ready.tolist()),
                ("queued (all replicas)", fleet.queue.tolist()), ("GPU busy", fleet.gpu_busy.tolist()),
                ("e2e p99 s", sf.e2e_p99_s.fillna(0).tolist())]

    def on_mount(self) -> None:
        t = self.query_one("#breakdown", DataTable)
        r = self.result
        if isinstance(r, TrainingResult):
            t.add_columns("time breakdown", "s")
            for k, v in r.time_breakdown_s.to_dict().items():
                if v or k not in ("cp_comm_s", "ep_comm_s"):     # no CP/EP rows for a layout without them
                    t.add_row(k.removesuffix("_s").replace("_", " "), f"{v:.4f}")
            for k, v in r.memory_per_gpu_gib.to_dict().items():
                t.add_row(f"memory {k}", f"{v:.2f} GiB")
        else:
            t.add_columns("latency", "p50", "p90", "p99", "mean")
            for name, d in (("ttft", r.ttft_s), ("tpot", r.tpot_s), ("e2e", r.e2e_s), ("queue", r.queue_s)):
                t.add_row(name, *("-" if q is None else f"{q:.4f}" for q in (d.p50, d.p90, d.p99, d.mean)))

    def action_export(self, fmt: str) -> None:
        self.capsim.export(fmt, self.result)

    def action_compare(self) -> None:
        self.capsim.show_compare()


class CompareScreen(_CapsimScreen):
    """Runs side by side; differences from the first run in green (better) or red (worse)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,e", "app.pop_screen", "Back"), Binding("x", "clear", "Clear runs"),
        Binding("q", "app.quit", "Quit")]

    def compose(self) -> ComposeResult:
        yield Static("compare runs · green: better than run #1 · red: worse", id="title")
        yield DataTable(id="compare", show_cursor=False)
        yield Footer()

    def on_mount(self) -> None:
        runs = [r for r in self.capsim.results if r.kind == self.capsim.results[-1].kind]
        header, rows = compare(runs)
        t = self.query_one("#compare", DataTable)
        t.add_columns(*header)
        for row in rows:
            t.add_row(*(Text(text, style=VERDICT[v]) for text, v in row))

    def action_clear(self) -> None:
        self.capsim.results = self.capsim.results[-1:]
        self.app.pop_screen()


class CapsimApp(App):
    CSS_PATH = "capsim.tcss"
    TITLE = "capsim"

    def __init__(self, session: Session, *, out_dir: Path | None = None) -> None:
        super().__init__()
        self.session = session
        self.results: list[TrainingResult | ServingResult] = []
        self.out_dir = out_dir or Path.cwd()

    def on_mount(self) -> None:
        self.push_screen(EditorScreen())

    def start_run(self) -> None:
        self._simulate()

    @work(thread=True, exclusive=True)
    def _simulate(self) -> None:
        try:
            result = self.session.run()
        except CapsimError as e:
            self.call_from_thread(self._failed, str(e))
            return
        self.call_from_thread(self._done, result)

    def _editor(self) -> EditorScreen | None:
        for s in self.screen_stack:
            if isinstance(s, EditorScreen):
                return s
        return None

    def _failed(self, message: str) -> None:
        if ed := self._editor():
            ed.run_finished(False, "run failed")
        self.notify(message, severity="error", timeout=10)

    def _done(self, result: TrainingResult | ServingResult) -> None:
        self.results.append(result)
        if ed := self._editor():
            ed.run_finished(True, f"run #{len(self.results)} done · v shows it · c compares")
        self.push_screen(ResultScreen(result))

    def show_compare(self) -> None:
        if len(self.results) < 1:
            self.notify("run a scenario first (r)", severity="warning")
            return
        self.push_screen(CompareScreen())

    def export(self, fmt: str, result: TrainingResult | ServingResult | None) -> None:
        # the scenario's name is the user's text ('../../x'): the file name made from it stays in out_dir
        name = safe_name(str(self.session.doc.get("name", "scenario")), default="scenario")
        path = self.out_dir / f"{name}-{len(self.results)}.{ 'yml' if fmt == 'yaml' else fmt}"
        try:
            if fmt == "yaml":
                write_atomic(path, self.session.yaml())
            elif result is None:
                self.notify("run first to export results", severity="warning")
                return
            elif fmt == "json":
                write_atomic(path, result.to_json())
            else:
                from simulator.report import write_html

                write_html(result, path)
        except (CapsimError, OSError) as e:
            self.notify(str(e), severity="error")
            return
        self.notify(f"wrote {path}")


def run_tui(path: str | None = None) -> None:
    CapsimApp(Session.load(path)).run()
