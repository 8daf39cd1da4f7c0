"""Which format ``dropscore score`` writes: ``--format``, else the output's name, else the input's.

Read from the one format table (``ingest.base.formats.FORMATS``): a suffix means what the table says
it means, and the formats that can be written are the table's output entries.
"""

from __future__ import annotations

from pathlib import Path

from ingest.base.errors import UnsupportedFormatError
from ingest.base.formats import FORMATS, OUTPUT_FORMATS, Format, format_for_name, spec_for


class OutputChoiceError(ValueError):
    """The output's name and ``--format`` cannot both be honoured; the message says why."""


def output_suffixes() -> list[str]:
    """List the suffixes dropscore writes, in table order, for messages."""
    return [suffix for spec in FORMATS if spec.output for suffix in spec.suffixes]


def _named_format(dst: Path) -> tuple[Format | None, bool]:
    """Return the format the output's name announces (None when the table has no such suffix)."""
    try:
        return format_for_name(dst.name)
    except UnsupportedFormatError:
        return None, False


def output_format(dst: Path | None, fmt: str | None, input_format: Format) -> str:
    """Pick the output format, so a file named ``.parquet`` always holds Parquet.

    Without ``--format`` the output's extension decides (none given: the input's family, the
    table's ``answer``); with both, they must agree. A name that says nothing (no extension or
    one the table does not know) is fine with ``--format`` and an error without it.
    """
    if dst is None:
        return fmt or spec_for(input_format).answer.value
    named, gzipped = _named_format(dst)
    accepted = ", ".join(output_suffixes())
    if gzipped:
        raise OutputChoiceError(
            f"{dst.name}: dropscore does not write compressed output; name it with one of:"
            f" {accepted}"
        )
    if fmt is not None:
        if named is not None and named.value != fmt:
            raise OutputChoiceError(
                f"--format {fmt} contradicts the output name {dst.name}, which says"
                f" {named.value}; drop --format or rename the output"
            )
        return fmt
    if named is None or not spec_for(named).output:
        what = f"the extension {dst.suffix}" if dst.suffix else "no extension"
        raise OutputChoiceError(
            f"{dst.name} has {what}, which dropscore does not write; name it with one of:"
            f" {accepted} (or give --format {'|'.join(OUTPUT_FORMATS)})"
        )
    return named.value
