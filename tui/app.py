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
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Label, LoadingIndicator, Select, Sparkline, Static

from simulator import CapsimError
from simulator.files import safe_name, write_atomic
from simulator.serving import ServingResult
from simulator.serving.multi_result import MultiModelResult
from simulator.training import TrainingResult

from .present import Field, Session, compare, headline, latency_table, run_differences

VERDICT = {1: "green", -1: "red", 0: ""}


class _CapsimScreen(Screen[Any]):
    """A screen of this app: ``capsim`` is the app with its session, results and actions, typed."""

    @property
    def capsim(self) -> CapsimApp:
        return cast("CapsimApp", self.app)


def _field_id(key: str) -> str:
    return "f-" + key.replace(".", "__")


class EditorScreen(_CapsimScreen):
    """The scenario's main keys, each editable (a choice list where the values are a closed set); the
    whole scenario is validated on every change, a training layout's memory checked too."""

    # ctrl+ and function keys only: plain letters go into the focused field
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r,f5", "run", "Run"), Binding("ctrl+t", "compare", "Compare"),
        Binding("ctrl+l", "results", "Last result"), Binding("ctrl+s", "export('yaml')", "Save YAML"),
        Binding("ctrl+q", "app.quit", "Quit")]
    HINT = "Tab moves · ctrl+r run · ctrl+t compare · ctrl+l last result · ctrl+s save"

    def compose(self) -> ComposeResult:
        s: Session = self.capsim.session
        yield Static(f"capsim · {s.kind} scenario · {Path(s.source).name}", id="title")
        with VerticalScroll(id="fields"):
            yield from self._rows(s.fields())
        yield Static("", id="error")
        yield LoadingIndicator(id="progress")
        yield Static(self.HINT, id="status")
        yield Footer()

    @staticmethod
    def _rows(fields: list[Field]) -> list[Horizontal]:
        rows = []
        # the label column as wide as the longest label (30 at least, the stylesheet's), so a
        # deployment's or service's "name · key" is never cut
        width = max([30, *(len(f.label) + 1 for f in fields)])
        for f in fields:
            if f.choices is not None:
                options = [(c, c) for c in f.choices]
                widget: Input | Select[str] = Select(options, value=f.value if f.value in f.choices else Select.NULL,
                                                     allow_blank=f.value not in f.choices, id=_field_id(f.key),
                                                     name=f.key, compact=True)
            else:
                widget = Input(value=f.value, id=_field_id(f.key), name=f.key)
            label = Label(f.label)
            label.styles.width = width
            rows.append(Horizontal(label, widget, classes="field"))
        return rows

    def on_mount(self) -> None:
        self._show()
        self._keys = [k for k, _ in self.capsim.session.keys()]

    @on(Input.Changed)
    def edited(self, event: Input.Changed) -> None:
        self._edit(event.input.name or "", event.value)

    @on(Select.Changed)
    def picked(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL:
            self._edit(event.select.name or "", str(event.value))

    def _edit(self, key: str, value: str) -> None:
        s = self.capsim.session
        if s.edits.get(key) == value or (key not in s.edits and value == next(
                (f.value for f in s.fields() if f.key == key), None)):
            return                       # a widget reporting the value it was given
        s.set(key, value)
        keys = [k for k, _ in s.keys()]
        if keys != self._keys:           # another variant: its own keys (a diurnal arrival's mean_rps, ...)
            self._keys = keys
            self.call_after_refresh(self._rebuild, key)
        self._show()

    async def _rebuild(self, focus: str) -> None:
        box = self.query_one("#fields", VerticalScroll)
        await box.remove_children()
        await box.mount_all(self._rows(self.capsim.session.fields()))
        for w in box.query(f"#{_field_id(focus)}"):
            w.focus()

    def _show(self) -> None:
        state, text = self.capsim.session.status()
        box = self.query_one("#error", Static)
        box.update(text)
        box.set_class(state == "ok", "ok")
        box.set_class(state == "warning", "warning")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "run" and self.capsim.running:
            return None                  # shown disabled while a run is in progress
        return True

    def action_run(self) -> None:
        if self.capsim.running:          # a key repeat or a second press: never a duplicate run
            self.app.notify("a run is in progress", severity="warning")
            return
        err = self.capsim.session.error()
        if err:
            self.app.notify("fix the scenario first", severity="error")
            self._show()
            return
        self.query_one("#progress").add_class("running")
        self.query_one("#status", Static).update("simulating… (the UI stays responsive; ctrl+r waits for it)")
        self.capsim.start_run()

    def run_finished(self, ok: bool, message: str) -> None:
        self.query_one("#progress").remove_class("running")
        self.query_one("#status", Static).update(message)
        self.refresh_bindings()

    def action_compare(self) -> None:
        self.capsim.show_compare()

    def action_results(self) -> None:
        if self.capsim.results:
            self.app.push_screen(ResultScreen(self.capsim.results[-1]))

    def action_export(self, fmt: str) -> None:
        self.capsim.export(fmt, None)


class ExportScreen(ModalScreen[str | None]):
    """Asks where to write an export: a path, prefilled; enter writes, escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, what: str, default: Path) -> None:
        super().__init__()
        self.what, self.default = what, default

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="export"):
            yield Label(f"write {self.what} to (enter writes, escape cancels):")
            yield Input(value=str(self.default), id="export-path")

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ResultScreen(_CapsimScreen):
    """Headline numbers, tables and terminal charts of one run; export from here."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,e", "app.pop_screen", "Edit"), Binding("h", "export('html')", "HTML"),
        Binding("j", "export('json')", "JSON"), Binding("y", "export('yaml')", "YAML"),
        Binding("c", "compare", "Compare"), Binding("q", "app.quit", "Quit")]

    def __init__(self, result: TrainingResult | ServingResult | MultiModelResult) -> None:
        super().__init__()
        self.result = result

    def compose(self) -> ComposeResult:
        r = self.result
        where = (f"{len(r.deployments)} deployments on {r.pool.gpus} × {r.pool.hardware}"
                 if isinstance(r, MultiModelResult) else f"{r.model} on {r.hardware}")
        yield Static(f"result · {r.name} · {where}", id="title")
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
        if isinstance(r, MultiModelResult):
            return [(f"{name} arrivals /s", x.scaling_frame().arrival_rps.fillna(0).tolist())
                    for name, x in r.results.items()] + [
                    (f"{name} replicas ready", x.scaling_frame().replicas_ready.tolist()) for name, x in r.results.items()]
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
        elif isinstance(r, MultiModelResult):
            t.add_columns("latency (ms)", "p50", "p90", "p99", "mean")
            for dep, x in r.results.items():
                for name, d in latency_table(x):
                    t.add_row(f"{dep} {name}", *("-" if q is None else f"{q * 1e3:,.1f}"
                                                 for q in (d.p50, d.p90, d.p99, d.mean)))
        else:
            t.add_columns("latency (ms)", "p50", "p90", "p99", "mean")
            for name, d in latency_table(r):
                t.add_row(name, *("-" if q is None else f"{q * 1e3:,.1f}" for q in (d.p50, d.p90, d.p99, d.mean)))

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
        yield Static("", id="legend")
        yield DataTable(id="compare", show_cursor=False)
        yield Footer()

    def on_mount(self) -> None:
        runs = [r for r in self.capsim.results if r.kind == self.capsim.results[-1].kind]
        header, rows = compare(runs)
        legend = [f"#{i + 1}: " + (", ".join(d) or ("the base run" if i == 0 else "as #1"))
                  for i, d in enumerate(run_differences(runs))]
        self.query_one("#legend", Static).update("\n".join(legend))
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
        self.results: list[TrainingResult | ServingResult | MultiModelResult] = []
        self.out_dir = out_dir or Path.cwd()
        self.running = False             # a run is in progress: ctrl+r is disabled until it ends

    def on_mount(self) -> None:
        self.push_screen(EditorScreen())

    def start_run(self) -> None:
        if self.running:
            return
        self.running = True
        if ed := self._editor():
            ed.refresh_bindings()
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
        self.running = False
        if ed := self._editor():
            ed.run_finished(False, "run failed")
        self.notify(message, severity="error", timeout=10)

    def _done(self, result: TrainingResult | ServingResult | MultiModelResult) -> None:
        self.running = False
        self.results.append(result)
        if ed := self._editor():
            ed.run_finished(True, f"run #{len(self.results)} done · ctrl+l shows it · ctrl+t compares")
        self.push_screen(ResultScreen(result))

    def show_compare(self) -> None:
        if len(self.results) < 1:
            self.notify("run a scenario first (ctrl+r)", severity="warning")
            return
        self.push_screen(CompareScreen())

    def export(self, fmt: str, result: TrainingResult | ServingResult | MultiModelResult | None) -> None:
        """Ask for a path (prefilled: the output folder, the scenario's name and the run number), then write."""
        if fmt != "yaml" and result is None:
            self.notify("run first to export results", severity="warning")
            return
        # the scenario's name is the user's text ('../../x'): the file name made from it stays in out_dir
        name = safe_name(str(self.session.doc.get("name", "scenario")), default="scenario")
        default = self.out_dir / f"{name}-{len(self.results)}.{'yml' if fmt == 'yaml' else fmt}"
        what = {"yaml": "the scenario (YAML)", "json": "the result (JSON)", "html": "the report (HTML)"}[fmt]
        self.push_screen(ExportScreen(what, default), lambda path: self._write(fmt, result, path))

    def _write(self, fmt: str, result: TrainingResult | ServingResult | MultiModelResult | None, path_text: str | None) -> None:
        if not path_text:
            self.notify("export cancelled")
            return
        path = Path(path_text).expanduser()
        try:
            if path.is_dir():
                raise CapsimError(f"{path} is a folder; give a file name")
            if fmt == "yaml":
                write_atomic(path, self.session.yaml())
            elif result is not None and fmt == "json":
                write_atomic(path, result.to_json())
            elif result is not None:
                from simulator.report import write_html

                write_html(result, path)
        except (CapsimError, OSError) as e:
            self.notify(str(e), severity="error")
            return
        self.notify(f"wrote {path}")


def run_tui(path: str | None = None) -> None:
    CapsimApp(Session.load(path)).run()
