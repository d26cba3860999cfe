"""A review page: one self-contained HTML file per input, to check OCR by looking at it.

    review_page(pages, title=None) -> str

Each page shows its image (embedded as a data: URI, so the file needs no server and no network)
with every line's outline drawn over it in an SVG layer, and beside it the recognised lines in
reading order. Outlines and lines are coloured by the recogniser's confidence (red 0 .. green 1);
a line's tokens carry their probabilities (hover one to see it, low ones are underlined), and
word boxes are drawn dashed where the line has them. Clicking a line or an outline selects both
(class `selected`) and puts `#line-N` in the address; opening the page with `#line-N` selects line
N (lines are numbered 1.. through the whole document).
"""
from __future__ import annotations

import base64
import html
import io
import math

PNG_MAX_PIXELS = 1_500_000   # larger pages are embedded as JPEG: a 300 dpi scan as PNG is many MB

CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#f4f4f4;color:#222}
h1{font-size:1.1em;margin:.6em 1em} h2{font-size:1em;margin:.4em 1em}
.page{display:flex;gap:1em;align-items:flex-start;margin:0 1em 2em}
.image{flex:1 1 60%;background:#fff;box-shadow:0 0 3px #999}
.image svg{width:100%;height:auto;display:block}
.region{fill:transparent;stroke-width:2;vector-effect:non-scaling-stroke;cursor:pointer}
.region:hover{fill:rgba(255,255,0,.15)}
.region.selected{fill:rgba(0,120,255,.25);stroke:#0060ff!important;stroke-width:4}
.word{fill:none;stroke:#555;stroke-dasharray:4 3;stroke-width:1;vector-effect:non-scaling-stroke;pointer-events:none}
ol{flex:1 1 40%;margin:0;padding:.5em .5em .5em 2.5em;background:#fff;box-shadow:0 0 3px #999;font-size:1.05em}
li{border-left:6px solid;padding:.15em .5em;margin:.2em 0;cursor:pointer}
li.selected{background:#dbe8ff}
li .conf{color:#777;font-size:.75em;margin-left:.6em}
.tok{border-radius:2px} .tok:hover{background:#ffe680}
.tok.low{text-decoration:underline wavy #d00}
.special{color:#999;font-size:.7em}
"""

JS = """
function select(n){
  document.querySelectorAll('.selected').forEach(e=>e.classList.remove('selected'));
  const li=document.getElementById('line-'+n), r=document.getElementById('region-'+n);
  if(li){li.classList.add('selected');li.scrollIntoView({block:'nearest'});}
  if(r){r.classList.add('selected');}
}
function fromHash(){
  const m=/^#line-(\\d+)$/.exec(location.hash);
  if(m) select(m[1]);
}
document.addEventListener('click',e=>{
  const t=e.target.closest('[data-line]');
  if(t){select(t.dataset.line);history.replaceState(null,'','#line-'+t.dataset.line);}
});
window.addEventListener('hashchange',fromHash);
document.addEventListener('DOMContentLoaded',fromHash);
"""


def confidence_colour(c) -> str:
    """red (0) .. amber .. green (1); grey where the recogniser gave no confidence."""
    if c is None or not math.isfinite(float(c)):
        return "#999"
    return f"hsl({round(120 * min(max(float(c), 0.0), 1.0))},80%,40%)"


def image_uri(im) -> str:
    """The page as a data: URI (PNG, or JPEG above PNG_MAX_PIXELS)."""
    buf = io.BytesIO()
    small = im.size[0] * im.size[1] <= PNG_MAX_PIXELS
    im.convert("RGB").save(buf, "PNG" if small else "JPEG", **({} if small else {"quality": 85}))
    return f"data:image/{'png' if small else 'jpeg'};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _points(poly) -> str:
    return " ".join(f"{float(x):.1f},{float(y):.1f}" for x, y in poly)


def _tokens_html(ln) -> str:
    """The line text as token spans with their probabilities (plain text when the tokens are unknown)."""
    text, tokens = ln.text or "", getattr(ln, "tokens", None)
    if not tokens:
        return html.escape(text)
    out, pos = [], 0
    for t, p in tokens:
        tip = f"{t!r} p={float(p):.3f}"
        if t and text.startswith(t, pos):
            low = " low" if float(p) < 0.5 else ""
            out.append(f'<span class="tok{low}" title="{html.escape(tip)}" data-p="{float(p):.4f}">'
                       f"{html.escape(t)}</span>")
            pos += len(t)
        else:   # BOS / EOS and pieces of a character cut by byte-level BPE: shown small
            out.append(f'<span class="special" title="{html.escape(tip)}">{html.escape(t or "·")}</span>')
    return "".join(out) + html.escape(text[pos:])


def _page_html(page, first: int, heading: str) -> str:
    w, h = int(page.width), int(page.height)
    shapes, items = [], []
    for k, ln in enumerate(page.lines, first):
        colour = confidence_colour(ln.confidence)
        conf = f"{ln.confidence:.2f}" if ln.confidence == ln.confidence else "n/a"
        shapes.append(f'<polygon class="region" id="region-{k}" data-line="{k}" points="{_points(ln.polygon)}" '
                      f'style="stroke:{colour}"><title>{k}: {html.escape(ln.text)} ({conf})</title></polygon>')
        for wd in getattr(ln, "words", None) or []:
            shapes.append(f'<polygon class="word" points="{_points(wd["box"])}"/>')
        items.append(f'<li id="line-{k}" data-line="{k}" value="{k}" style="border-color:{colour}" '
                     f'data-confidence="{conf}">{_tokens_html(ln)}<span class="conf">{conf}</span></li>')
    image = (f'<image href="{image_uri(page.image)}" x="0" y="0" width="{w}" height="{h}"/>'
             if page.image is not None else f'<rect width="{w}" height="{h}" fill="#fff"/>')
    return (f'<h2>{html.escape(heading)}</h2><div class="page">'
            f'<div class="image"><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}">{image}'
            f'{"".join(shapes)}</svg></div><ol>{"".join(items)}</ol></div>')


def review_page(pages, title: str | None = None) -> str:
    """PageResults (with their images) of one input -> one HTML document (str)."""
    pages = list(pages)
    title = title if title is not None else (pages[0].source if pages else "trocr-np review")
    body, first = [], 1
    for p in pages:
        heading = p.source + (f" - page {p.page}" if len(pages) > 1 or p.page > 1 else "")
        body.append(_page_html(p, first, heading))
        first += len(p.lines)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style><script>{JS}</script></head>"
            f"<body><h1>{html.escape(title)}</h1>{''.join(body)}</body></html>\n")
