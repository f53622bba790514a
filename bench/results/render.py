"""A tiny document model rendered to markdown, self-contained HTML and plain text.

Every piece of text is data: the markdown renderer escapes markdown and HTML
syntax in it (a model named ``<b>x|y*`` shows as written), the HTML renderer
escapes HTML. Table cells never wrap (numbers stay on one line) and wide
tables scroll inside their own box instead of widening the page.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Doc",
    "Figure",
    "Strong",
    "interval_text",
    "md_escape",
    "p_text",
    "render_html",
    "render_markdown",
    "text_table",
]

FIGURES = "figures"


class Strong(str):
    """A table cell rendered in bold (the best value of a column)."""

    __slots__ = ()


@dataclass
class Table:
    """A table: header, rows of cell texts, and which columns are numeric (right-aligned)."""

    header: list[str]
    rows: list[list[str]]
    numeric: list[bool] = field(default_factory=list)


@dataclass
class Figure:
    """A PNG with its file name (under ``figures/``) and caption."""

    name: str
    png: bytes
    caption: str


@dataclass
class Doc:
    """An ordered list of blocks: headings, paragraphs, bullets, tables, figures, code."""

    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        """Add a heading of ``level`` (1-6)."""
        self.blocks.append(("h", (level, text)))

    def para(self, text: str) -> None:
        """Add a paragraph."""
        self.blocks.append(("p", text))

    def bullets(self, items: Sequence[str]) -> None:
        """Add a bulleted list."""
        self.blocks.append(("ul", list(items)))

    def table(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[str]],
        numeric: Sequence[bool] | None = None,
    ) -> None:
        """Add a table (``numeric`` marks right-aligned columns)."""
        numeric = list(numeric) if numeric is not None else [False] * len(header)
        if len(numeric) != len(header) or any(len(r) != len(header) for r in rows):
            raise ValueError("every row and the numeric flags must match the header")
        self.blocks.append(("table", Table(list(header), [list(r) for r in rows], numeric)))

    def figure(self, fig: Figure) -> None:
        """Add a figure."""
        self.blocks.append(("figure", fig))

    def pre(self, text: str) -> None:
        """Add preformatted text."""
        self.blocks.append(("pre", text))


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_escape(text: Any, *, block: bool = False) -> str:
    """``text`` with markdown and HTML syntax neutralised (shown literally by any renderer).

    Backslash-escapes the characters that start emphasis, code, links, tables
    and strike-through, and writes ``<`` and ``&`` as entities where they
    would form a tag or an entity. ``block=True`` (a paragraph or list item) also
    escapes what would start a heading, list or quote at the beginning.
    """
    out = str(text).replace("\n", " ")
    # Only "<" before a tag-like character forms HTML, and "&" before an entity-like name.
    out = re.sub(r"&(?=#|[A-Za-z]+;)", "&amp;", out)
    out = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", out)
    out = _MD_SPECIAL.sub(r"\\\1", out)
    if block:
        out = re.sub(r"^(\s*)([-+>#]|\d+[.)])", r"\1\\\2", out)
    return out


def _md_cell(text: str) -> str:
    out = md_escape(text)
    return f"**{out}**" if isinstance(text, Strong) and out else out


def render_markdown(doc: Doc) -> str:
    """The document as GitHub-flavoured markdown (figures linked under ``figures/``)."""
    lines: list[str] = []
    for kind, value in doc.blocks:
        if kind == "h":
            level, text = value
            lines += ["#" * level + " " + md_escape(text), ""]
        elif kind == "p":
            lines += [md_escape(value, block=True), ""]
        elif kind == "ul":
            lines += [f"- {md_escape(item, block=True)}" for item in value] + [""]
        elif kind == "pre":
            fence = "````" if "```" in value else "```"
            lines += [fence, value, fence, ""]
        elif kind == "table":
            table: Table = value
            lines.append("| " + " | ".join(_md_cell(h) for h in table.header) + " |")
            lines.append("|" + "|".join("---:" if n else "---" for n in table.numeric) + "|")
            for row in table.rows:
                lines.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
            lines.append("")
        elif kind == "figure":
            fig: Figure = value
            alt = md_escape(fig.name.rsplit(".", 1)[0])
            lines += [f"![{alt}]({FIGURES}/{fig.name})", "", f"*{md_escape(fig.caption)}*", ""]
    return "\n".join(lines).rstrip() + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
.scroll{max-width:100%;overflow-x:auto;margin:0.5em 0 1.5em}
table{border-collapse:collapse;font-size:0.85em}
th,td{border:1px solid #ccc;padding:0.2em 0.5em;white-space:nowrap}th{background:#f2f2f2}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.text{white-space:normal;min-width:16em;max-width:40em}
figure{margin:1em 0 2em}img{max-width:100%;height:auto}figcaption{font-style:italic;color:#555}
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto}h2{border-bottom:1px solid #ddd}
"""


def _html_cell(text: str) -> str:
    out = html.escape(str(text))
    return f"<strong>{out}</strong>" if isinstance(text, Strong) and out else out


def _cell_class(text: str, numeric: bool) -> str:
    if numeric:
        return ' class="num"'
    # Long prose (notes, errors) may wrap; names and numbers never do.
    return ' class="text"' if len(str(text)) > 60 else ""


def render_html(doc: Doc, title: str) -> str:
    """The document as one self-contained HTML page (figures embedded as base64 PNG)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
    ]
    for kind, value in doc.blocks:
        if kind == "h":
            level, text = value
            parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(value)}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in value) + "</ul>")
        elif kind == "pre":
            parts.append(f"<pre>{html.escape(value)}</pre>")
        elif kind == "table":
            table: Table = value
            head = "".join(f"<th>{_html_cell(h)}</th>" for h in table.header)
            body = "".join(
                "<tr>"
                + "".join(
                    f"<td{_cell_class(c, num)}>{_html_cell(c)}</td>"
                    for c, num in zip(row, table.numeric)
                )
                + "</tr>"
                for row in table.rows
            )
            parts.append(
                f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>"
            )
        elif kind == "figure":
            fig: Figure = value
            data = base64.b64encode(fig.png).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(fig.caption)}" '
                f'src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def text_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]
) -> str:
    """A plain-text table for the terminal (columns padded, numbers right-aligned)."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if num else str(c).ljust(w) for c, w, num in zip(cells, widths, numeric)
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _bound_text(x: float) -> str:
    if x is None or x != x or x in (float("inf"), float("-inf")):
        return "-"
    if x != 0.0 and abs(x) < 5e-5:
        # Four decimals would print it as +0.0000 and hide which side of 0 it lies on.
        return f"{x:+.1e}"
    return f"{x:+.4f}"


def interval_text(low: float, high: float) -> str:
    """``[low, high]`` with signed four-decimal bounds; a non-zero bound never prints as 0.

    Examples
    --------
    >>> interval_text(-0.00823, -0.00003)
    '[-0.0082, -3.0e-05]'
    """
    return f"[{_bound_text(low)}, {_bound_text(high)}]"


def p_text(p: float) -> str:
    """A p-value with four decimals ("<0.0001" below; "n/a" when missing)."""
    if p is None or p != p:
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"
