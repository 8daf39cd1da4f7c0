"""A multipart upload decoded as it arrives, so that its file reaches the disk once.

waitress hands the front every body chunk as it arrives (its buffer's ``append``). For a
``multipart/form-data`` body, ``MultipartSpool`` feeds those chunks to werkzeug's sans-IO
``MultipartDecoder`` (the one werkzeug's own form parser uses, so both read a body alike) and
stores the raw body split in two: the bytes before the file part's content in memory (a few
hundred: the part's headers, small fields), and every byte from the content on in one unnamed
spool file. When the body is whole, the file's content is the spool file's first ``size`` bytes:
the upload route names that file and cuts off the rest (the closing boundary), so each byte of
the upload is written once, where werkzeug's parser wrote it a second time into a part file.

Nothing is lost on the way: the raw body stays whole (memory, then the file), and the app reads
it unchanged whenever the decoded file cannot be used — a decode error, a second file part, big
fields, a body that ends early, a route that is not an upload. It then parses the body as
before, and answers as before. Each Data event's position in the raw body is checked against
the file's, so a decoder that split a body otherwise than expected falls back the same way.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from dataclasses import dataclass, field
from io import BufferedRandom
from pathlib import Path

from werkzeug.datastructures import Headers
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import (
    LINE_BREAK_RE,
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
    NeedData,
    State,
)

MULTIPART = "multipart/form-data"
HEAD_LIMIT = 64 * 1024  # raw bytes held in memory before the file's content starts
FIELDS_LIMIT = 64 * 1024  # bytes of the small fields beside the file kept in memory
PARTS_LIMIT = 64  # parts in one body (werkzeug's own limit, 1,000, is left to werkzeug)


class Unusual(Exception):
    """A body the decoder's file cannot stand for: the app parses the raw body instead."""


def unnamed_file(directory: Path | None) -> BufferedRandom:
    """Open an unnamed file in ``directory`` (closed, it is gone; the upload route may name it).

    ``O_TMPFILE`` without ``O_EXCL`` (which ``tempfile.TemporaryFile`` adds) so that the
    upload route may give it a name; elsewhere, a temporary file as waitress makes it.
    """
    flag = getattr(os, "O_TMPFILE", 0)
    if flag and directory is not None:
        try:
            fd = os.open(directory, flag | os.O_RDWR, 0o600)
        except OSError:  # a file system without O_TMPFILE
            pass
        else:
            return os.fdopen(fd, "w+b")
    return tempfile.TemporaryFile("w+b", dir=directory)


def multipart_boundary(content_type: str) -> bytes | None:
    """Return a ``multipart/form-data`` body's boundary, or None for any other body.

    The boundary is read as werkzeug's form parser reads it; a body whose boundary it would
    refuse is not decoded here, so the app refuses it as before.
    """
    mimetype, options = parse_options_header(content_type)
    if mimetype.lower() != MULTIPART:
        return None
    try:
        boundary = options.get("boundary", "").encode("ascii")
    except UnicodeEncodeError:
        return None
    return boundary or None


@dataclass(frozen=True)
class SpooledPart:
    """The file part of a decoded multipart body: the first ``size`` bytes of the spool file."""

    name: str
    filename: str
    headers: Headers
    size: int
    fileno: int  # the spool file's descriptor, open until the request is done
    fields: tuple[tuple[str, bytes], ...]  # the small non-file fields, in order


@dataclass
class _FilePart:
    """The file part being received: where its content starts in the raw body, its length."""

    name: str
    filename: str
    headers: Headers
    start: int
    size: int = 0
    done: bool = False


@dataclass
class _Decoding:
    """What the decoder has found so far in one body."""

    decoder: MultipartDecoder
    fed: int = 0  # raw bytes given to the decoder
    part: _FilePart | None = None
    in_file: bool = False  # the Data events now are the file's
    field_name: str | None = None  # the Data events now are this field's
    field_data: list[bytes] = field(default_factory=list)
    fields: list[tuple[str, bytes]] = field(default_factory=list)
    field_bytes: int = 0
    parts: int = 0
    complete: bool = False


