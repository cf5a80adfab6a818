"""The document as one self-contained HTML page: plots embedded as base64 PNG data URIs,
the style inline, no script and nothing fetched, so it opens offline and can be mailed."""

from __future__ import annotations

import base64
import html
import re

from bench.report.document import Document, Figure, Table

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 110em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: 0.3em; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; } figcaption { font-style: italic; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def inline(text: str) -> str:
    """A paragraph: escaped, with Markdown's **bold** and `code` kept."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def table_html(table: Table) -> str:
    body = table.shown.to_html(index=False, border=0, na_rep="-", escape=True, classes="report", table_id=table.name)
    return body.replace(">\n  <thead>", f">\n  <caption>{html.escape(table.caption)}</caption>\n  <thead>", 1)


def figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    caption = html.escape(fig.caption)
    return f'<figure id="{fig.name}"><img src="data:image/png;base64,{data}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'


def render(document: Document) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(document.title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(document.title)}</h1>"]
    for section in document.sections:
        parts.append(f"<h{section.level}>{html.escape(section.title)}</h{section.level}>")
        for block in section.blocks:
            if isinstance(block, Table):
                parts.append(table_html(block))
            elif isinstance(block, Figure):
                parts.append(figure_html(block))
            else:
                parts.append(f"<p>{inline(block)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
