"""A failed file's stop signal reaches its tasks on real Dask workers (``scoring.bulk.stopping``).

The race it closes: a task a worker takes a moment after the client looked (or after it
cancelled) runs on and writes into a scratch folder the client already removed. CI once left
such a ``.parts`` folder beside a refused file's output.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from scoring.bulk.csv_parts import write_segments
from scoring.bulk.filesystems import Store
from scoring.bulk.stopping import Stopped, event_name, forget, stop_tasks
from scoring.testing.waiting import wait_for

distributed = pytest.importorskip("distributed")

BATCHES = 40


@pytest.fixture
def client(dask_address: str) -> Iterator[distributed.Client]:
    with distributed.Client(dask_address, set_as_default=False) as client:
        yield client


def slow_writer(scratch: str, pause: float) -> int:
    """A task: write BATCHES one-row batches into the scratch, pausing between them."""

    def batches() -> Iterator[pa.RecordBatch]:
        for i in range(BATCHES):
            time.sleep(pause)
            yield pa.record_batch({"i": [i]})

    return sum(sum(s.rows) for s in write_segments(batches(), Store(), scratch, "s{}.arrow".format))


def _rows_written(scratch: Path) -> int:
    return sum(ipc.open_file(p).read_all().num_rows for p in scratch.glob("*.arrow"))


def test_a_task_started_after_the_stop_writes_nothing(client, tmp_path):
    """Stopped before its first write: the scratch folder is never made. Cleared, it writes."""
    scratch = tmp_path / ".o.csv.0123.parts"
    stop_tasks(client, [], str(scratch))  # the stop is set before the task exists
    late = client.submit(slow_writer, str(scratch), 0.0, pure=False)
    with pytest.raises(Stopped, match="stopped"):
        late.result(timeout=60)
    assert not scratch.exists()
    forget(client, str(scratch))
    assert not distributed.Event(event_name(str(scratch)), client=client).is_set()
    assert client.submit(slow_writer, str(scratch), 0.0, pure=False).result(timeout=60) == BATCHES
    assert _rows_written(scratch) == BATCHES


def test_a_running_task_stops_between_batches_and_has_ended_when_the_stop_returns(
    client, tmp_path
):
    """The stop waits for the running task itself, not for its cancelled future."""
    scratch = tmp_path / ".o.csv.4567.parts"
    running = client.submit(slow_writer, str(scratch), 0.25, pure=False)
    wait_for(lambda: scratch.exists() and any(scratch.glob("*.arrow")), timeout=60)
    stop_tasks(client, [running], str(scratch))
    assert running.status == "error"
    with pytest.raises(Stopped):
        running.result()
    written = _rows_written(scratch)
    assert 0 < written < BATCHES  # it stopped part way, and closed what it wrote
    forget(client, str(scratch))
