"""One self-contained HTML page: inline CSS, PNGs embedded as base64 data URIs, tables from pandas.

Self-contained on purpose: the report is opened from disk, mailed or attached to a paper review; it
must need no network, no JavaScript and no sibling files to display (the PNGs are also written
beside it for reuse, but the page does not depend on them).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; margin: 0 auto;
       max-width: 1360px; padding: 24px 32px 64px; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #e3e3e3; }
p.sub { color: #555; margin: 0 0 16px; font-size: 14px; word-break: break-all; }
p, li { font-size: 14.5px; }
nav a { margin-right: 14px; font-size: 14px; color: #0b5cad; text-decoration: none; }
img { max-width: 100%; height: auto; display: block; margin: 10px 0 18px; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 18px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f4f6f8; position: sticky; top: 0; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; font-size: 14px; }
.scroll { overflow-x: auto; max-width: 100%; }
.note { color: #555; font-size: 13.5px; }
code { background: #f3f3f3; padding: 1px 4px; border-radius: 3px; }
"""


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)  # plain text, escaped on render
    images: list[tuple[str, bytes]] = field(default_factory=list)  # (alt text, PNG bytes)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (caption, table of display strings)
    anchor: str = ""


def _img(alt: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(caption: str, table: pd.DataFrame) -> str:
    body = table.to_html(index=False, escape=True, na_rep="–", border=0)
    head_end = body.index(">") + 1  # right after pandas' opening <table ...> tag
    return f'<div class="scroll">{body[:head_end]}<caption>{html.escape(caption)}</caption>{body[head_end:]}</div>'


def render_html(title: str, subtitle: str, sections: list[Section], links: list[tuple[str, str]] | None = None) -> str:
    """The whole page. `links`: (label, relative href) shown under the title (e.g. runs.csv)."""
    nav = " ".join(f'<a href="#{html.escape(s.anchor)}">{html.escape(s.title)}</a>' for s in sections if s.anchor)
    extra = " · ".join(f'<a href="{html.escape(href)}">{html.escape(label)}</a>' for label, href in links or [])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="sub">{html.escape(subtitle)} · generated {datetime.now():%Y-%m-%d %H:%M}'
        + (f" · {extra}" if extra else "") + "</p>",
        f"<nav>{nav}</nav>" if nav else "",
    ]
    for s in sections:
        anchor = f' id="{html.escape(s.anchor)}"' if s.anchor else ""
        parts.append(f"<section{anchor}><h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in s.paragraphs]
        parts += [_table(c, t) for c, t in s.tables]
        parts += [_img(alt, png) for alt, png in s.images]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)
