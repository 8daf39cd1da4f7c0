"""The Parquet lake: atomic writes, cheap schema checks, and reading a folder as one table.

A lake folder holds one Parquet file per accepted drop. Writers go through a dotted temporary in
the same folder and a link/rename, so no reader ever sees half a file; readers skip dotfiles.
Types drift between files (a column of whole numbers in one drop, decimals in the next), so the
folder's schema is the *unification* of its files' footers: integer widths → int64, int with
float → float64, null with anything → that thing. Text against numbers, timestamps or booleans
cannot be unified: a training file holding such a value is refused before it joins the lake
(``ingest.pipeline.normalize``, strict, against ``lake_schema``, which is kept in a schema record
beside the folder rather than read from every footer), ``lake_conflicts`` names the files when an
older version let one in, and ``read_lake`` reads such a column as text rather than failing, so one
stray file never makes the whole lake unreadable.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger("dropscore.ingest")

_TMP_SUFFIX = ".tmp"


# ---------------------------------------------------------------------------------------------
# Type unification


def type_kind(t: pa.DataType) -> str:
    """Classify a type coarsely, since unification (and a sample's inspection) works on kinds
    rather than exact types."""
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return "other"


_KIND_WORDS = {
    "null": "empty",
    "boolean": "true/false",
    "integer": "whole numbers",
    "float": "numbers",
    "timestamp": "dates",
    "string": "text",
    "other": "nested values",
}


def kind_words(t: pa.DataType) -> str:
    """Say what kind of values a type holds, in the words quarantine messages use."""
    return _KIND_WORDS[type_kind(t)]


def unify_types(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """Return the type both can be read as without loss of meaning, or None when they conflict."""
    if a.equals(b):
        return a
    ka, kb = type_kind(a), type_kind(b)
    if ka == "null":
        return b
    if kb == "null":
        return a
    if ka == kb == "integer":
        return pa.int64()
    if {ka, kb} <= {"integer", "float"}:
        return pa.float64()
    if ka == kb == "timestamp":
        return pa.timestamp("us")
    if ka == kb == "string":
        return pa.string()
    return None


def unify_schemas(schemas: Iterable[pa.Schema], prefer_typed: bool = False) -> pa.Schema | None:
    """Merge schemas by column name in order of first appearance; conflicts become text.

    With ``prefer_typed``, text against one other kind gives that kind instead: the view a new
    file is checked against, so a lake an older version poisoned with one text file does not
    refuse every clean drop after it (training still refuses the conflict, naming the files).
    """
    merged: dict[str, pa.DataType] = {}
    for schema in schemas:
        for field in schema:
            seen = merged.get(field.name)
            if seen is None:
                merged[field.name] = field.type
                continue
            both = unify_types(seen, field.type)
            if (
                both is None
                and prefer_typed
                and "string" in (type_kind(seen), type_kind(field.type))
            ):
                both = field.type if type_kind(seen) == "string" else seen
            merged[field.name] = both or pa.string()
    if not merged:
        return None
    return pa.schema([pa.field(name, t) for name, t in merged.items()])


# ---------------------------------------------------------------------------------------------
# Writing


def _temporary_for(dest: Path) -> Path:
    """Name a temporary beside dest: dotted so readers and the watcher skip it."""
    return dest.parent / f".{dest.name}.{secrets.token_hex(6)}{_TMP_SUFFIX}"


def _fsync_path(path: Path, directory: bool = False) -> None:
    """Flush a file or folder entry to disk so a crash after rename cannot lose it."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return  # some platforms cannot open folders; the rename is still atomic
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, dest: Path) -> None:
    """Move the finished temporary into place, refusing to replace an existing file."""
    try:
        os.link(tmp, dest)  # fails with FileExistsError if dest exists: no silent overwrite
    except FileExistsError:
        raise
    except OSError:
        if dest.exists():
            raise FileExistsError(f"{dest} already exists") from None
        os.rename(tmp, dest)  # filesystems without hard links
        return
    tmp.unlink()


def _parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """Open a writer that dictionary-encodes text columns only.

    Dictionary pages pay off for repeated text; on measured floats Arrow builds a dictionary,
    finds it useless and falls back, which made writing 3.8x slower and files 20% larger.
    """
    text = [
        f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    ]
    return pq.ParquetWriter(path, schema, use_dictionary=text)


