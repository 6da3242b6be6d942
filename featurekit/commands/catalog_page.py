"""The catalog as one HTML page: `catalog.html` (the skeleton) and `catalog.css` (inlined),
filled from a `Catalog` value. Everything shown is escaped; the page holds no script."""
from __future__ import annotations

import html
import json
from importlib import resources
from string import Template
from typing import Any

SPLIT_COLOURS = ["#3b82f6", "#12b76a", "#f79009", "#7a5af8", "#ee46bc", "#06aed4"]
LEGEND = [("column", "#eef1f5", "#98a2b3"), ("feature", "#e3f0ff", "#3b82f6"), ("slice", "#fff3d6", "#d99a00"),
          ("recipe", "#e6f6ea", "#2f9e55")]


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def render_page(cat) -> str:
    from .._version import __version__
    files = resources.files("featurekit.commands")
    skeleton = Template(files.joinpath("catalog.html").read_text(encoding="utf-8"))
    body = "\n".join([_summary(cat), _graph(cat), _features(cat), _columns(cat), _slices(cat), _recipes(cat),
                      _applies(cat)])
    return skeleton.substitute(title=e(f"{cat.name}: featurekit catalog"), version=e(__version__),
                               style=files.joinpath("catalog.css").read_text(encoding="utf-8"),
                               header=_header(cat), body=body, generated=e(cat.generated))


def _header(cat) -> str:
    where = (f"version {cat.version} · {cat.rows:,} rows" if cat.exists
             else "the table does not exist yet: run <code>featurekit apply</code>")
    return (f'<h1><span class="kind">featurekit catalog</span>{e(cat.name)}</h1>'
            f'<div class="meta"><code>{e(cat.table)}</code> · {where} · written {e(cat.generated)}</div>')


def _summary(cat) -> str:
    fresh = sum(f.state == "fresh" for f in cat.features)
    results = cat.checks.get("results", [])
    failed = sum(r["outcome"] == "fail" for r in results)
    passed = sum(r["outcome"] == "pass" for r in results)
    stats = [(f"{cat.rows:,}", "rows"), (f"{fresh}/{len(cat.features)}", "features fresh"),
             (str(len(cat.slices)), "slices"),
             (f"{passed} ✓ {failed} ✗" if results else "—", "checks (last apply)"),
             (cat.applies[0]["at"][:16].replace("T", " ") if cat.applies else "—", "last apply")]
    cards = "".join(f'<div class="stat"><div class="n{" small" if len(n) > 10 else ""}">{e(n)}</div>'
                    f'<div class="l">{e(label)}</div></div>' for n, label in stats)
    return f'<div class="summary">{cards}</div>'


def _graph(cat) -> str:
    legend = "".join(f'<span><i style="background:{fill};border-color:{line}"></i>{kind}</span>'
                     for kind, fill, line in LEGEND)
    return (f'<section id="graph"><h2>Dependency graph</h2><div class="card graph">'
            f'<div class="legend">{legend}<span>· click a node for its card</span></div>{cat.graph_svg}</div></section>')


# -- features ------------------------------------------------------------------------------

def _features(cat) -> str:
    cards = "\n".join(_feature(f) for f in cat.features) or '<p class="muted">No features.</p>'
    return (f'<section id="features"><h2>Features<span class="count">{len(cat.features)}</span></h2>'
            f'<div class="grid">{cards}</div></section>')


