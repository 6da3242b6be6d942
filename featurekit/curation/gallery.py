"""One static HTML page to look at a slice: sample rows per split and the largest duplicate
groups side by side, images inline (data URIs), so a person sees what dedupe removes.
No server, no script, nothing fetched: the file can be mailed or attached to a PR."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import pyarrow as pa

from ..table.metadata import sql_quote

SAMPLES = 8
GROUPS = 12
GROUP_ROWS = 8
MAGIC = [(b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif"), (b"RIFF", "image/webp"),
         (b"BM", "image/bmp")]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
.row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; margin: 8px 0 18px; }
figure { margin: 0; width: 168px; font-size: 12px; }
figure img { width: 160px; height: 160px; object-fit: contain; background: #f3f3f3; border: 2px solid #ddd; }
figure.keeper img { border-color: #2a7; } figure.removed img { border-color: #d55; opacity: .85; }
figcaption { overflow-wrap: anywhere; } .meta { color: #666; }
"""


def write_gallery(project, report, path: str | Path) -> Path:
    from ..table.handle import open_dataset
    sl = project.slices[report.slice]
    ds = open_dataset(report.uri, report.table_version)
    image = _image_column(project, sl, ds.schema)
    key = report.key
    shown = [c for c in [key, image, *_text_columns(sl, ds.schema)] if c]
    parts = [f"<h1>slice {html.escape(report.slice)}</h1>",
             f"<p class=meta>table version {report.table_version}; "
             + ", ".join(f"{html.escape(s)}: {n}" for s, n in report.splits.items())
             + ("; removed " + ", ".join(f"{html.escape(k)} {v}" for k, v in report.removed.items())
                if report.removed else "") + f"; leaks across splits: {report.leaks}</p>"]
    if image is None:
        parts.append("<p>No image column in the table: showing text only.</p>")
    for split in report.splits:
        rows = ds.to_table(columns=shown, filter=f"{sl.column} = {sql_quote(split)}", limit=SAMPLES).to_pylist()
        parts.append(f"<h2>{html.escape(split)}: sample rows</h2>")
        parts.append(_row_of(rows, key, image, shown, "member"))
    if report.groups and key:
        near = sl.spec.dedupe.near.column if sl.spec.dedupe and sl.spec.dedupe.near else None
        near = near if near in ds.schema.names else None
        fetched = list(dict.fromkeys([*shown, sl.state_column, *([near] if near else [])]))
        parts.append("<h2>largest duplicate groups (green: kept, red: removed)</h2>")
        for group in report.groups[:GROUPS]:
            keys = [group["keeper"], *group["removed"][:GROUP_ROWS - 1]]
            rows = _rows_by_key(ds, key, keys, fetched)
            kinds = ["keeper"] + ["removed"] * (len(keys) - 1)
            keeper = rows.get(str(group["keeper"]))
            parts.append(f"<p class=meta>{group_label(group)}</p>")
            parts.append("<div class=row>" + "".join(
                _figure(rows.get(str(k)), key, image, shown, kind,
                        how_removed(rows.get(str(k)), keeper, sl.state_column, near) if kind == "removed" else "")
                for k, kind in zip(keys, kinds)) + "</div>")
    page = ("<!doctype html><html><head><meta charset=utf-8><title>featurekit slice "
            f"{html.escape(report.slice)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
    return write_page(Path(path), page)


def write_page(path: Path, page: str, flag: str = "--gallery") -> Path:
    """Write the page whole or not at all: a missing folder or a folder given as the file is a
    usage error (exit 2), a full disk a `DiskFull` (exit 1); no half-written page is left."""
    import os

    from ..errors import DiskFull, RunError, UsageError
    from ..lifetime import disk_full
    if path.is_dir():
        raise UsageError(f"{flag} {path}: that is a folder; give a file name, e.g. {path / 'gallery.html'}")
    if not path.parent.is_dir():
        raise UsageError(f"{flag} {path}: the folder {path.parent} does not exist; create it first "
                         f"(mkdir -p {path.parent}) or write the page elsewhere")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(page.encode("utf-8"))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if disk_full(exc):
            raise DiskFull(f"{flag} {path}: the disk is full ({exc.strerror or exc}); nothing was written; "
                           "free some space or write the page elsewhere") from None
        raise RunError(f"{flag} {path}: cannot write the page: {exc.strerror or exc}") from None
    return path


def group_label(group: dict) -> str:
    """``3 rows: the keeper, 1 exact duplicate, 1 near duplicate``: what a group is made of."""
    parts = [f"{n} {kind} duplicate{'s' if n != 1 else ''}" for kind, n in (("exact", group.get("exact", 0)),
                                                                            ("near", group.get("near", 0))) if n]
    return f"{group['size']} rows: the keeper, " + ", ".join(parts)


def how_removed(row: dict | None, keeper: dict | None, state: str, near: str | None) -> str:
    """``exact duplicate`` or ``near duplicate, 2 bits from the keeper`` for a removed row."""
    if row is None:
        return ""
    if "!near_duplicate:" not in str(row.get(state) or ""):
        return "exact duplicate"
    a, b = (row.get(near), keeper.get(near)) if near and keeper is not None else (None, None)
    if isinstance(a, list) and isinstance(b, list) and all(x is not None for x in a + b):  # vectors
        from .vectordup import cosine_distance64
        return f"near duplicate, cosine distance {cosine_distance64([a], [b])[0]:.3g} from the keeper"
    bits = bits_apart(a, b)
    return "near duplicate" + (f", {bits} bit{'s' if bits != 1 else ''} from the keeper" if bits is not None else "")


def bits_apart(a, b) -> int | None:
    """The Hamming distance between two hashes (integers or bytes); None when one is missing."""
    if a is None or b is None:
        return None
    if isinstance(a, (bytes, bytearray)) and isinstance(b, (bytes, bytearray)):
        return sum(bin(x ^ y).count("1") for x, y in zip(a, b)) + 8 * abs(len(a) - len(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return sum(bits_apart(x, y) or 0 for x, y in zip(a, b))
    return bin((int(a) ^ int(b)) & (2 ** 64 - 1)).count("1")


def _image_column(project, sl, schema: pa.Schema) -> str | None:
    """The image the near-duplicate hash was computed from, else the first binary column."""
    near = sl.spec.dedupe.near.column if sl.spec.dedupe and sl.spec.dedupe.near else None
    for f in project.features.values():
        if near in f.columns:
            for col in f.inputs.values():
                if col in schema.names and _is_binary(schema.field(col).type):
                    return col
    return next((f.name for f in schema if _is_binary(f.type) and not f.name.startswith("_fk_")), None)


def _text_columns(sl, schema: pa.Schema) -> list[str]:
    cols = list(sl.spec.dedupe.by) if sl.spec.dedupe else []
    if sl.spec.split and sl.spec.split.by:
        cols.append(sl.spec.split.by)
    return [c for c in dict.fromkeys(cols) if c in schema.names and not _is_binary(schema.field(c).type)]


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _rows_by_key(ds, key: str, keys: list, shown: list[str]) -> dict:
    typ = ds.schema.field(key).type
    values = pa.array([k if pa.types.is_string(typ) or pa.types.is_large_string(typ) else _parse(k, typ)
                       for k in keys])
    literal = ", ".join(sql_quote(str(v)) if isinstance(v, str) else str(v) for v in values.to_pylist())
    rows = ds.to_table(columns=shown, filter=f"{key} IN ({literal})").to_pylist()
    return {str(r[key]): r for r in rows}


def _parse(text: str, typ: pa.DataType):
    try:
        return pa.scalar(text).cast(typ).as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return text


def _row_of(rows: list[dict], key, image, shown, kind: str) -> str:
    return "<div class=row>" + "".join(_figure(r, key, image, shown, kind) for r in rows) + "</div>"


def _figure(row: dict | None, key, image, shown, kind: str, note: str = "") -> str:
    if row is None:
        return f"<figure class={kind}><figcaption>(row gone)</figcaption></figure>"
    img = ""
    if image and row.get(image):
        blob = row[image]
        mime = next((m for magic, m in MAGIC if blob.startswith(magic)), "application/octet-stream")
        img = f"<img alt='' src='data:{mime};base64,{base64.b64encode(blob).decode()}'>"
    caption = "<br>".join(f"<b>{html.escape(c)}</b> {html.escape(str(row.get(c)))}" for c in shown if c != image)
    if note:
        caption += f"<br><span class=meta>{html.escape(note)}</span>"
    return f"<figure class={kind}>{img}<figcaption>{caption}</figcaption></figure>"