class _WidenedWriter:
    """A ParquetWriter that can widen its schema mid-file by rewriting what it wrote so far.

    A streamed file's types are decided from its first batch; a later batch may need a wider
    type (ints then decimals, an empty column then text). Rewriting the temporary row group by
    row group keeps memory bounded and the finished file on one schema.
    """

    def __init__(self, dest: Path, schema: pa.Schema) -> None:
        self.dest = dest
        self.schema = schema
        self.path = _temporary_for(dest)
        self.writer: pq.ParquetWriter | None = _parquet_writer(self.path, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        """Append one batch, casting or widening so the file keeps one schema."""
        if not batch.schema.equals(self.schema):
            target = self._target_for(batch.schema)
            if not target.equals(self.schema):
                self._rewrite(target)
            batch = batch.cast(self.schema)
        assert self.writer is not None
        self.writer.write_batch(batch)

    def _target_for(self, schema: pa.Schema) -> pa.Schema:
        """Return the schema that holds both what was written and the incoming batch."""
        if schema.names != self.schema.names:
            raise ValueError(
                f"batch columns {schema.names} differ from the file's columns {self.schema.names}"
            )
        fields = []
        for old, new in zip(self.schema, schema, strict=True):
            fields.append(pa.field(old.name, unify_types(old.type, new.type) or pa.string()))
        return pa.schema(fields)

    def _rewrite(self, target: pa.Schema) -> None:
        """Copy the rows written so far into a new temporary under the wider schema."""
        assert self.writer is not None
        self.writer.close()
        self.writer = None
        old_path, self.path = self.path, _temporary_for(self.dest)
        try:
            writer = _parquet_writer(self.path, target)
            try:
                for batch in pq.ParquetFile(old_path).iter_batches():
                    writer.write_batch(batch.cast(target))
            except BaseException:
                writer.close()
                raise
        finally:
            old_path.unlink(missing_ok=True)
        self.writer = writer
        self.schema = target
        log.info("lake schema widened", extra={"file": self.dest.name})

    def close(self) -> None:
        """Finish the Parquet footer."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def discard(self) -> None:
        """Drop the temporary after a failure, whatever state the writer is in."""
        with contextlib.suppress(Exception):
            self.close()
        self.path.unlink(missing_ok=True)


def write_parquet_atomic(batches: Iterable[pa.RecordBatch], schema: pa.Schema, dest: Path) -> int:
    """Write batches to dest so that readers see the whole file or nothing; return rows.

    ``schema`` is the file's schema as known before the batches are consumed; a batch that
    needs a wider type (see ``unify_types``) widens the file instead of failing. Refuses to
    replace an existing ``dest`` (FileExistsError); the temporary is removed on any failure.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists")
    out = _WidenedWriter(dest, schema)
    rows = 0
    try:
        for batch in batches:
            out.write(batch)
            rows += batch.num_rows
        out.close()
        _fsync_path(out.path)
        _publish(out.path, dest)
        _fsync_path(dest.parent, directory=True)
    except BaseException:
        out.discard()
        raise
    log.info("lake file written", extra={"file": dest.name, "rows": rows})
    return rows


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporaries a crashed writer left behind, so they never pile up; return them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.glob(f".*{_TMP_SUFFIX}")):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# ---------------------------------------------------------------------------------------------
# Reading


def lake_files(folder: Path) -> list[Path]:
    """List the published lake files in a stable order, never temporaries."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(".") and p.is_file())


def _footer_schemas(files: Iterable[Path]) -> Iterator[pa.Schema]:
    """Yield each file's schema from its footer alone, which costs a few KB per file."""
    for path in files:
        yield pq.read_schema(path).remove_metadata()


# ---------------------------------------------------------------------------------------------
# The schema record: the lake's schema kept beside it, not recomputed from every footer


@dataclass(frozen=True)
class LakeConflict:
    """A column the lake's own files hold as different kinds (written by an older version)."""

    column: str
    files: dict[str, list[str]]  # kind in words -> lake file names holding it as that kind

    @property
    def message(self) -> str:
        """Say which files hold the column as which kind, so a person can remove the odd ones."""
        sides = "; ".join(f"{kind} in {_few(names)}" for kind, names in sorted(self.files.items()))
        return (
            f"column '{self.column}' holds different kinds of values in the lake's files: "
            f"{sides}; remove (or fix and drop again) the files whose values are wrong"
        )


def _few(names: list[str], limit: int = 5) -> str:
    """List a few file names, saying how many more there are."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def lake_conflicts(named: Iterable[tuple[str, pa.Schema]]) -> list[LakeConflict]:
    """Find the columns whose types in the named files cannot be unified, naming the files."""
    seen: dict[str, dict[str, list[str]]] = {}
    merged: dict[str, pa.DataType | None] = {}
    for name, schema in named:
        for field in schema:
            kinds = seen.setdefault(field.name, {})
            if type_kind(field.type) != "null":
                kinds.setdefault(kind_words(field.type), []).append(name)
            if field.name not in merged:
                merged[field.name] = field.type
            else:
                before = merged[field.name]
                merged[field.name] = None if before is None else unify_types(before, field.type)
    return [LakeConflict(c, seen[c]) for c, t in merged.items() if t is None]


def schema_record_path(folder: Path) -> Path:
    """Name the schema record of a lake folder: a dotfile beside it, never inside it."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.schema.json"