def _feature(f) -> str:
    desc = (f'<p class="desc">{e(f.description)}</p>' if f.description
            else '<p class="desc none">No description (add <code>description:</code> to the feature).</p>')
    inputs = ", ".join(f"<code>{e(k)}</code> ← <code>{e(v)}</code>" for k, v in f.inputs.items()) or "—"
    params = (f'<pre class="params">{e(json.dumps(f.params, indent=1, sort_keys=True, default=str))}</pre>'
              if f.params else '<span class="muted">defaults</span>')
    fill = _fill(f)
    only = f' · only slice <a href="#slice-{e(f.only)}"><code>{e(f.only)}</code></a>' if f.only else ""
    facts = [("extractor", f"<code>{e(f.extractor)}</code> <span class='muted'>version {e(f.version)}</span>"),
             ("inputs", inputs), ("params", params),
             ("fingerprint", f'<code title="{e(f.fingerprint)}">{e(f.fingerprint[:16])}</code>'),
             ("filled", fill + only)]
    reasons = "".join(f'<div class="muted">{e(r)}</div>' for r in f.reasons)
    errors = "".join(f'<div class="errors">row {e(k)}: {e(msg)}</div>' for k, msg in f.errors)
    return _card("feature", f.name, [("tier", f"tier {f.tier}"), (f.state, f.state)], desc, facts,
                 f"{reasons}{errors}{_column_table(f.columns)}{_checks(f.checks)}")


def _card(kind: str, name: str, badges: list[tuple[str, str]], top: str, facts: list[tuple[str, str]],
          bottom: str) -> str:
    """A feature's or slice's card: its name and badges, then `top`, the facts, `bottom`."""
    shown = "".join(f'<span class="badge {e(cls)}">{e(text)}</span>' for cls, text in badges)
    return (f'<article class="card {kind}" id="{kind}-{e(name)}"><header><h3>{e(name)}</h3>{shown}</header>{top}'
            f'<dl class="facts">{"".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)}</dl>{bottom}</article>')


def _fill(f) -> str:
    if not f.scope_rows:
        return '<span class="muted">no rows yet</span>'
    share = f.fill or 0.0
    failed = f", {f.failed:,} failed" if f.failed else ""
    pending = f", {f.pending:,} pending" if f.pending else ""
    return (f'<span class="bar"><span style="width:{share * 100:.1f}%"></span></span>'
            f"{f.computed:,} of {f.scope_rows:,} rows ({share:.0%}){failed}{pending}")


def _column_table(columns) -> str:
    rows = "".join(f"<tr><td><code>{e(c.name)}</code></td><td><code>{e(c.type)}</code></td>"
                   f'<td class="num">{_nulls(c)}</td><td class="stats">{_stats(c.stats)}</td></tr>' for c in columns)
    return f"<table><tr><th>column</th><th>type</th><th>null</th><th>stats</th></tr>{rows}</table>"


def _nulls(c) -> str:
    if c.null_rate is None:
        return '<span class="muted">—</span>'
    return (f'<span class="bar nulls" style="width:48px"><span style="width:{c.null_rate * 100:.1f}%"></span>'
            f"</span>{c.null_rate:.1%}")


def _stats(stats: dict) -> str:
    parts = []
    for key, value in stats.items():
        if key == "top":
            shown = ", ".join(f"{e(_short(v))} <span class='muted'>×{n:,}</span>" for v, n in value)
            parts.append(f"<b>top</b> {shown}")
        elif key == "sampled":
            parts.append(f"<span class='muted'>(first {value:,} rows)</span>")
        else:
            parts.append(f"<b>{e(key)}</b> {e(f'{value:,}' if isinstance(value, (int, float)) else value)}")
    return " · ".join(parts) or '<span class="muted">—</span>'


def _short(value: Any, limit: int = 28) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _checks(checks) -> str:
    if not checks:
        return ""
    items = []
    for c in checks:
        outcome = c["outcome"] or "notrun"
        label = {"notrun": "not run"}.get(outcome, outcome)
        keys = f" · keys {e(', '.join(map(str, c['keys'])))}" if c["keys"] else ""
        severity = "" if c["severity"] == "error" else " <span class='muted'>(warn)</span>"
        items.append(f'<li class="check"><span class="badge {e(outcome)}">{e(label)}</span>'
                     f"<code>{e(c['spec'])}</code>{severity}<span class='detail'>{e(c['detail'])}{keys}</span></li>")
    return f'<ul class="checks">{"".join(items)}</ul>'


# -- columns, slices, recipes, applies ----------------------------------------------------------

