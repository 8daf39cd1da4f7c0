"""Plain-text tables for the CLI's listings: one layout for every command that prints rows."""

from __future__ import annotations


def text_table(rows: list[list[str]]) -> str:
    """Align the columns and underline the header, so listings read the same in every command."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
