"""A self-contained HTML page: headline cards, plotly figures and the scenario, in one file.

plotly.js is embedded inline (no CDN), and a Content-Security-Policy forbids every network fetch,
so the file opens offline and provably makes no request: a blocked request would show up in the
page's error list (``#capsim-errors``), which the tests read from a headless Chromium. After the
charts are drawn, the page sets ``data-charts`` on ``<body>`` and, on every chart, the number
of points it plotted.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

# The page's scripts are allowed by their SHA-256 hashes (csp()), never by 'unsafe-inline': a script an
# attacker smuggles into a name or a value cannot run even if it escaped the HTML escaping. plotly.js
# styles its charts from script, hence style-src 'unsafe-inline' (styles cannot run code).
CSP = ("default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:; connect-src 'none'")

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2430}
header{background:#1d2430;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px;font-weight:600} header p{margin:4px 0 0;color:#b8c1cf;font-size:13px}
main{max-width:1280px;margin:0 auto;padding:18px 24px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px;margin-bottom:16px}
.card{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card .v{font-size:22px;font-weight:600;margin-top:2px} .card .k{font-size:12px;color:#5b6575;text-transform:uppercase}
.card .s{font-size:12px;color:#5b6575;margin-top:2px} .bad .v{color:#c0392b} .good .v{color:#1e8449}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:14px}
.panel{background:#fff;border-radius:8px;padding:8px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.chart{height:360px} h2{font-size:16px;margin:22px 0 8px}
table{border-collapse:collapse;font-size:13px;background:#fff}
td,th{padding:4px 8px;border-bottom:1px solid #e4e7eb;text-align:right}
th{cursor:pointer;background:#eef0f3;position:sticky;top:0} td:first-child,th:first-child{text-align:left}
pre{background:#fff;padding:12px;border-radius:8px;overflow:auto;font-size:12px}
.note{color:#5b6575;font-size:13px} .warn{color:#a15c00} #capsim-errors:empty{display:none}
"""

BOOT = """
window.capsimErrors=[];
function capsimErr(m){window.capsimErrors.push(String(m));var e=document.getElementById('capsim-errors');
 if(e){e.textContent=window.capsimErrors.join('\\n');}}
window.addEventListener('error',function(ev){capsimErr('error: '+ev.message);});
document.addEventListener('securitypolicyviolation',function(ev){capsimErr('blocked request: '+ev.blockedURI);});
"""

DRAW = """
(function(){
 var figs=JSON.parse(document.getElementById('capsim-figures').textContent), n=0;
 figs.forEach(function(f){var el=document.getElementById(f.id);
  try{Plotly.newPlot(el,f.fig.data,f.fig.layout,{responsive:true,displaylogo:false});
   var pts=0;(el.calcdata||[]).forEach(function(cd){pts+=(cd&&cd.length)||0;});
   el.setAttribute('data-points',pts);n++;}catch(e){capsimErr('chart '+f.id+': '+e);}});
 document.body.setAttribute('data-charts',n);
 document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',function(){
  var tb=th.closest('table').tBodies[0],rows=Array.from(tb.rows),asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
  rows.sort(function(a,b){var x=a.cells[i].dataset.v||a.cells[i].textContent,y=b.cells[i].dataset.v||b.cells[i].textContent;
   var fx=parseFloat(x),fy=parseFloat(y);var c=(isNaN(fx)||isNaN(fy))?x.localeCompare(y):fx-fy;return asc?c:-c;});
  rows.forEach(function(r){tb.appendChild(r);});});});
})();
"""


@dataclass
class Card:
    key: str
    value: str
    sub: str = ""
    tone: str = ""   # "", "good" or "bad"


@dataclass
class Section:
    title: str
    figures: list[tuple[str, go.Figure]]
    note: str = ""


def card_html(c: Card) -> str:
    sub = f'<div class="s">{html.escape(c.sub)}</div>' if c.sub else ""
    return (f'<div class="card {c.tone}"><div class="k">{html.escape(c.key)}</div>'
            f'<div class="v">{html.escape(c.value)}</div>{sub}</div>')


def table_html(columns: list[str], rows: list[list[Any]], *, highlight: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        style = ' style="background:#fff5d6;font-weight:600"' if i == highlight else ""
        cells = "".join(f'<td data-v="{html.escape(str(v))}">{html.escape(_fmt(v))}</td>' for v in row)
        body.append(f"<tr{style}>{cells}</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def script_json(obj: Any) -> str:
    """JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` (which could close the element or
    open a comment, ``<!--<script>``, that swallows the rest of the page) and U+2028/U+2029 (line ends
    to JavaScript) are written as ``\\u`` escapes with four hex digits, which JSON reads back as the
    same characters."""
    text = json.dumps(obj)
    for ch in "<>&\u2028\u2029":
        text = text.replace(ch, f"\\u{ord(ch):04x}")
    return text


def _sha256(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"


@functools.cache
def _plotly() -> tuple[str, str]:
    js = get_plotlyjs()
    return js, _sha256(js)


def csp(*scripts: str) -> str:
    """The Content-Security-Policy allowing exactly ``scripts`` (the page's inline scripts) to run."""
    return CSP.format(hashes=" ".join(_plotly()[1] if s is _plotly()[0] else _sha256(s) for s in scripts))


def render(*, title: str, subtitle: str, cards: list[Card], sections: list[Section], scenario_yaml: str,
           extra_html: str = "", warnings: list[str] | None = None) -> str:
    """The whole page as one string."""
    from ..version import __version__

    figs, blocks = [], []
    for s in sections:
        panels = []
        for fid, fig in s.figures:
            fig.update_layout(margin={"l": 60, "r": 20, "t": 48, "b": 48}, template="plotly_white")
            figs.append({"id": fid, "fig": json.loads(fig.to_json())})
            panels.append(f'<div class="panel"><div class="chart" id="{fid}"></div></div>')
        note = f'<p class="note">{html.escape(s.note)}</p>' if s.note else ""
        blocks.append(f"<h2>{html.escape(s.title)}</h2>{note}<div class=\"grid\">{''.join(panels)}</div>")
    warn = "".join(f'<p class="warn">⚠ {html.escape(w)}</p>' for w in warnings or [])
    meta = {"capsim_version": __version__, "generated_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    figures_json = script_json(figs)
    plotly_js = _plotly()[0]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp(BOOT, plotly_js, DRAW)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{STYLE}</style><script>{BOOT}</script></head>
<body><header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header><main>
<div class="cards">{''.join(card_html(c) for c in cards)}</div>{warn}
{''.join(blocks)}
{extra_html}
<h2>Scenario</h2><p class="note">Reproduce with <code>capsim</code> {html.escape(__version__)}: save this as a
YAML file and run it. Generated {meta['generated_utc']}.</p>
<pre id="capsim-scenario">{html.escape(scenario_yaml)}</pre>
<pre id="capsim-errors" class="warn"></pre>
</main>
<script type="application/json" id="capsim-meta">{script_json(meta)}</script>
<script type="application/json" id="capsim-figures">{figures_json}</script>
<script>{plotly_js}</script>
<script>{DRAW}</script>
</body></html>
"""