def _columns(cat) -> str:
    if not cat.columns:
        body = '<p class="muted">No source columns known.</p>'
    else:
        body = f'<div class="card">{_column_table(cat.columns)}</div>'
    return f'<section id="columns"><h2>Source columns<span class="count">{len(cat.columns)}</span></h2>{body}</section>'


def _slices(cat) -> str:
    cards = "\n".join(_slice(s) for s in cat.slices) or '<p class="muted">No slices.</p>'
    return (f'<section id="slices"><h2>Slices<span class="count">{len(cat.slices)}</span></h2>'
            f'<div class="grid">{cards}</div></section>')


def _slice(s) -> str:
    total = sum(s.splits.values())
    bar = "".join(f'<span style="width:{n / total * 100:.2f}%;background:{SPLIT_COLOURS[i % len(SPLIT_COLOURS)]}" '
                  f'title="{e(split)}: {n:,}">{e(split)} {n:,}</span>'
                  for i, (split, n) in enumerate(s.splits.items()) if n) if total else ""
    splits = ", ".join(f"<code>{e(k)}</code> {v:,}" for k, v in s.splits.items()) or "—"
    removed = ", ".join(f"{e(k)} {v:,}" for k, v in s.removed.items()) or "none"
    definition = "\n".join(f"{k}: {json.dumps(v, default=str)}" for k, v in s.definition.items())
    facts = [("rows", f"{total:,} in the slice"), ("splits", splits), ("removed", removed),
             ("leaks", f"{s.leaks} group(s) across splits" if s.leaks else "none"),
             ("definition", f'<pre class="params">{e(definition)}</pre>')]
    gallery = (f'<a class="button gallery" href="{e(s.gallery)}">Open the gallery →</a>' if s.gallery
               else '<div class="muted">gallery: after the first apply</div>')
    return _card("slice", s.name, [(s.state, s.state)], f'<div class="splitbar">{bar}</div>', facts,
                 _checks(s.checks) + gallery)


def _recipes(cat) -> str:
    if not cat.recipes:
        return '<section id="recipes"><h2>Recipes</h2><p class="muted">No recipes.</p></section>'
    rows = "".join(f'<tr id="recipe-{e(r["name"])}"><td><code>{e(r["name"])}</code></td>'
                   f'<td><code>{e(r["trainer"])}</code></td>'
                   f'<td><a href="#slice-{e(r["slice"])}"><code>{e(r["slice"])}</code></a> / {e(r["split"])}</td>'
                   f'<td>{", ".join(f"<code>{e(k)}</code> ← {e(v)}" for k, v in r["columns"].items())}</td></tr>'
                   for r in cat.recipes)
    return (f'<section id="recipes"><h2>Recipes<span class="count">{len(cat.recipes)}</span></h2><div class="card">'
            f"<table><tr><th>recipe</th><th>trainer</th><th>slice / split</th><th>columns</th></tr>{rows}</table>"
            "</div></section>")


def _applies(cat) -> str:
    if not cat.applies:
        return '<section id="applies"><h2>Recent applies</h2><p class="muted">No applies recorded yet.</p></section>'
    rows = []
    for a in cat.applies:
        checks = a["checks"]
        shown = (f'<span class="badge {"fail" if checks["fail"] else "pass"}">{checks["pass"]} passed'
                 f'{", " + str(checks["fail"]) + " failed" if checks["fail"] else ""}</span>') if checks else ""
        stopped = f' <span class="badge warn">stopped: {e(a["interrupted"])}</span>' if a["interrupted"] else ""
        rows.append(f'<tr><td class="num">{e(a["versions"])}</td><td class="nowrap">{e(str(a["at"])[:19].replace("T", " "))}</td>'
                    f'<td>{e(a["user"] or "?")}</td><td>{e("; ".join(a["did"]) or "metadata only")}{stopped}</td>'
                    f'<td class="nowrap">{shown}</td></tr>')
    return (f'<section id="applies"><h2>Recent applies<span class="count">{len(cat.applies)}</span></h2>'
            f'<div class="card"><table><tr><th>versions</th><th>at</th><th>user</th><th>what it did</th>'
            f'<th>checks</th></tr>{"".join(rows)}</table></div></section>')