class MultipartSpool:
    """waitress' body buffer for a multipart upload: decoded as it arrives, stored once.

    The raw body is ``head`` (memory) followed by the spool file; the file part's content
    starts at the spool file's first byte. Writes to the spool file may raise ``OSError``
    (a full disk): the front answers 507, as for any body.
    """

    def __init__(self, boundary: bytes, directory: Path | None) -> None:
        self.directory = directory
        self.head = bytearray()
        self.file: BufferedRandom | None = None
        self.size = 0
        self.decoding: _Decoding | None = _Decoding(MultipartDecoder(boundary))
        self.body: SpooledBody | None = None

    def __len__(self) -> int:
        return self.size

    def append(self, data: bytes) -> None:
        """Store a chunk of the body and decode it; start the spool file at the file's content."""
        self.size += len(data)
        if self.file is None:
            self.head += data
        else:
            self.file.write(data)
        start = self._decode(data)
        if start is not None:  # the file's content starts here: from it on, bytes go to disk
            self.file = unnamed_file(self.directory)
            self.file.write(self.head[start:])
            del self.head[start:]
        elif self.file is None and len(self.head) > HEAD_LIMIT:
            self.decoding = None  # no file part in sight: store the raw body as it comes
            self.file = unnamed_file(self.directory)
            self.file.write(self.head)
            self.head = bytearray()
        if self.file is not None:
            # Now, not when the request thread reads it: a full disk is then the front's 507.
            self.file.flush()

    def _decode(self, data: bytes | None) -> int | None:
        """Feed the decoder; return where the file's content starts once that is known.

        Anything the decoder refuses, or a body the decoded file cannot stand for, ends the
        decoding: the body is then only stored, and the app parses it as before.
        """
        decoding = self.decoding
        if decoding is None:
            return None
        try:
            return _feed(decoding, data, self.head if self.file is None else None)
        except Exception:  # any refusal: the raw body is whole, and the app decides
            self.decoding = None
            return None

    def upload(self) -> SpooledPart | None:
        """Finish decoding; return the file part when the whole body decoded as one upload."""
        decoding = self._finish()
        if decoding is None or self.file is None:
            return None
        part = decoding.part
        if part is None or not part.done:
            return None
        self.file.flush()
        if not _ends_at_delimiter(self.file.fileno(), part.size, decoding.decoder.boundary):
            return None
        return SpooledPart(
            part.name,
            part.filename,
            part.headers,
            part.size,
            self.file.fileno(),
            tuple(decoding.fields),
        )

    def _finish(self) -> _Decoding | None:
        """Tell the decoder the body has ended; return the decoding if it reached the end."""
        decoding = self.decoding
        if decoding is not None and not decoding.complete:
            self._decode(None)
            decoding = self.decoding
        if decoding is None or not decoding.complete:
            return None
        return decoding

    def getfile(self) -> SpooledBody:
        """Return the raw body to read from its start, carrying the decoded file part."""
        if self.body is None:
            if self.file is not None:
                self.file.flush()
            reader = _Spliced(bytes(self.head), self.file)
            self.body = SpooledBody(reader, self.upload())
        return self.body

    def close(self) -> None:
        """Close the spool file: unnamed, it is gone (unless the upload route named it)."""
        if self.file is not None:
            self.file.close()


def _feed(decoding: _Decoding, data: bytes | None, head: bytearray | None) -> int | None:
    """Feed one chunk (None: the end) and walk the decoder's events.

    ``head`` is the raw body so far while no spool file exists. Returns the raw offset of the
    file part's content when its part begins in this chunk.
    """
    decoder = decoding.decoder
    decoder.receive_data(data)
    if data is not None:
        decoding.fed += len(data)
    start = None
    while True:
        at = decoding.fed - len(decoder.buffer)  # the raw offset of the decoder's next byte
        state = decoder.state
        event = decoder.next_event()
        if isinstance(event, NeedData):
            if len(decoder.buffer) > HEAD_LIMIT:  # an epilogue, or a part head that never ends
                raise Unusual("the decoder would hold more than HEAD_LIMIT bytes in memory")
            return start
        if isinstance(event, File):
            start = _file_starts(decoding, event, head)
        elif isinstance(event, Field):
            _count_part(decoding)
            decoding.field_name = event.name
            decoding.field_data = []
        elif isinstance(event, Data):
            if decoding.in_file:
                _file_data(decoding, event, at, state, head)
            elif decoding.field_name is not None:
                _field_data(decoding, event)
        elif isinstance(event, Epilogue):
            decoding.complete = True
            return start


