"""Small pieces of HTML shared by the report and the web app.

Pages are self-contained: pictures are embedded as ``data:`` URIs, style and script are
inline, nothing is fetched from the network.  Every piece of text that reaches a page goes
through :func:`esc` (class names and file names come from users' data).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from convscope.render.figures import image_png


def esc(text) -> str:
    """Text for HTML, quotes included."""
    return html.escape(str(text), quote=True)


def model_label(spec: str) -> str:
    """What a page calls a model: a file as its folder and name (``demo/model.safetensors``),
    anything else (``resnet18``) as given."""
    path = Path(spec)
    return f"{path.parent.name}/{path.name}" if path.is_file() and path.parent.name else spec


def data_uri(png: bytes, mime: str = "image/png") -> str:
    """Encoded image bytes as a ``data:`` URI (no file, no request)."""
    return f"data:{mime};base64,{base64.b64encode(png).decode('ascii')}"


def img(png: bytes, alt: str, cls: str = "", width: int | None = None) -> str:
    """An <img> holding ``png`` itself."""
    size = f' width="{int(width)}"' if width else ""
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<img src="{data_uri(png)}" alt="{esc(alt)}"{klass}{size}>'


def thumbnail(image: torch.Tensor, side: int = 96) -> torch.Tensor:
    """A uint8 (C, H, W) image no larger than ``side`` pixels (small ones are kept as they
    are and enlarged by the browser, pixelated)."""
    h, w = image.shape[-2:]
    if max(h, w) <= side:
        return image
    scale = side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = torch.nn.functional.interpolate(image[None].float(), size=size, mode="bilinear",
                                        antialias=True, align_corners=False)
    return x[0].round().clamp(0, 255).to(torch.uint8)


def tile(image: torch.Tensor, caption: str, side: int = 96, cls: str = "") -> str:
    """One small image with its caption (a <figure>)."""
    body = img(image_png(thumbnail(image, side)), caption, "pix", width=side)
    return (f'<figure class="tile {esc(cls)}">{body}<figcaption>{esc(caption)}</figcaption>'
            "</figure>")


def table(head: Sequence[str] | None, rows: Iterable[Sequence], numeric: Iterable[int] = (),
          cls: str = "", foot: Sequence | None = None,
          cell: Callable[[object], str] = esc) -> str:
    """A table of text cells (``head`` None: no header row); columns in ``numeric`` are
    right-aligned; ``cell`` turns a cell into HTML (default: its text, escaped)."""
    right = set(numeric)

    def row(cells, tag="td"):
        return "<tr>" + "".join(
            f'<{tag}{" class=num" if i in right else ""}>{cell(c)}</{tag}>'
            for i, c in enumerate(cells)) + "</tr>"

    parts = [f'<table class="{esc(cls)}">' if cls else "<table>"]
    if head is not None:
        parts += ["<thead>", row(head, "th"), "</thead>"]
    parts.append("<tbody>")
    parts += [row(r) for r in rows]
    parts.append("</tbody>")
    if foot is not None:
        parts += ["<tfoot>", row(foot), "</tfoot>"]
    parts.append("</table>")
    return "".join(parts)


def json_script(obj, element_id: str) -> str:
    """``obj`` as a <script type="application/json"> block a page (or a test) can read."""
    text = json.dumps(obj, default=str, sort_keys=True, indent=1)
    # "</" would end the script element early; "<\/" is the same JSON string
    text = text.replace("</", "<\\/")
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


CSS = """
:root { --ink: #1d232a; --soft: #5b6570; --line: #d8dde3; --bg: #f6f7f9; --card: #fff;
        --accent: #2563eb; --good: #15803d; --bad: #b91c1c; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: var(--bg); }
header.page { background: #111827; color: #f9fafb; padding: 18px 28px; }
header.page h1 { margin: 0 0 4px; font-size: 22px; }
header.page p { margin: 0; color: #cbd5e1; }
main { max-width: 1180px; margin: 0 auto; padding: 18px 20px 60px; }
nav.toc { display: flex; flex-wrap: wrap; gap: 6px 14px; margin: 4px 0 16px; }
nav.toc a { color: var(--accent); text-decoration: none; }
section.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
               padding: 14px 20px 18px; margin: 0 0 18px; }
section.card h2 { margin: 0 0 2px; font-size: 19px; }
p.how { margin: 0 0 12px; color: var(--soft); }
p.note, p.unavailable { color: var(--soft); font-style: italic; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 10px; }
th, td { padding: 3px 9px; border-bottom: 1px solid var(--line); text-align: left;
         white-space: nowrap; }
th { background: #eef1f4; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tfoot td { font-weight: 600; }
.scroll { overflow-x: auto; }
img.fig { max-width: 100%; height: auto; }
img.pix { image-rendering: pixelated; height: auto; }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; }
figure.tile { margin: 0; width: min-content; text-align: center; font-size: 12px; }
figure.tile figcaption { color: var(--soft); min-width: 96px; }
figure.tile.wrong img { outline: 3px solid var(--bad); }
figure.tile.right img { outline: 3px solid var(--good); }
.big { font-size: 28px; font-weight: 650; margin-right: 26px; }
.bar { display: inline-block; height: 10px; background: var(--accent); border-radius: 2px; }
pre { background: #f1f3f5; padding: 8px; overflow-x: auto; font-size: 12px; }
footer.page { color: var(--soft); font-size: 12px; }
"""


def page(title: str, body: str, subtitle: str = "", extra_css: str = "",
         script: str = "") -> str:
    """A whole HTML document: inline style, no external resource (the empty icon keeps the
    browser from asking the server for /favicon.ico)."""
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><link rel=\"icon\" href=\"data:,\">"
        f"<style>{CSS}{extra_css}</style></head><body>"
        f"<header class=\"page\"><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
        f"<main>{body}</main>"
        + (f"<script>{script}</script>" if script else "")
        + "</body></html>\n"
    )
