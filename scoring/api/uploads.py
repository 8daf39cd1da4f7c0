"""Receive an upload onto disk once: multipart parts are written straight into our spool folder.

werkzeug's own form parsing spools every file part to a temporary file of its own (in ``/tmp``,
which may be memory) and the view then copied it into the data folder: each byte written twice.
Behind the front (``serve``, ``api``) a large body is already on the data folder's disk, in an
unnamed file: a raw body's file, or a multipart body's file part (decoded as it arrived,
``scoring.service.multipart``), is given a name here, not copied. Elsewhere the parser's
``stream_factory`` opens the part's file in the request's work folder, so the bytes land once,
where they are scored; a raw body is copied from the socket the same way. The body limits of
``scoring.api.limits`` still apply (the request's stream is the limited one).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from flask import Request
from werkzeug.datastructures import FileStorage
from werkzeug.formparser import FormDataParser

from ingest.base.errors import UnsupportedFormatError, disk_full
from ingest.base.formats import ACCEPTED, file_suffix, format_for_content_type, format_for_name
from scoring.errors import BadRequest, InsufficientStorage, UnsupportedMediaType
from scoring.service.multipart import SpooledPart

CHUNK = 1024 * 1024
FIELD = "file"  # the multipart field that holds the file


class PartFiles:
    """A werkzeug ``stream_factory`` that writes each file part to ``<folder>/part-<n>``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.opened: list[IO[bytes]] = []

    def __call__(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        """Open the next part's file in the spool folder (werkzeug writes the part into it)."""
        fh = open(self.folder / f"part-{len(self.opened) + 1}", "w+b")  # noqa: SIM115
        self.opened.append(fh)
        return fh

    def close(self) -> None:
        """Close every part's file (the folder, and so the files, are the caller's to remove)."""
        for fh in self.opened:
            fh.close()


def receive_upload(request: Request, folder: Path) -> Path:
    """Write the request's file into folder once and return its path, named by us."""
    with _disk_full_is_507():
        if request.mimetype == "multipart/form-data":
            return _receive_multipart(request, folder)
        return _receive_body(request, folder)


def _receive_multipart(request: Request, folder: Path) -> Path:
    """Take the front's decoded file part, or parse the multipart body; keep field 'file'."""
    spooled = getattr(request.environ.get("wsgi.input"), "upload", None)
    if isinstance(spooled, SpooledPart):
        return _name_spooled_part(spooled, folder)
    parts = PartFiles(folder)
    parser = FormDataParser(
        stream_factory=parts,
        max_form_memory_size=request.max_form_memory_size,
        max_content_length=request.max_content_length,
        max_form_parts=request.max_form_parts,
        cls=request.parameter_storage_class,
    )
    try:
        _, _form, files = parser.parse(
            request.stream, request.mimetype, request.content_length, request.mimetype_params
        )
    finally:
        parts.close()
    upload = files.get(FIELD)
    if upload is None:
        raise BadRequest(f"send the file in the multipart field {FIELD!r}")
    path = _upload_path(upload, folder)
    os.replace(upload.stream.name, path)  # the part's own file: renamed, not copied
    return _non_empty(path)


def _upload_path(upload: FileStorage, folder: Path) -> Path:
    """Name the upload by its file name's suffix, else by its part's content type."""
    suffix = suffix_of(upload.filename or "") or suffix_for_type(upload.mimetype)
    return folder / f"upload{_known(suffix)}"


def _name_spooled_part(spooled: SpooledPart, folder: Path) -> Path:
    """Give the front's spool file, whose first bytes are the file part, our name; cut the rest.

    The front (``scoring.service.multipart``) decoded the body as it arrived and wrote it once,
    from the file's first byte on; what follows the file there (the closing boundary) is cut
    off. The body held this one file part: werkzeug's parser would have found the same.
    """
    if spooled.name != FIELD:
        raise BadRequest(f"send the file in the multipart field {FIELD!r}")
    upload = FileStorage(None, spooled.filename, spooled.name, headers=spooled.headers)
    path = _upload_path(upload, folder)
    if _link_fd(spooled.fileno, path):
        os.truncate(path, spooled.size)
    else:  # no O_TMPFILE or no /proc: copy the file's bytes
        with open(path, "wb") as fh:
            _copy_range(spooled.fileno, fh, spooled.size)
    return _non_empty(path)


def _copy_range(fd: int, out: IO[bytes], size: int) -> None:
    """Copy the first size bytes of the file open as fd into out."""
    done = 0
    while done < size:
        data = os.pread(fd, min(CHUNK, size - done), done)
        if not data:
            break
        out.write(data)
        done += len(data)


def _receive_body(request: Request, folder: Path) -> Path:
    """Take a raw body (its type announced by Content-Type) into folder: named, or copied."""
    path = folder / f"upload{_known(suffix_for_type(request.mimetype))}"
    if not _name_buffered_body(request, path):
        with open(path, "wb") as fh:
            shutil.copyfileobj(request.stream, fh, CHUNK)
    return _non_empty(path)


def _name_buffered_body(request: Request, path: Path) -> bool:
    """Give the front's buffer file of this body the name ``path``; say whether it could.

    The front (``scoring.service.front``) buffers a large body in an unnamed file on the data
    folder's disk before the app runs; linking that file here writes no byte again, where a
    copy wrote the whole upload twice. Only an unread body held whole in a real file qualifies
    (linked through ``/proc/self/fd``, Linux's way to name an ``O_TMPFILE`` file); any other
    stream, or any failure (another file system, no ``/proc``), is copied as before.
    """
    body = request.environ.get("wsgi.input")
    size = request.content_length
    if body is None or not size or not hasattr(body, "fileno"):
        return False
    try:
        body.flush()  # the front wrote it through a buffered file object
        fd = body.fileno()
        if body.tell() != 0 or os.fstat(fd).st_size != size:
            return False
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is an OSError
        return False
    return _link_fd(fd, path)


def _link_fd(fd: int, path: Path) -> bool:
    """Give the open (unnamed) file fd the name path; say whether it could."""
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:  # given a folder descriptor, os.link is linkat(AT_SYMLINK_FOLLOW): the file itself
            os.link(f"/proc/self/fd/{fd}", path.name, dst_dir_fd=folder)
        finally:
            os.close(folder)
    except OSError:
        return False
    return True


def _known(suffix: str | None) -> str:
    """Return the suffix, or refuse the upload with the list of every accepted suffix."""
    if suffix is None:
        raise UnsupportedMediaType(
            f"unsupported file type; send one of: {ACCEPTED}"
            " (by file name in a multipart upload, or by Content-Type for a raw body)"
        )
    return suffix


def _non_empty(path: Path) -> Path:
    if path.stat().st_size == 0:
        raise BadRequest("the uploaded file is empty")
    return path


@contextmanager
def _disk_full_is_507() -> Iterator[None]:
    """Turn a full disk while the upload is written into a 507 the client can act on."""
    try:
        yield
    except OSError as exc:
        if not disk_full(exc):
            raise
        raise InsufficientStorage(
            f"the server could not store the upload ({exc.strerror}); retry later, or send it"
            " to another replica"
        ) from None


def suffix_of(filename: str) -> str | None:
    """Return our own suffix for an accepted upload name (never the name itself), or None."""
    try:
        fmt, gzipped = format_for_name(filename)
    except UnsupportedFormatError:
        return None
    return file_suffix(fmt, gzipped)


def suffix_for_type(content_type: str | None) -> str | None:
    """Return the suffix for a body announced by its content type, or None when unknown."""
    fmt = format_for_content_type(content_type or "")
    return file_suffix(fmt) if fmt is not None else None