def _ends_at_delimiter(fd: int, size: int, boundary: bytes) -> bool:
    """Say whether the file's content, the spool file's first size bytes, ends where it should.

    It must be followed by a line end and the boundary, and not end in the CR of a CRLF
    before it: werkzeug's decoder (3.1.9), given a chunk that ends one dash into the closing
    boundary, takes that CR for content. Then the app parses the raw body, as before.
    """
    tail = os.pread(fd, len(boundary) + 5, max(0, size - 1))
    after = tail[1:] if size else tail
    if size and tail[:1] == b"\r" and after[:1] == b"\n":
        return False
    return re.match(rb"(?:\r\n|\n|\r)--" + re.escape(boundary), after) is not None


def _count_part(decoding: _Decoding) -> None:
    decoding.parts += 1
    if decoding.parts > PARTS_LIMIT:
        raise Unusual("too many parts")


def _file_starts(decoding: _Decoding, event: File, head: bytearray | None) -> int:
    """Note the file part; return the raw offset of its content (after the header's line end)."""
    _count_part(decoding)
    if decoding.part is not None or head is None:
        raise Unusual("a second file part")
    line_end = LINE_BREAK_RE.match(decoding.decoder.buffer)
    if line_end is None:
        raise Unusual("no line end after the part's headers")
    start = decoding.fed - len(decoding.decoder.buffer) + line_end.end()
    decoding.part = _FilePart(event.name, event.filename, event.headers, start)
    decoding.in_file = True
    decoding.field_name = None
    return start


def _file_data(
    decoding: _Decoding, event: Data, at: int, state: State, head: bytearray | None
) -> None:
    """Count the file's content, checking that it lies where the spool file says it does."""
    part = decoding.part
    assert part is not None
    if state == State.DATA_START:  # the first Data: checked against the raw bytes in memory
        if head is None or bytes(head[part.start : part.start + len(event.data)]) != event.data:
            raise Unusual("the file's content is not where it was expected")
    elif at != part.start + part.size:
        raise Unusual("the file's content is not contiguous")
    part.size += len(event.data)
    if not event.more_data:
        part.done = True
        decoding.in_file = False


def _field_data(decoding: _Decoding, event: Data) -> None:
    """Keep a small field's bytes; a big one is left to werkzeug's parser and its limits."""
    decoding.field_bytes += len(event.data)
    if decoding.field_bytes > FIELDS_LIMIT:
        raise Unusual("fields too large to keep in memory")
    decoding.field_data.append(event.data)
    if not event.more_data and decoding.field_name is not None:
        decoding.fields.append((decoding.field_name, b"".join(decoding.field_data)))
        decoding.field_name = None


class _Spliced(io.RawIOBase):
    """The raw body, read from the bytes in memory and then the spool file."""

    def __init__(self, head: bytes, file: BufferedRandom | None) -> None:
        super().__init__()
        self.head = head
        self.fd = file.fileno() if file is not None else None
        self.length = len(head) + (os.fstat(self.fd).st_size if self.fd is not None else 0)
        self.position = 0

    def readable(self) -> bool:
        """Say yes: the body is read from its start."""
        return True

    def seekable(self) -> bool:
        """Say yes: a parser may read the body again from its start."""
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Read the next bytes of the body into buffer; return how many (0 at its end)."""
        want = min(len(buffer), self.length - self.position)
        if want <= 0:
            return 0
        if self.position < len(self.head):
            data = self.head[self.position : self.position + want]
        else:
            assert self.fd is not None
            data = os.pread(self.fd, want, self.position - len(self.head))
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to offset from the start, the current position or the end."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self) -> int:
        """Return the position in the body."""
        return self.position


class SpooledBody(io.BufferedReader):
    """The request's ``wsgi.input`` for a multipart body: the raw body, and its decoded file.

    ``upload`` is the file part when the whole body decoded as one upload (the upload route
    names the spool file instead of parsing the body again), else None.
    """

    def __init__(self, raw: _Spliced, upload: SpooledPart | None) -> None:
        super().__init__(raw)
        self.upload = upload
