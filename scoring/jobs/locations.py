"""Where a batch job may read and write: the model's own lake and outbox, or the bucket.

A job names its input and output as a client sends them, so nothing it sends is taken as a
path as it stands (no user-supplied names as paths): a name is ``lake/<kind>/<file>`` or
``outbox/<file>`` inside the model's own data (on disk, or under ``[storage] url`` when that is
a bucket), checked segment by segment and, on disk, resolved and checked to stay inside; a URI
is ``s3://…`` under ``[storage] url`` and nothing else. The output goes to the outbox or the
bucket, never into the lake, and its name's suffix is the output format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ingest.base.formats import OUTPUT_FORMATS, output_spec
from ingest.lake.remote import is_s3, split_s3
from scoring.errors import ValidationFailed
from scoring.settings import Settings

MAX_NAME = 1024
INPUT_ROOTS = ("lake/train", "lake/score", "outbox")
OUTPUT_ROOTS = ("outbox",)


@dataclass(frozen=True)
class Target:
    """A job's input or output made concrete: a local path or an ``s3://`` URI, and its words."""

    location: str  # what the engines open: an absolute local path, or s3://bucket/key
    shown: str  # as the client named it


def resolve_input(settings: Settings, name: object) -> Target:
    """Check a job's input name and say where it is; a 422 naming the rule otherwise."""
    return _resolve(settings, name, "input", INPUT_ROOTS)


def resolve_output(settings: Settings, name: object) -> tuple[Target, str]:
    """Check a job's output name and say where it goes and in which format."""
    target = _resolve(settings, name, "output", OUTPUT_ROOTS)
    return target, output_format(target.shown)


def output_format(name: str) -> str:
    """Tell the output format from a name's suffix; a 422 listing the suffixes otherwise."""
    lowered = name.lower()
    for fmt in OUTPUT_FORMATS:
        if any(lowered.endswith(suffix) for suffix in output_spec(fmt).suffixes):
            return fmt
    suffixes = [output_spec(fmt).suffixes[0] for fmt in OUTPUT_FORMATS]
    raise _refused("output", f"the output's name must end in one of {', '.join(suffixes)}")


def _resolve(settings: Settings, name: object, field: str, roots: tuple[str, ...]) -> Target:
    if not isinstance(name, str) or not name:
        raise _refused(field, f"{field} must be a non-empty string")
    if len(name) > MAX_NAME or "\\" in name or "\x00" in name:
        raise _refused(field, f"{field} must be at most {MAX_NAME} characters, without \\ or NUL")
    if is_s3(name):
        return Target(_in_bucket(settings, name, field), name)
    parts = PurePosixPath(name).parts
    root = next((r for r in roots if parts[: len(r.split("/"))] == tuple(r.split("/"))), None)
    rest = parts[len(root.split("/")) :] if root else ()
    if name.startswith("/") or root is None or not rest:
        allowed = " or ".join(f"{r}/<file>" for r in roots)
        raise _refused(field, f"{field} must be {allowed} (of this model), or an s3:// URI"
                       " under [storage] url")  # fmt: skip
    if any(p in ("", ".", "..") or p.startswith(".") for p in rest):
        raise _refused(field, f"{field} may not hold '.', '..' or hidden (dotted) names")
    return Target(_in_model(settings, root, rest, field), name)


def _in_model(settings: Settings, root: str, rest: tuple[str, ...], field: str) -> str:
    """Place a checked name in the model's data: on disk (kept inside), or under the bucket."""
    layout = settings.layout
    folder = layout.outbox if root == "outbox" else layout.lake(root.split("/")[1])
    if settings.storage.url:  # the model's data lives in the bucket, in the same layout
        from scoring.storage import storage_root

        relative = folder.relative_to(settings.data_dir)
        return storage_root(settings).uri(*relative.parts, *rest)
    base = folder.resolve()
    path = base.joinpath(*rest).resolve()
    if not path.is_relative_to(base):  # a link pointing out of the folder
        raise _refused(field, f"{field} leads out of the model's {root} folder")
    return str(path)


def _in_bucket(settings: Settings, uri: str, field: str) -> str:
    """Accept an ``s3://`` URI only under ``[storage] url`` (an object, no '..')."""
    prefix = settings.storage.url.rstrip("/")
    if not prefix:
        raise _refused(field, "s3:// paths need [storage] url; this server keeps files on disk")
    try:
        bucket, key = split_s3(uri)
    except ValueError as exc:
        raise _refused(field, str(exc)) from None
    if not key or not f"s3://{bucket}/{key}".startswith(prefix + "/"):
        raise _refused(field, f"{field} must be an object under {prefix}/")
    return f"s3://{bucket}/{key}"


def _refused(field: str, message: str) -> ValidationFailed:
    details: list[dict[str, Any]] = [{"field": field, "problem": message}]
    return ValidationFailed(message, details)

