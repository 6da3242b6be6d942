"""The dependency graph drawn as SVG, by us: no Graphviz, no script, nothing fetched.

A layered drawing (Sugiyama's shape, kept small): raw columns on the left, each node one
layer right of its deepest input, nodes in a layer ordered by the mean position of their
inputs (a few sweeps both ways, which removes most crossings), edges as curves from an
input's right side to the node's left side. Every node is a link to `#<kind>-<name>`, so
the catalog page jumps to its card.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

COLUMN = "column"
CHAR_PX = 7.2        # width of a character at the 12px font used below (a close upper bound)
NODE_H = 30
GAP_X = 64           # between layers
GAP_Y = 14           # between nodes of a layer
PAD = 12
SWEEPS = 4
WAY_H = 8           # the gap an edge crossing a layer takes in it
FILL = {COLUMN: "#eef1f5", "feature": "#e3f0ff", "slice": "#fff3d6", "recipe": "#e6f6ea"}
STROKE = {COLUMN: "#98a2b3", "feature": "#3b82f6", "slice": "#d99a00", "recipe": "#2f9e55"}


@dataclass(frozen=True)
class Box:
    key: str
    label: str
    kind: str
    x: float
    y: float
    w: float

    @property
    def mid_y(self) -> float:
        return self.y + NODE_H / 2


def edges_of(graph) -> list[tuple[str, str]]:
    """(from, to) pairs: a dependency or a raw column to the node that reads it."""
    out = [(dep, key) for key in graph.nodes for dep in sorted(graph.deps.get(key, ())) if dep in graph.nodes]
    out += [(f"{COLUMN}:{col}", key) for key in graph.nodes for col in graph.inputs.get(key, ())]
    return out


def layout(graph) -> tuple[dict[str, Box], list[tuple[str, str, list[tuple[float, float]]]], float, float]:
    """Boxes per node key (columns as ``column:<name>``), each edge's route (points from the
    input's right side to the node's left side, through a gap reserved in every layer it
    crosses, so no edge runs under a node), and the drawing's size."""
    edges = edges_of(graph)
    keys = list(dict.fromkeys([a for a, _ in edges if a.startswith(f"{COLUMN}:")] + graph.order()))
    ins: dict[str, list[str]] = {k: [] for k in keys}
    for a, b in edges:
        ins[b].append(a)
    layer: dict[str, int] = {}
    for key in keys:  # columns first, then the graph's topological order
        layer[key] = 1 + max((layer[a] for a in ins[key]), default=-1)
    chains: dict[tuple[str, str], list[str]] = {}
    for a, b in edges:  # an edge across several layers gets a waypoint in each layer between
        chain = [f"~{len(layer)}.{n}" for n in range(layer[b] - layer[a] - 1)]
        for n, way in enumerate(chain):
            layer[way] = layer[a] + 1 + n
        chains[(a, b)] = chain
    links: dict[str, list[str]] = {k: [] for k in layer}
    for (a, b), chain in chains.items():
        path = [a, *chain, b]
        for u, v in zip(path, path[1:]):
            links[v].append(u)
    layers: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for key in layer:
        layers[layer[key]].append(key)
    _order(layers, links)
    labels = {k: _label(graph, k) for k in keys}
    widths = [max((len(labels[k]) * CHAR_PX + 24 for k in column if k in labels), default=0) for column in layers]
    heights = [sum(_height(k) + GAP_Y for k in column) - GAP_Y for column in layers]
    height = max(heights, default=0)
    boxes: dict[str, Box] = {}
    x = PAD
    for column, width, used in zip(layers, widths, heights):
        y = PAD + (height - used) / 2
        for key in column:
            if key in labels:
                boxes[key] = Box(key, labels[key], key.split(":", 1)[0], x, y, len(labels[key]) * CHAR_PX + 24)
            else:
                boxes[key] = Box(key, "", "", x, y - (NODE_H - WAY_H) / 2, width)  # mid_y: the gap's middle
            y += _height(key) + GAP_Y
        x += width + GAP_X
    routes = []
    for (a, b), chain in chains.items():
        s, t = boxes[a], boxes[b]
        points = [(s.x + s.w, s.mid_y)]
        for way in chain:
            w = boxes[way]
            points += [(w.x, w.mid_y), (w.x + w.w, w.mid_y)]
        routes.append((a, b, [*points, (t.x - 2, t.mid_y)]))
    return boxes, routes, x - GAP_X + PAD, height + 2 * PAD


