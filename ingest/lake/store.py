"""The Parquet lake: the one reader and writer of lake files, through a ``pyarrow.fs`` filesystem.

A lake folder holds one Parquet file per accepted drop. ``Lake`` is that folder on a
``pyarrow.fs.FileSystem`` (the local disk today, ``Lake.local``; an object store or any other
filesystem can stand where it stands), and everything that reads, lists, writes or deletes lake
files goes through it: the intake's lake file (``ingest.lake.lakefile``), the retrain's reading
(``scoring.lifecycle.dataset``) and the training contract's schema check. Writers go through a
dotted temporary in the same folder and a link/rename (``ingest.base.atomic`` on the local
disk), so no reader ever sees half a file; readers skip dotfiles.
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
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ingest.base import atomic

log = logging.getLogger("dropscore.ingest")


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
# The lake folder on a filesystem


@dataclass(frozen=True)
class Footer:
    """A lake file's footer facts, read without loading its rows."""

    schema: pa.Schema
    rows: int


class Lake:
    """One lake folder (a kind's Parquet files) on a ``pyarrow.fs`` filesystem.

    Names are file names inside the folder, never paths a caller builds, so the same code runs
    on the local disk and on a filesystem that is not one (``pyarrow.fs.SubTreeFileSystem``
    over a folder stands in for an object store in the tests).
    """

    def __init__(self, fs: pafs.FileSystem, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")

    @classmethod
    def local(cls, folder: Path) -> Lake:
        """Open a lake folder on the local disk (the only kind of lake today)."""
        return cls(pafs.LocalFileSystem(), str(Path(folder).absolute()))

    @classmethod
    def of(cls, where: Lake | Path) -> Lake:
        """Take a Lake as it is, or open a local folder as one (callers that hold a path)."""
        return where if isinstance(where, Lake) else cls.local(where)

    def path(self, name: str) -> str:
        """Return the filesystem path of a file in this folder."""
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"not a lake file name: {name!r}")
        return f"{self.root}/{name}" if self.root else name

    @property
    def _local_root(self) -> Path | None:
        """The folder as a local path when the filesystem is the local disk, else None."""
        return Path(self.root) if isinstance(self.fs, pafs.LocalFileSystem) else None

    # -- listing -------------------------------------------------------------------------

    def _entries(self) -> list[pafs.FileInfo]:
        """List the folder's entries; a missing folder holds nothing."""
        selector = pafs.FileSelector(self.root, allow_not_found=True)
        try:
            return list(self.fs.get_file_info(selector))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def names(self) -> list[str]:
        """List the published lake files by name, in a stable order, never temporaries."""
        return sorted(
            e.base_name
            for e in self._entries()
            if e.type == pafs.FileType.File
            and e.base_name.endswith(".parquet")
            and not e.base_name.startswith(".")
        )

    def sizes(self) -> dict[str, int]:
        """Give each published lake file's size in bytes, by name (for a bounded folder)."""
        return {
            e.base_name: int(e.size or 0)
            for e in self._entries()
            if e.type == pafs.FileType.File
            and e.base_name.endswith(".parquet")
            and not e.base_name.startswith(".")
        }

    def exists(self, name: str) -> bool:
        """Tell whether a file of this name is in the folder."""
        return bool(self.fs.get_file_info(self.path(name)).type == pafs.FileType.File)

    # -- writing -------------------------------------------------------------------------

    def write(self, name: str, batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> int:
        """Write batches as ``name`` so that readers see the whole file or nothing; return rows.

        ``schema`` is the file's schema as known before the batches are consumed; a batch that
        needs a wider type (see ``unify_types``) widens the file instead of failing. Refuses to
        replace an existing file (FileExistsError); the temporary is removed on any failure.
        """
        if self.exists(name):
            raise FileExistsError(f"{self.path(name)} already exists")
        out = _WidenedWriter(self, name, schema)
        rows = 0
        try:
            for batch in batches:
                out.write(batch)
                rows += batch.num_rows
            out.close()
            self._publish(out.path, name, replace=False)
        except BaseException:
            out.discard()
            raise
        log.info("lake file written", extra={"file": name, "rows": rows})
        return rows

    def _temporary(self, name: str) -> str:
        """Name a temporary for ``name`` in this folder, in the atomic module's one form."""
        return self.path(atomic.temporary_for(Path(name)).name)

    def _publish(self, tmp: str, dest: str | None, *, replace: bool, to: str | None = None) -> None:
        """Move a finished temporary to a file of this folder (or to the path ``to``)."""
        _publish(self.fs, tmp, to if to is not None else self.path(str(dest)), replace=replace)

    def delete(self, name: str) -> None:
        """Remove a lake file; one already gone is not an error."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path(name))

    def remove_temporaries(self) -> list[str]:
        """Delete temporaries a crashed writer left behind, so they never pile up; name them."""
        local = self._local_root
        if local is not None:
            return [p.name for p in atomic.remove_temporaries(local)]
        removed = []
        for entry in self._entries():
            if entry.type == pafs.FileType.File and atomic.is_temporary(entry.base_name):
                with contextlib.suppress(FileNotFoundError):
                    self.fs.delete_file(entry.path)
                removed.append(entry.base_name)
        return sorted(removed)

    # -- reading -------------------------------------------------------------------------

    def footer(self, name: str) -> Footer:
        """Read a file's schema and row count from its footer (a few KB); FileNotFoundError
        when it was removed meanwhile."""
        with self.fs.open_input_file(self.path(name)) as source:
            meta = pq.ParquetFile(source).metadata
            return Footer(meta.schema.to_arrow_schema().remove_metadata(), meta.num_rows)

    def schema(self, name: str) -> pa.Schema:
        """Read a file's schema from its footer, metadata removed."""
        return self.footer(name).schema

    def batches(
        self, name: str, columns: Iterable[str] | None = None, batch_rows: int = 65_536
    ) -> Iterator[pa.RecordBatch]:
        """Stream one file's columns in order, a bounded batch at a time."""
        wanted = None if columns is None else list(columns)
        with (
            self.fs.open_input_file(self.path(name)) as source,
            pq.ParquetFile(source) as reader,
        ):
            yield from reader.iter_batches(batch_size=batch_rows, columns=wanted)

    def first_group(self, name: str, columns: Iterable[str]) -> pa.Table:
        """Read the first row group's columns: a cheap look at what a file was written for."""
        with self.fs.open_input_file(self.path(name)) as source:
            return pq.ParquetFile(source).read_row_group(0, columns=list(columns))

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """Read every lake file as one table under the unified schema.

        Integer/float drift is unified, a column missing from some files comes back null there,
        and a column whose types cannot be reconciled (text in one file, numbers in another) is
        read as text everywhere rather than failing. An empty or missing folder gives a table
        with no columns and no rows. Unknown names in ``columns`` raise KeyError.
        """
        names = self.names()
        schema = unify_schemas(self.schema(n) for n in names)
        if schema is None:
            return pa.table({})
        if columns is not None:
            missing = [c for c in columns if c not in schema.names]
            if missing:
                raise KeyError(f"no such lake column(s): {', '.join(missing)}")
        import pyarrow.dataset as ds  # here, not at import: it imports pandas (~0.4 s at start-up)

        paths = [self.path(n) for n in names]
        dataset = ds.dataset(paths, schema=schema, format="parquet", filesystem=self.fs)
        return dataset.to_table(columns=columns)

    # -- the schema record ---------------------------------------------------------------

    def record_path(self) -> str:
        """Name the schema record: a dotfile beside the folder, never inside it."""
        parent, base = posixpath.split(self.root)
        name = f".{base or 'lake'}.schema.json"
        return posixpath.join(parent, name) if parent else name

    def unified_schema(self) -> pa.Schema | None:
        """Return the unified schema of the folder's lake files, or None when there are none.

        Kept in the folder's schema record (``record_path``) rather than read from every
        footer: the record is checked against the directory listing, files removed since are
        dropped from it and only files it does not know have their footers read, so a drop into
        a lake of thousands of files costs what a drop into an empty one does. A column the
        lake's files hold as text in some and as another kind in others (an older version wrote
        them) is reported in the log and checked as that other kind, so clean drops keep being
        taken.
        """
        return self._current_record().unified()

    def remember(self, name: str, schema: pa.Schema) -> None:
        """Add a just-published lake file to the schema record (under the lake lock)."""
        record = self._current_record()
        if name not in record.files and self.exists(name):
            record.add(name, schema.remove_metadata())
            self._save_record(record)

    def _load_record(self) -> _SchemaRecord:
        """Read the schema record; a missing or unreadable one is rebuilt from the footers."""
        try:
            with self.fs.open_input_stream(self.record_path()) as source:
                body = json.loads(source.read().decode("utf-8"))
            schemas = [
                pa.ipc.read_schema(pa.py_buffer(base64.b64decode(b))) for b in body["schemas"]
            ]
            files = {str(n): int(i) for n, i in body["files"].items()}
            if body.get("version") != 1 or any(not 0 <= i < len(schemas) for i in files.values()):
                raise ValueError("unknown schema record")
            return _SchemaRecord(schemas, files)
        except FileNotFoundError:
            return _SchemaRecord([], {})
        except Exception as exc:  # any damage: the footers are the truth, read them again
            log.warning("lake schema record unreadable; rebuilding it", extra={"error": str(exc)})
            return _SchemaRecord([], {})

    def _save_record(self, record: _SchemaRecord) -> None:
        """Replace the record atomically; failing to save only costs the next caller footers."""
        target = self.record_path()
        # Inside the folder, dotted: a crash's leftover goes with the lake's own temporaries.
        tmp = self._temporary(posixpath.basename(target).lstrip("."))
        body = json.dumps(record.to_json(), separators=(",", ":")).encode("utf-8")
        try:
            with self.fs.open_output_stream(tmp) as sink:
                sink.write(body)
            self._publish(tmp, None, replace=True, to=target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)
            log.warning("lake schema record not saved", extra={"file": target, "error": str(exc)})

    def _current_record(self) -> _SchemaRecord:
        """Load the record and bring it up to date with the listing, reading only new footers."""
        record = self._load_record()
        names = set(self.names())
        gone = [n for n in record.files if n not in names]
        new = sorted(names.difference(record.files))
        if not gone and not new:
            return record
        for name in gone:
            del record.files[name]
        for name in new:
            try:
                record.add(name, self.schema(name))
            except FileNotFoundError:  # removed between listing and reading
                continue
        for conflict in lake_conflicts(record.named()) if new else []:
            log.warning(
                "lake type conflict",
                extra={"lake": posixpath.basename(self.root), "error": conflict.message},
            )
        self._save_record(record)
        return record


def _publish(fs: pafs.FileSystem, tmp: str, target: str, *, replace: bool) -> None:
    """Move a finished temporary to ``target`` on ``fs``: the one step that publishes.

    On the local disk this is ``ingest.base.atomic``: flushed, linked or renamed, folder
    flushed. Elsewhere the filesystem's own move, after checking an existing file is not to
    be replaced (an object store publishes an object whole or not at all).
    """
    if isinstance(fs, pafs.LocalFileSystem):
        atomic.fsync_file(Path(tmp))
        atomic.publish(Path(tmp), Path(target), replace=replace)
        return
    if not replace and fs.get_file_info(target).type != pafs.FileType.NotFound:
        raise FileExistsError(f"{target} already exists")
    fs.move(tmp, target)


def _parquet_writer(lake: Lake, path: str, schema: pa.Schema) -> pq.ParquetWriter:
    """Open a writer that dictionary-encodes text columns only.

    Dictionary pages pay off for repeated text; on measured floats Arrow builds a dictionary,
    finds it useless and falls back, which made writing 3.8x slower and files 20% larger.
    """
    text = [
        f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    ]
    return pq.ParquetWriter(path, schema, filesystem=lake.fs, use_dictionary=text)


class _WidenedWriter:
    """A ParquetWriter that can widen its schema mid-file by rewriting what it wrote so far.

    A streamed file's types are decided from its first batch; a later batch may need a wider
    type (ints then decimals, an empty column then text). Rewriting the temporary row group by
    row group keeps memory bounded and the finished file on one schema.
    """

    def __init__(self, lake: Lake, name: str, schema: pa.Schema) -> None:
        self.lake = lake
        self.name = name
        self.schema = schema
        self.path = lake._temporary(name)
        self.writer: pq.ParquetWriter | None = _parquet_writer(lake, self.path, schema)

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
        fs = self.lake.fs
        old_path, self.path = self.path, self.lake._temporary(self.name)
        try:
            writer = _parquet_writer(self.lake, self.path, target)
            try:
                with fs.open_input_file(old_path) as source:
                    for batch in pq.ParquetFile(source).iter_batches():
                        writer.write_batch(batch.cast(target))
            except BaseException:
                writer.close()
                raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                fs.delete_file(old_path)
        self.writer = writer
        self.schema = target
        log.info("lake schema widened", extra={"file": self.name})

    def close(self) -> None:
        """Finish the Parquet footer."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def discard(self) -> None:
        """Drop the temporary after a failure, whatever state the writer is in."""
        with contextlib.suppress(Exception):
            self.close()
        with contextlib.suppress(FileNotFoundError):
            self.lake.fs.delete_file(self.path)


# ---------------------------------------------------------------------------------------------
# Conflicts and the schema record's shape


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


# ---------------------------------------------------------------------------------------------
# Local-folder entry points, for callers that hold a path (the lake folder on the local disk)


def write_parquet_atomic(batches: Iterable[pa.RecordBatch], schema: pa.Schema, dest: Path) -> int:
    """Write batches to dest so that readers see the whole file or nothing; return rows.

    The lake's writer (``Lake.write``) on the local folder holding ``dest``; the scored-output
    writers use it too, so a Parquet output widens and publishes as a lake file does.
    """
    dest = Path(dest)
    return Lake.local(dest.parent).write(dest.name, batches, schema)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporaries a crashed writer left behind, so they never pile up; return them."""
    folder = Path(folder)
    return [folder / name for name in Lake.local(folder).remove_temporaries()]


def lake_files(folder: Path) -> list[Path]:
    """List the published lake files of a local folder in a stable order, never temporaries."""
    folder = Path(folder)
    return [folder / name for name in Lake.local(folder).names()]


def schema_record_path(folder: Path) -> Path:
    """Name the schema record of a lake folder: a dotfile beside it, never inside it."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.schema.json"


def lake_schema(folder: Path) -> pa.Schema | None:
    """Return the unified schema of a local folder's lake files (``Lake.unified_schema``)."""
    return Lake.local(folder).unified_schema()


def remember_lake_file(folder: Path, path: Path, schema: pa.Schema) -> None:
    """Add a just-published lake file to its folder's schema record (under the lake lock)."""
    Lake.local(folder).remember(Path(path).name, schema)


def read_lake(folder: Path, columns: list[str] | None = None) -> pa.Table:
    """Read every lake file in a local folder as one table (``Lake.read``)."""
    return Lake.local(folder).read(columns)