@dataclass
class _SchemaRecord:
    """Each published lake file's schema, stored once per distinct schema."""

    schemas: list[pa.Schema]
    files: dict[str, int]  # lake file name -> index into schemas

    def add(self, name: str, schema: pa.Schema) -> None:
        for i, known in enumerate(self.schemas):
            if known.equals(schema):
                self.files[name] = i
                return
        self.schemas.append(schema)
        self.files[name] = len(self.schemas) - 1

    def named(self) -> Iterator[tuple[str, pa.Schema]]:
        for name, i in self.files.items():
            yield name, self.schemas[i]

    def unified(self) -> pa.Schema | None:
        used = sorted(set(self.files.values()))
        return unify_schemas((self.schemas[i] for i in used), prefer_typed=True)

    def to_json(self) -> dict[str, object]:
        used = sorted(set(self.files.values()))
        renumber = {old: new for new, old in enumerate(used)}
        return {
            "version": 1,
            "schemas": [
                base64.b64encode(self.schemas[i].serialize().to_pybytes()).decode() for i in used
            ],
            "files": {name: renumber[i] for name, i in sorted(self.files.items())},
        }


def _load_record(folder: Path) -> _SchemaRecord:
    """Read the schema record; a missing or unreadable one is rebuilt from the footers."""
    try:
        body = json.loads(schema_record_path(folder).read_text(encoding="utf-8"))
        schemas = [pa.ipc.read_schema(pa.py_buffer(base64.b64decode(b))) for b in body["schemas"]]
        files = {str(n): int(i) for n, i in body["files"].items()}
        if body.get("version") != 1 or any(not 0 <= i < len(schemas) for i in files.values()):
            raise ValueError("unknown schema record")
        return _SchemaRecord(schemas, files)
    except FileNotFoundError:
        return _SchemaRecord([], {})
    except Exception as exc:  # any damage: the footers are the truth, read them again
        log.warning("lake schema record unreadable; rebuilding it", extra={"error": str(exc)})
        return _SchemaRecord([], {})


def _save_record(folder: Path, record: _SchemaRecord) -> None:
    """Replace the record atomically; failing to save only costs the next caller footer reads."""
    path = schema_record_path(folder)
    # Inside the folder, dotted: a crash's leftover goes with the lake's own temporaries.
    tmp = Path(folder) / f".{path.name.lstrip('.')}.{secrets.token_hex(6)}{_TMP_SUFFIX}"
    try:
        tmp.write_text(json.dumps(record.to_json(), separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning("lake schema record not saved", extra={"file": path.name, "error": str(exc)})


def _published(folder: Path) -> set[str]:
    """Name the published lake files from the directory listing alone (no stat, no footer)."""
    try:
        with os.scandir(folder) as entries:
            return {
                e.name
                for e in entries
                if e.name.endswith(".parquet") and not e.name.startswith(".") and e.is_file()
            }
    except FileNotFoundError:
        return set()


def _current_record(folder: Path) -> _SchemaRecord:
    """Load the record and bring it up to date with the listing, reading only new footers."""
    folder = Path(folder)
    record = _load_record(folder)
    names = _published(folder)
    gone = [n for n in record.files if n not in names]
    new = sorted(names.difference(record.files))
    if not gone and not new:
        return record
    for name in gone:
        del record.files[name]
    for name in new:
        try:
            record.add(name, pq.read_schema(folder / name).remove_metadata())
        except FileNotFoundError:  # removed between listing and reading
            continue
    for conflict in lake_conflicts(record.named()) if new else []:
        log.warning("lake type conflict", extra={"lake": folder.name, "error": conflict.message})
    _save_record(folder, record)
    return record


def lake_schema(folder: Path) -> pa.Schema | None:
    """Return the unified schema of the folder's lake files, or None when there are none.

    Kept in the folder's schema record (``schema_record_path``) rather than read from every
    footer: the record is checked against the directory listing, files removed since are
    dropped from it and only files it does not know have their footers read, so a drop into a
    lake of thousands of files costs what a drop into an empty one does. A column the lake's
    files hold as text in some and as another kind in others (an older version wrote them) is
    reported in the log and checked as that other kind, so clean drops keep being taken.
    """
    return _current_record(folder).unified()


def remember_lake_file(folder: Path, path: Path, schema: pa.Schema) -> None:
    """Add a just-published lake file to its folder's schema record (under the lake lock)."""
    record = _current_record(folder)
    if path.name not in record.files and path.exists():
        record.add(path.name, schema.remove_metadata())
        _save_record(folder, record)


def read_lake(folder: Path, columns: list[str] | None = None) -> pa.Table:
    """Read every lake file in folder as one table under the unified schema.

    Integer/float drift is unified, a column missing from some files comes back null there,
    and a column whose types cannot be reconciled (text in one file, numbers in another) is
    read as text everywhere rather than failing. An empty or missing folder gives a table with
    no columns and no rows. Unknown names in ``columns`` raise KeyError.
    """
    files = lake_files(folder)
    schema = unify_schemas(_footer_schemas(files))
    if schema is None:
        return pa.table({})
    if columns is not None:
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise KeyError(f"no such lake column(s): {', '.join(missing)}")
    import pyarrow.dataset as ds  # here, not at import: it imports pandas (~0.4 s at start-up)

    dataset = ds.dataset([str(p) for p in files], schema=schema, format="parquet")
    return dataset.to_table(columns=columns)