def _height(key: str) -> float:
    return WAY_H if key.startswith("~") else NODE_H


def _order(layers: list[list[str]], ins: dict[str, list[str]]) -> None:
    """Barycenter sweeps: each node goes where its neighbours in the layer before (after) are."""
    outs: dict[str, list[str]] = {k: [] for k in ins}
    for b, sources in ins.items():
        for a in sources:
            outs[a].append(b)
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        indices = range(1, len(layers)) if down else range(len(layers) - 2, -1, -1)
        for i in indices:
            near = layers[i - 1] if down else layers[i + 1]
            pos = {k: n for n, k in enumerate(near)}
            current = {k: n for n, k in enumerate(layers[i])}
            layers[i].sort(key=lambda k: (_centre(k, ins if down else outs, pos, current), current[k]))


def _centre(key: str, links: dict[str, list[str]], pos: dict[str, int], current: dict[str, int]) -> float:
    """The mean position of a node's neighbours in the next layer (its own when it has none)."""
    linked = [pos[k] for k in links[key] if k in pos]
    return sum(linked) / len(linked) if linked else current[key]


def _label(graph, key: str) -> str:
    kind, name = key.split(":", 1)
    if kind == COLUMN:
        return name
    node = graph.nodes[key]
    return f"{name} · t{node.tier}" if kind == "feature" and node.tier else name


def render_svg(graph) -> str:
    """The graph as one standalone ``<svg>`` element (its width and height in pixels)."""
    boxes, routes, width, height = layout(graph)
    if not boxes:
        return ('<svg xmlns="http://www.w3.org/2000/svg" class="fk-graph" width="320" height="40" role="img">'
                '<text x="12" y="24" font-size="13" fill="#667085">(no features, slices or recipes)</text></svg>')
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="fk-graph" width="{width:.0f}" height="{height:.0f}" '
             f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="dependency graph">',
             '<defs><marker id="fk-arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L8,4 L0,8 z" fill="#98a2b3"/></marker></defs>']
    for a, b, points in routes:
        parts.append(f'<path class="edge" data-from="{html.escape(a)}" data-to="{html.escape(b)}" d="{_curve(points)}" '
                     'fill="none" stroke="#b8c0cc" stroke-width="1.4" marker-end="url(#fk-arrow)"/>')
    for box in boxes.values():
        if not box.label:
            continue  # an edge's waypoint
        kind, name = box.key.split(":", 1)
        anchor = f"{kind}-{name}"
        shape = (f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{NODE_H}" '
                 f'rx="{NODE_H / 2 if kind == COLUMN else 6}" fill="{FILL[kind]}" stroke="{STROKE[kind]}" '
                 f'stroke-width="{1 if kind == COLUMN else 1.5}"/>')
        text = (f'<text x="{box.x + box.w / 2:.1f}" y="{box.mid_y + 4:.1f}" text-anchor="middle" font-size="12" '
                f'font-family="ui-monospace, SFMono-Regular, Menlo, monospace" fill="#1d2939">'
                f'{html.escape(box.label)}</text>')
        title = f"<title>{html.escape(kind)} {html.escape(name)}</title>"
        parts.append(f'<a href="#{html.escape(anchor)}"><g class="node {kind}" data-key="{html.escape(box.key)}">'
                     f'{title}{shape}{text}</g></a>')
    parts.append("</svg>")
    return "\n".join(parts)


def _curve(points: list[tuple[float, float]]) -> str:
    """Through `points` in pairs: a curve between layers (level at both ends), a straight run
    across a layer's gap."""
    (x0, y0), rest = points[0], points[1:]
    d = [f"M{x0:.1f},{y0:.1f}"]
    for n, (x, y) in enumerate(rest):
        if n % 2:  # across a layer
            d.append(f"L{x:.1f},{y:.1f}")
        else:
            bend = max(16.0, (x - x0) / 2)
            d.append(f"C{x0 + bend:.1f},{y0:.1f} {x - bend:.1f},{y:.1f} {x:.1f},{y:.1f}")
        x0, y0 = x, y
    return " ".join(d)
