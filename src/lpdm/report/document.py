"""A report as a list of blocks, rendered to Markdown and to one self-contained HTML page.

Text is plain; ``**bold**`` is the only markup, understood by both renderers.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    # a CSS class per cell (HTML only: a verdict matrix colours its cells), "" for none
    classes: tuple[tuple[str, ...], ...] | None = None


@dataclass(frozen=True)
class Figure:
    filename: str  # a PNG next to the report
    caption: str


@dataclass(frozen=True)
class Details:
    """Blocks folded away under a one-line summary (HTML ``<details>``)."""

    summary: str
    blocks: tuple[Heading | Paragraph | Bullets | Table | Figure, ...]


Block = Heading | Paragraph | Bullets | Table | Figure | Details

_BOLD = re.compile(r"\*\*(.+?)\*\*")


# --------------------------------------------------------------------------- markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Details):
            inner = to_markdown(list(block.blocks)).strip()
            parts.append(f"<details><summary>{html.escape(block.summary)}</summary>\n\n"
                         f"{inner}\n\n</details>")
            continue
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(map(_md_cell, block.columns)) + " |",
                     "|" + "|".join("---" for _ in block.columns) + "|"]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
            parts.append("\n".join(lines))
        elif isinstance(block, Figure):
            parts.append(f"![{block.caption}]({block.filename})\n\n*{block.caption}*")
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- html

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1300px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f2f2f2; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
details { margin: 1em 0; }
summary { cursor: pointer; font-weight: 600; }
td.loses, td.lower, td.same, td.higher, td.beats, td.few { white-space: nowrap; }
td.loses { background: #f4a6a6 !important; }
td.lower { background: #fbdede !important; }
td.same { background: #f2f2f2 !important; }
td.higher { background: #dcefdc !important; }
td.beats { background: #9fd89f !important; }
td.few { background: #ffffff !important; color: #888; }
"""


def _inline(text: str) -> str:
    return _BOLD.sub(r"<strong>\1</strong>", html.escape(text))


def to_html(blocks: list[Block], title: str, figure_dir: Path) -> str:
    """A standalone page; figures are read from ``figure_dir`` and embedded as base64."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
            f"<body>\n" + _html_blocks(blocks, figure_dir) + "\n</body></html>\n")


def _cell(text: str, css: str) -> str:
    return f'<td class="{css}">{_inline(text)}</td>' if css else f"<td>{_inline(text)}</td>"


def _html_blocks(blocks: list[Block], figure_dir: Path) -> str:
    body = []
    for block in blocks:
        if isinstance(block, Details):
            body.append(f"<details><summary>{_inline(block.summary)}</summary>"
                        f"{_html_blocks(list(block.blocks), figure_dir)}</details>")
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{_inline(item)}</li>" for item in block.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(c)}</th>" for c in block.columns)
            classes = block.classes or tuple(("",) * len(row) for row in block.rows)
            rows = "".join("<tr>" + "".join(_cell(c, css) for c, css in zip(row, styles,
                                                                          strict=True))
                           + "</tr>" for row, styles in zip(block.rows, classes, strict=True))
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Figure):
            data = base64.b64encode((figure_dir / block.filename).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(block.caption)}" '
                        f'src="data:image/png;base64,{data}"><figcaption>'
                        f"{_inline(block.caption)}</figcaption></figure>")
    return "\n".join(body)
