"""CSV read by the Dask workers in byte ranges: the local engine's output, bit for bit.

The splitter is pure (bytes in, ranges out) and property-tested. On the session's real cluster
(``tests/_dask.py``) a CSV of ~9 MiB (three ranges of one 4 MiB reader chunk each) with whole
numbers, decimals, text, empty cells, CRLF line ends, no final line end, a range boundary on a
line feed, one between ``\\r`` and ``\\n``, and columns that turn to text mid-file is scored
from disk and from the moto bucket; a Parquet file over the ingest limits is refused with the
local reader's words.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.base.config import ReadOptions
from ingest.readers.csv_chunks import CHUNK_BYTES
from scoring.bulk import csv_parts
from scoring.bulk.batch import score_path
from scoring.bulk.ranges import line_ranges
from scoring.bulk.remote import score_remote
from scoring.bulk.worker_models import model_ref
from scoring.errors import ValidationFailed
from scoring.lifecycle.champion import load_version

distributed = pytest.importorskip("distributed")

BATCH_ROWS = 8_000  # stage_rows: 4,000 rows a batch, about two 1 MiB blocks merged
FEATURES = ("AGE", "SEX", "BMI", "BP", "S1", "S2", "S3", "S4", "S5", "S6")


# -- the splitter ----------------------------------------------------------------------------

line_lists = st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=40)


@settings(max_examples=100, deadline=None)
@given(line_lists, st.sampled_from([b"\n", b"\r\n"]), st.booleans(), st.integers(1, 64))
def test_every_line_is_in_exactly_one_range(rows, end, final, size):
    data = end.join(rows) + (end if final and rows else b"")
    ranges = line_ranges(data, size)
    assert b"".join(data[a:b] for a, b in ranges) == data  # in order, no gap, no overlap
    assert all(b > a for a, b in ranges)
    assert all(data[b - 1 : b] == b"\n" for _, b in ranges[:-1])  # cut only after a line feed
    for a, _ in ranges:  # a range starts at the start of a line
        assert a == 0 or data[a - 1 : a] == b"\n"
    # each start is just after the last line feed before a multiple of the size
    for a, _ in ranges[1:]:
        assert b"\n" not in data[a : -(-a // size) * size]


def test_a_boundary_on_a_line_feed_starts_the_next_line():
    data = b"ab\ncd\nef\n"
    assert line_ranges(data, 3) == [(0, 3), (3, 6), (6, 9)]  # byte 2 and 5 are line feeds
    assert line_ranges(data, 4) == [(0, 3), (3, 6), (6, 9)]
    assert line_ranges(b"abcdefgh\nij", 2) == [(0, 9), (9, 11)]  # a long line: empties dropped


# -- on the cluster --------------------------------------------------------------------------


def _rows(n: int) -> Iterator[list[str]]:
    rng = np.random.default_rng(7)
    for i in range(n):
        values = [f"{v:.9f}" for v in rng.normal(scale=0.05, size=len(FEATURES))]
        values[0] = str(int(rng.integers(20, 80)))  # AGE: whole numbers, until row 16,000
        if i == 16_000:
            values[0] = "41.5"
        if i % 7 == 3:
            values[4] = ""  # S1 empty
        if i == 16_500:
            values[2] = "n/a?"  # BMI turns to text in the third range
        note = "" if i % 11 == 5 else f"note {i} " + "x" * (400 + i % 50)
        extra = "z" if i == 9_000 else ""  # empty until the second range, then text
        yield [str(i), *values, note, extra]


def _csv(path: Path, n: int = 17_000) -> Path:
    """Write the CSV, with a line feed at the last byte of the first chunk window exactly."""
    header = "ID," + ",".join(FEATURES) + ",NOTE,EXTRA"
    lines = [",".join(row) for row in _rows(n)]
    text = "\r\n".join([header, *lines])  # no line end after the last line
    data = text.encode()
    for target in (CHUNK_BYTES - 1, 2 * CHUNK_BYTES):  # '\n' on the edge; '\r' on the edge
        line = data.rfind(b"\n", 0, target)  # the line before the edge: pad its NOTE
        number = data.count(b"\n", 0, line)  # lines[number - 1] ends there
        pad = target - line
        row = lines[number - 1].split(",")
        row[-2] += "y" * pad
        lines[number - 1] = ",".join(row)
        data = "\r\n".join([header, *lines]).encode()
    assert data[CHUNK_BYTES - 1 : CHUNK_BYTES] == b"\n"
    assert data[2 * CHUNK_BYTES - 1 : 2 * CHUNK_BYTES + 1] == b"\r\n"
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    return _csv(tmp_path_factory.mktemp("csv") / "in.csv")


@pytest.fixture
def client(dask_address, monkeypatch) -> Iterator[distributed.Client]:
    monkeypatch.setattr(csv_parts, "CHUNKS_PER_RANGE", 1)  # three ranges of a 9 MiB file
    with distributed.Client(dask_address, set_as_default=False) as client:
        yield client


@pytest.mark.parametrize("where", ["disk", "s3"])
def test_csv_read_by_the_workers_is_the_local_output(
    tmp_path, client, registry, trained, big_csv, where, s3, monkeypatch
):
    from distributed import get_task_stream

    from scoring.bulk.filesystems import Store
    from scoring.testing.moto import CREDENTIALS

    store, src = Store(), str(big_csv)
    out = {"parquet": str(tmp_path / "out" / "r.parquet"), "csv": str(tmp_path / "out" / "r.csv")}
    if where == "s3":
        for key, value in CREDENTIALS.items():
            monkeypatch.setenv(key, value)
        prefix = s3.url(s3.fresh_prefix("csv"))
        store = Store(s3.endpoint, "us-east-1")
        fs, path = store.open(f"{prefix}/in.csv")
        with fs.open_output_stream(path) as sink:
            sink.write(big_csv.read_bytes())
        src = f"{prefix}/in.csv"
        out = {fmt: f"{prefix}/out/r.{fmt}" for fmt in out}
    model = load_version(registry, trained)
    ref = model_ref("default", registry, trained)
    for fmt, dst in out.items():
        local = tmp_path / f"local.{fmt}"
        a = score_path(big_csv, local, model, read=ReadOptions(batch_rows=BATCH_ROWS), fmt=fmt)
        with get_task_stream(client) as tasks:
            b = score_remote(client, src, dst, ref, batch_rows=BATCH_ROWS, fmt=fmt, store=store)
        ran = [t["key"].split("-")[0] for t in tasks.data]
        assert ran.count("parse_range") >= 3, ran  # three ranges (one parsed again: BMI turned)
        assert (a.rows_scored, a.rows_failed) == (b.rows_scored, b.rows_failed)
        fs, path = store.open(dst)
        with fs.open_input_file(path) as fh:
            got = fh.read()
        if fmt == "csv":
            assert got == local.read_bytes()
        else:
            mine, theirs = pq.read_table(local), pq.read_table(pa_buffer(got))
            assert mine.schema.equals(theirs.schema) and mine.equals(theirs)
    types = pq.read_table(tmp_path / "local.parquet").schema
    assert str(types.field("AGE").type) == "double" and str(types.field("ID").type) == "int64"
    assert str(types.field("EXTRA").type) == "string"  # it held only empties in the first block
    listed = fs.get_file_info(distributed_selector(path))
    assert sorted(i.base_name for i in listed) == ["r.csv", "r.parquet"]  # no scratch left


def pa_buffer(data: bytes):
    import pyarrow as pa

    return pa.BufferReader(data)


def distributed_selector(path: str):
    import pyarrow.fs as pafs

    return pafs.FileSelector(path.rsplit("/", 1)[0], recursive=True)


def _dasked(tmp_path, dask_address, diabetes, storage=None, **ingest):
    """Settings on the session's cluster with these ingest limits, and a trained model's ref."""
    from scoring.models.factory import open_model
    from tests.conftest import make_settings, register_trained

    settings = make_settings(tmp_path, ingest=ingest, storage=storage or {},
                             scoring={"engine": "dask", "dask_address": dask_address,
                                      "batch_rows": 100})  # fmt: skip
    model = open_model(settings)
    version, _ = register_trained(settings, model.registry, diabetes)
    return settings, load_version(model.registry, version), model_ref(
        model.name, model.registry, version
    )


def test_a_csv_the_workers_cannot_cut_is_read_by_the_client(
    tmp_path, dask_address, diabetes, caplog
):
    """Quoted line breaks: no task runs, the reason is logged, the caller reads it itself.

    A CSV that is not there is refused in words ("no file at"), not with a TypeError.
    """
    from scoring.bulk.remote import score_on_workers

    settings, _, ref = _dasked(tmp_path, dask_address, diabetes)
    src = tmp_path / "in.csv"
    frame = diabetes.drop(columns="target").assign(note="two\nlines")
    frame.to_csv(src, index=False)
    with caplog.at_level("INFO", logger="dropscore.score"):
        got = score_on_workers(settings, str(src), str(tmp_path / "o.csv"), ref, fmt="csv")
    assert got is None
    [record] = [r for r in caplog.records if r.getMessage() == "the client reads the file"]
    assert record.reason == "quoted values span lines (seen in the first megabyte)"
    assert not (tmp_path / "o.csv").exists() and [p.name for p in tmp_path.iterdir()
                                                  if p.name.startswith(".")] == []  # fmt: skip
    missing = tmp_path / "none.csv"
    with pytest.raises(ValidationFailed, match="no file at"):
        score_on_workers(settings, str(missing), str(tmp_path / "o.csv"), ref, fmt="csv")


def _limit_error(call):
    from ingest.base.errors import IngestError

    with pytest.raises(IngestError) as caught:
        call()
    return type(caught.value), caught.value.message


@pytest.mark.parametrize(
    ("limits", "fmt", "words"),
    [
        ({"max_columns": 5}, "csv", "columns, more than the 5 allowed"),
        ({"max_columns": 5}, "parquet", "columns, more than the 5 allowed"),
        ({"max_file_mb": 1.0}, "parquet", "unpacks to more than 1 MB"),
    ],
)
def test_the_ingest_limits_hold_when_workers_read(
    tmp_path, dask_address, diabetes, limits, fmt, words
):
    """Refused with the local reader's own error, nothing published, no scratch left.

    The Parquet file is 1,500 copies of one 4 KB text (a few KB stored, 6 MB decoded): the
    footer passes ``max_file_mb``, the parts count what they decode and stop.
    """
    import pyarrow as pa

    from scoring.bulk.remote import score_on_workers
    from scoring.ingest_options import read_options

    settings, model, ref = _dasked(tmp_path, dask_address, diabetes, **limits)
    frame = pd.concat([diabetes.drop(columns="target")] * 4, ignore_index=True)
    src = tmp_path / f"in.{fmt}"
    if fmt == "csv":
        frame.to_csv(src, index=False)
    else:
        table = pa.Table.from_pandas(frame.assign(note="n" * 4096), preserve_index=False)
        pq.write_table(table, src, row_group_size=400)
    out = tmp_path / "out" / "o.csv"
    out.parent.mkdir()
    local = _limit_error(lambda: score_path(src, out, model, read=read_options(settings)))
    remote = _limit_error(lambda: score_on_workers(settings, str(src), str(out), ref, fmt="csv"))
    assert remote == local and words in local[1], (remote, local)
    assert list(out.parent.iterdir()) == []


def test_an_s3_parquet_file_past_max_file_mb_is_refused_with_its_stored_size(
    tmp_path, dask_address, diabetes, s3, monkeypatch
):
    """The refusal of an s3:// file gives its size from the bucket, as the local one from disk.

    The same bytes, ~0.4 MB uncompressed, on disk and in the moto bucket, with ``max_file_mb``
    at 0.25: both are refused from the footer in the same words ("(it is 0.4 MB compressed)"),
    where the bucket's once read "0.0 MB" (its size looked up on the local disk).
    """
    import pyarrow as pa

    from scoring.bulk.filesystems import Store
    from scoring.bulk.remote import score_on_workers
    from scoring.ingest_options import read_options
    from scoring.testing.moto import CREDENTIALS

    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    storage = {"endpoint_url": s3.endpoint}
    settings, model, ref = _dasked(tmp_path, dask_address, diabetes, storage, max_file_mb=0.25)
    frame = pd.concat([diabetes.drop(columns="target")] * 12, ignore_index=True)
    src = tmp_path / "in" / "in.parquet"
    src.parent.mkdir()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, src, compression="none", use_dictionary=False)
    prefix = s3.url(s3.fresh_prefix("limit"))
    fs, path = Store(s3.endpoint, "us-east-1").open(f"{prefix}/in.parquet")
    with fs.open_output_stream(path) as put:
        put.write(src.read_bytes())
    out = tmp_path / "out" / "o.csv"
    out.parent.mkdir()
    local = _limit_error(lambda: score_path(src, out, model, read=read_options(settings)))
    where, to = f"{prefix}/in.parquet", f"{prefix}/o.csv"
    remote = _limit_error(lambda: score_on_workers(settings, where, to, ref, fmt="csv"))
    assert remote == local, (remote, local)
    assert "in.parquet unpacks to more than 0.25 MB" in local[1], local
    assert f"(it is {src.stat().st_size / 1024 / 1024:.1f} MB compressed)" in remote[1], remote
    assert "(it is 0.0 MB" not in remote[1], remote
    listed = fs.get_file_info(distributed_selector(path))
    assert [i.base_name for i in listed] == ["in.parquet"]  # nothing published, no scratch


def test_a_line_past_max_line_bytes_is_never_held_by_a_worker(tmp_path, client, registry,
                                                              trained, diabetes):  # fmt: skip
    """A 6 MiB line with ``max_line_bytes`` at 1 MiB: the worker stops, the client reads it."""
    from scoring.bulk.csv_parts import ClientReads

    features = diabetes.drop(columns="target")
    rows = features.to_csv(index=False, header=False).splitlines()
    lines = [",".join(features.columns) + ",note"]
    while sum(map(len, lines)) < 5 << 19:  # 2.5 MiB of short rows: the client's sniff is fine
        lines += [f"{row},short" for row in rows]
    lines += [f"{rows[0]},{'x' * (6 << 20)}", f"{rows[1]},short"]
    src = tmp_path / "in.csv"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "o.csv"
    ref = model_ref("default", registry, trained)
    with pytest.raises(ClientReads, match="longer than 1048576 bytes"):
        score_remote(client, str(src), str(out), ref, batch_rows=BATCH_ROWS, fmt="csv",
                     read=ReadOptions(max_line_bytes=1 << 20))  # fmt: skip
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
