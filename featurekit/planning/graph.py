"""The dependency graph between features, slices and recipes, as a value.

Nodes are ``feature:x``, ``slice:x``, ``recipe:x``; an edge points from a node to what
it depends on. Columns that come from the table or the source are leaves, not nodes.
"""
from __future__ import annotations

import graphlib
from dataclasses import dataclass, field

from ..errors import UsageError


@dataclass(frozen=True)
class Node:
    kind: str  # feature | slice | recipe
    name: str
    tier: int | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Graph:
    nodes: dict[str, Node]
    deps: dict[str, tuple[str, ...]]  # node key -> keys it depends on
    inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # node key -> raw columns

    def find_cycle(self) -> list[str] | None:
        try:
            graphlib.TopologicalSorter(self.deps).prepare()
        except graphlib.CycleError as exc:
            cycle = list(exc.args[1])
            return list(reversed(cycle))  # a -> b means a depends on b
        return None

    def order(self) -> list[str]:
        """Node keys, dependencies first; ties go to the cheaper tier, then by name."""
        ts = graphlib.TopologicalSorter({k: self.deps.get(k, ()) for k in self.nodes})
        ts.prepare()
        out: list[str] = []
        while ts.is_active():
            ready = sorted(ts.get_ready(), key=lambda k: (self.nodes[k].tier or 0, k))  # cheap tiers first
            out.extend(ready)
            ts.done(*ready)
        return out

    def ancestors(self, key: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.deps.get(key, ()))
        while stack:
            k = stack.pop()
            if k not in seen:
                seen.add(k)
                stack.extend(self.deps.get(k, ()))
        return seen

    def descendants(self, key: str) -> set[str]:
        rdeps: dict[str, set[str]] = {}
        for k, ds in self.deps.items():
            for d in ds:
                rdeps.setdefault(d, set()).add(k)
        seen: set[str] = set()
        stack = list(rdeps.get(key, ()))
        while stack:
            k = stack.pop()
            if k not in seen:
                seen.add(k)
                stack.extend(rdeps.get(k, ()))
        return seen

    def _lookup(self, name: str) -> str:
        if name in self.nodes:
            return name
        matches = [k for k, n in self.nodes.items() if n.name == name]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            known = ", ".join(sorted(n.name for n in self.nodes.values())) or "(none)"
            raise UsageError(f"--select: unknown name {name!r}; known: {known}")
        raise UsageError(f"--select: {name!r} is ambiguous; write one of {', '.join(sorted(matches))}")

    def select(self, expressions: list[str]) -> set[str]:
        """dbt-style selection: ``name``, ``+name`` (with ancestors), ``name+`` (with descendants).
        Several expressions, comma- or space-separated, are a union."""
        chosen: set[str] = set()
        for expr in (e for raw in expressions for e in raw.replace(",", " ").split()):
            up, down = expr.startswith("+"), expr.endswith("+")
            key = self._lookup(expr.strip("+"))
            chosen.add(key)
            if up:
                chosen |= self.ancestors(key)
            if down:
                chosen |= self.descendants(key)
        return chosen

    # -- rendering ---------------------------------------------------------------------
    def render(self, fmt: str = "text") -> str:
        if fmt == "text" and not self.nodes:
            return "(no features, slices or recipes)"
        return {"text": self._text, "mermaid": self._mermaid, "dot": self._dot, "svg": self._svg}[fmt]()

    def _svg(self) -> str:
        from .graphsvg import render_svg
        return render_svg(self)

    def _label(self, key: str) -> str:
        node = self.nodes[key]
        return f"{node.kind} {node.name}" + (f" (tier {node.tier})" if node.tier else "")

    def _text(self) -> str:
        lines = []
        for key in self.order():
            lines.append(self._label(key))
            for dep in sorted(self.deps.get(key, ())):
                lines.append(f"  <- {self._label(dep)}")
            for col in self.inputs.get(key, ()):
                lines.append(f"  <- column {col}")
        return "\n".join(lines)

    @staticmethod
    def _ident(key: str) -> str:
        return key.replace(":", "__").replace(".", "_")

    def _mermaid(self) -> str:
        lines = ["graph LR"]
        cols = sorted({c for cs in self.inputs.values() for c in cs})
        for col in cols:
            lines.append(f'  col__{col}[("{col}")]')
        for key in self.order():
            lines.append(f'  {self._ident(key)}["{self._label(key)}"]')
        for key in self.order():
            for dep in sorted(self.deps.get(key, ())):
                lines.append(f"  {self._ident(dep)} --> {self._ident(key)}")
            for col in self.inputs.get(key, ()):
                lines.append(f"  col__{col} --> {self._ident(key)}")
        return "\n".join(lines)

    def _dot(self) -> str:
        lines = ["digraph featurekit {", "  rankdir=LR;"]
        for col in sorted({c for cs in self.inputs.values() for c in cs}):
            lines.append(f'  "column:{col}" [shape=cylinder, label="{col}"];')
        shapes = {"feature": "box", "slice": "diamond", "recipe": "ellipse"}
        for key in self.order():
            lines.append(f'  "{key}" [shape={shapes[self.nodes[key].kind]}, label="{self._label(key)}"];')
        for key in self.order():
            for dep in sorted(self.deps.get(key, ())):
                lines.append(f'  "{dep}" -> "{key}";')
            for col in self.inputs.get(key, ()):
                lines.append(f'  "column:{col}" -> "{key}";')
        lines.append("}")
        return "\n".join(lines)
