"""Plain-text tables for the CLI's listings: one layout for every command that prints rows."""

from __future__ import annotations

import shutil
import textwrap

# Beside the other columns, a last column narrower than this would be a ribbon of short lines:
# it moves below its row instead, indented by BELOW, with the terminal's whole width.
MIN_WRAP = 30
BELOW = 4


def text_table(rows: list[list[str]], width: int | None = None) -> str:
    """Align the columns and underline the header, so listings read the same in every command.

    With ``width`` the last column (a reason, an error: prose) wraps so each row fits that many
    characters, under its own column or, when the others leave it too little room, below the
    row. It is never cut.
    """
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    indent = sum(widths[:-1]) + 2 * (len(widths) - 1)
    wrap = None
    if width and indent + widths[-1] > width:
        beside = width - indent >= MIN_WRAP
        wrap = (indent, width - indent) if beside else (BELOW, max(width - BELOW, MIN_WRAP))
        widths[-1] = max(len(str(rows[0][-1])), min(widths[-1], width - indent))
    rule = "  ".join("-" * w for w in widths)
    body = [_row([str(c) for c in r], widths, wrap) for r in rows[1:]]
    return "\n".join([_line(rows[0], widths), rule, *body])


def _line(cells: list[str], widths: list[int]) -> str:
    return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def _row(cells: list[str], widths: list[int], wrap: tuple[int, int] | None) -> str:
    """Lay out one row; a last cell too long for its column continues on indented lines."""
    if wrap is None or len(cells[-1]) <= widths[-1]:
        return _line(cells, widths)
    at, room = wrap
    pieces = textwrap.wrap(cells[-1], room, break_on_hyphens=False) or [""]
    if at > BELOW:  # beside the row: the first piece on the row's own line
        first, pieces = _line([*cells[:-1], pieces[0]], widths), pieces[1:]
    else:
        first = _line([*cells[:-1], ""], widths)
    return "\n".join([first, *(" " * at + piece for piece in pieces)])


def terminal_width() -> int | None:
    """Return the width to wrap listings to: ``COLUMNS`` or the terminal's; None when piped.

    Piped output stays one line per row, for ``grep`` and scripts.
    """
    columns = shutil.get_terminal_size(fallback=(0, 0)).columns
    return columns or None
