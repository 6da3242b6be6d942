"""One static HTML page of a search: the query, then the nearest rows' images in order with
their cosine distances, so a person sees what a distance (a dedupe threshold) means. Images
inline (data URIs); no server, no script, nothing fetched."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from .gallery import MAGIC, STYLE, write_page

EXTRA_STYLE = """
figure.query img { border-color: #36c; } .distance { font-weight: 600; }
"""


def write_search_page(result, images: list[bytes | None], query_image: bytes | None, path: Path) -> Path:
    """`result` (a `SearchResult`), `images` its hits' image bytes in the same order, and the
    query row's image for a `like` search."""
    esc = html.escape
    if "like" in result.query:
        asked = f"rows like {esc(str(result.key_column))} = {esc(str(result.query['like']))} (itself left out)"
    else:
        asked = f"rows nearest the text “{esc(result.query['text'])}”"
    how = f"through index {esc(result.index)} (approximate)" if result.index else "by a flat scan (exact)"
    parts = [f"<h1>search {esc(result.column)}</h1>",
             f"<p class=meta>{len(result.hits)} {asked}, {how}; cosine distance = 1 - cos"
             + (f"; where {esc(result.where)}" if result.where else "")
             + f"; table version {result.version}</p>"]
    for note in result.notes:
        parts.append(f"<p class=meta>note: {esc(note)}</p>")
    figures = []
    if "like" in result.query:
        figures.append(_figure(query_image, [f"<b>query</b> {esc(str(result.query['like']))}"], "query"))
    for rank, (hit, blob) in enumerate(zip(result.hits, images), 1):
        caption = [f"#{rank} <b>{esc(str(result.key_column or 'row'))}</b> {esc(str(hit.key))}",
                   f"<span class=distance>distance {hit.distance:.4f}</span>",
                   *(f"<b>{esc(c)}</b> {esc(str(v))}" for c, v in hit.values.items())]
        figures.append(_figure(blob, caption, "member"))
    parts.append("<div class=row>" + "".join(figures) + "</div>")
    if not any(images):
        parts.append("<p>No image column in the table: showing keys and distances only.</p>")
    page = ("<!doctype html><html><head><meta charset=utf-8><title>featurekit search "
            f"{esc(result.column)}</title><style>{STYLE}{EXTRA_STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
    return write_page(path, page)


def _figure(blob: bytes | None, caption: list[str], kind: str) -> str:
    img = ""
    if blob:
        mime = next((m for magic, m in MAGIC if blob.startswith(magic)), "application/octet-stream")
        img = f"<img alt='' src='data:{mime};base64,{base64.b64encode(blob).decode()}'>"
    return f"<figure class={kind}>{img}<figcaption>{'<br>'.join(caption)}</figcaption></figure>"
