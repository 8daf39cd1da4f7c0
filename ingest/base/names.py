"""File names as the ledger stores and shows them: any bytes in, one line of valid text out.

Linux allows any bytes but ``/`` and NUL in a name; Python hands the bytes that are not UTF-8 to
us as lone surrogates (``os.fsdecode``), which SQLite, JSON and a terminal all refuse. So a
dropped name is stored in an escaped text form, one line a person can read and a program can
turn back into the exact bytes:

- a byte that is not part of valid UTF-8 becomes ``\\xNN`` (``\\xff\\xfe\\xfdbad.csv``);
- a character that would break a line or hide text (controls such as a newline, line and
  paragraph separators, bidirectional overrides) becomes its UTF-8 bytes as ``\\xNN``;
- a backslash becomes ``\\\\``, so the form is reversible (``unescape``);
- everything else (quotes, spaces, accents, emoji) is kept as it is.

The claim in ``processing/`` and the archived or quarantined original are named in this form
too, so every path the ledger holds is plain text, and one claim's name gives back the drop's.
Those names are kept short enough for the filesystem (``on_disk``): a name longer than
``NAME_BYTES`` keeps its start and its extension around a hash of the whole; the ledger row
keeps the whole name.
"""

from __future__ import annotations

import hashlib
import os
import re

_BACKSLASH = "\\"
# What a reader would not see as written: C0/C1 controls and DEL, line/paragraph separators,
# bidirectional embeddings, overrides, isolates and marks. Lone surrogates are bytes, not text.
_HIDDEN = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2})")
_UNDECODED = re.compile("[\ud800-\udfff]")
_TOKEN = re.compile(r"\\\\|\\x[0-9a-fA-F]{2}|.", re.DOTALL)  # one character or one escape
# Most filesystems allow 255 bytes a name; what we add around a drop's name (``<id>__``, a
# ready marker, ``.error.json``, a temporary's dots and tag) must fit in the rest.
NAME_BYTES = 180
_SUFFIX_BYTES = 24  # the longest extension kept whole (``.csv.gz``, ``.jsonl``, ``.parquet``)


def _as_bytes(char: str) -> str:
    """Write one hidden character as the ``\\xNN`` escapes of the bytes it stands for."""
    if "\udc80" <= char <= "\udcff":  # a byte os.fsdecode could not decode
        return f"\\x{ord(char) - 0xDC00:02x}"
    data = char.encode("utf-8", "replace")  # another lone surrogate: never from a file name
    return "".join(f"\\x{b:02x}" for b in data)


def shown(text: str) -> str:
    """Make any text one readable line: hidden characters and undecodable bytes as ``\\xNN``.

    For messages and log fields, where the exact bytes need not come back; ``escape`` is the
    lossless form of a name. It leaves an escaped name as it is.
    """
    return _HIDDEN.sub(lambda m: _as_bytes(m.group()), text)


def as_text(text: str) -> str:
    """Write the bytes in a text that are not UTF-8 (lone surrogates) as ``\\xNN``, the rest kept.

    For an error message that quotes a name as the filesystem gave it: SQLite, JSON and a
    terminal refuse lone surrogates, and the message's own line breaks are its author's.
    """
    return _UNDECODED.sub(lambda m: _as_bytes(m.group()), text)


def escape(name: str) -> str:
    """Turn a name as the filesystem gave it (``os.fsdecode``) into its stored text form."""
    return shown(name.replace(_BACKSLASH, _BACKSLASH * 2))


def unescape(stored: str) -> str:
    """Turn a stored name back into the name the filesystem knows (surrogates for raw bytes)."""
    out = bytearray()
    last = 0
    for match in _ESCAPE.finditer(stored):
        out += stored[last : match.start()].encode("utf-8", "surrogateescape")
        token = match.group(1)
        out += b"\\" if token == _BACKSLASH else bytes([int(token[1:], 16)])
        last = match.end()
    out += stored[last:].encode("utf-8", "surrogateescape")
    return os.fsdecode(bytes(out))


def undecodable(name: str) -> bool:
    """Tell whether a name holds bytes that are not UTF-8, which no ledger row can hold.

    A claim named by this release never does; one left in ``processing/`` by an older release
    may, and is renamed to its stored form before it is taken again.
    """
    return _UNDECODED.search(name) is not None


def on_disk(stored: str) -> str:
    """Fit a stored name into ``NAME_BYTES``: its start, a hash of the whole, its extension.

    The extension says the format to the readers, and the hash keeps two long names that
    start alike apart; a name that fits is returned as it is.
    """
    data = stored.encode("utf-8")
    if len(data) <= NAME_BYTES:
        return stored
    suffix = "".join(_suffixes(stored))
    tag = "~" + hashlib.sha256(data).hexdigest()[:12]
    room = NAME_BYTES - len(tag.encode()) - len(suffix.encode())
    head, used = [], 0
    for token in _TOKEN.findall(stored):  # never half a character or half an escape
        used += len(token.encode("utf-8"))
        if used > room:
            break
        head.append(token)
    return "".join(head) + tag + suffix


def filed(file_id: int, stored: str) -> str:
    """Name a drop's original in archive/ or quarantine/: ``<id>__<name>``, short enough."""
    return f"{file_id}__{on_disk(stored)}"


def _suffixes(stored: str) -> list[str]:
    """Return the extensions worth keeping on a shortened name (``.csv``, ``.csv.gz``)."""
    parts = stored.rsplit(".", 2)[1:]
    kept: list[str] = []
    for part in reversed(parts):
        candidate = "." + part
        if len((candidate + "".join(kept)).encode()) > _SUFFIX_BYTES or "\\" in part:
            break
        kept.insert(0, candidate)
    return kept
