"""The tables ``lpdm bench --markdown PAGE`` wrote between its markers, read back as rows, so
that a claim about cost or memory quotes the committed measurement instead of retyping it."""

from __future__ import annotations

import re
from pathlib import Path

from lpdm.bench_command import MARKDOWN_BEGIN, MARKDOWN_END
from lpdm.errors import RunError

Row = dict[str, str]


def bench_block(page: Path) -> str:
    """The text between the bench markers of ``page``."""
    text = page.read_text() if page.exists() else ""
    if MARKDOWN_BEGIN not in text or MARKDOWN_END not in text:
        raise RunError(f"{page} holds no '{MARKDOWN_BEGIN}' ... '{MARKDOWN_END}' block of "
                       "`lpdm bench --markdown`")
    return text[text.index(MARKDOWN_BEGIN) + len(MARKDOWN_BEGIN):text.index(MARKDOWN_END)]


def bench_table(page: Path, table: str) -> list[Row]:
    """The rows of the bench table whose heading starts with ``table`` (e.g. ``"(d)"``),
    each a dict from column header to cell text."""
    lines = bench_block(page).splitlines()
    start = next((i for i, line in enumerate(lines)
                  if re.match(rf"#+\s*{re.escape(table)}", line)), None)
    if start is None:
        raise RunError(f"{page}: no bench table {table}")
    rows = _table_lines(lines[start + 1:])
    if len(rows) < 2:
        raise RunError(f"{page}: bench table {table} has no rows")
    header = _cells(rows[0])
    return [dict(zip(header, _cells(line), strict=True)) for line in rows[2:]]


def _table_lines(lines: list[str]) -> list[str]:
    """The first Markdown table's lines in ``lines`` (up to the next heading)."""
    found = []
    for line in lines:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            found.append(line)
        elif found:
            break
    return found


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def cell_number(text: str) -> float:
    """A bench cell as a number: ``"1.32×"`` is 1.32."""
    try:
        return float(text.rstrip("×").strip())
    except ValueError:
        raise RunError(f"bench cell {text!r} is not a number") from None


def find_row(rows: list[Row], where: dict[str, str], table: str) -> Row:
    """The one row whose cells equal ``where``."""
    found = [row for row in rows if all(row.get(k) == v for k, v in where.items())]
    if len(found) != 1:
        raise RunError(f"bench table {table}: {len(found)} rows match {where}, expected 1")
    return found[0]
