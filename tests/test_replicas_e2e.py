"""End to end of issue 19: two `dropscore serve` replicas sharing only a database and a bucket.

Each replica has its own local data folder (scratch only); all they share is the PostgreSQL URL
(``[state] url``) and one bucket prefix (``[storage] url``, the session's moto_server). One
scenario, in order: a training drop put into the bucket trains the first model and both serve
it; 50 score drops put into the bucket are each ingested and scored exactly once between the two
(one ledger row, one claim, one output each); a version promoted through one replica is served
by the other; kill -9 of the leader and the other leads, its sweep scoring what arrives next;
and a bulk score on the session's Dask cluster equals the local engine's output.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import requests

from ingest.lake.remote import open_storage
from ingest.pipeline.bucket import BucketClaims
from scoring.models.factory import open_models
from scoring.settings import load_settings
from scoring.testing.checkout import SAMPLE, SETTINGS_FILE
from scoring.testing.processes import Process, process_env, started

from .conftest import free_port, register_trained, wait_for
from .test_e2e_serve import ROW

pytestmark = pytest.mark.slow  # real processes: PostgreSQL, moto_server, Dask, two `serve`

PATIENCE = 180.0  # a loaded 2-core machine; each step is designed for seconds
DROPS = 50


class Replica:
    """One `dropscore serve` process on its own data folder and port."""

    def __init__(self, name: str, proc: Process, port: int, log: Path) -> None:
        self.name, self.proc, self.log = name, proc, log
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> dict | None:
        """Read a JSON endpoint; None while the process cannot answer (it must still run)."""
        assert self.proc.poll() is None, f"{self.name} exited:\n{self.log.read_text()[-4000:]}"
        try:
            answer = requests.get(self.url + path, timeout=10)
        except (requests.ConnectionError, requests.Timeout):
            return None
        return answer.json() if answer.status_code == 200 else None

    def role(self) -> str | None:
        """Say whether this replica leads the schedules; None while it cannot answer."""
        health = self.get("/health")
        return health["scheduler"]["role"] if health else None

    def served_version(self) -> str:
        """Ask which version answers a prediction here."""
        answer = requests.post(self.url + "/predict", json={"X_test": ROW}, timeout=10)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["model_version"])


def score_drop(i: int) -> bytes:
    """A small score drop whose content no other drop has (so none is a duplicate)."""
    lines = SAMPLE.read_text().splitlines()
    return "\n".join([lines[0], *lines[1 + i % 40 : 4 + i % 40], f"0.0{i:03d}" + lines[1][5:]])


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator:
    """Start `serve` replicas with the given environment; stop (or kill) what is left."""
    with ExitStack() as stack:

        def start(name: str, **env: str) -> Replica:
            port, log = free_port(), tmp_path / f"{name}.log"
            proc = stack.enter_context(
                started(
                    [sys.executable, "-m", "scoring", "serve"],
                    process_env(tmp_path / name, port, **env),
                    log,
                )
            )
            return Replica(name, proc, port, log)

        yield start


def test_two_replicas_sharing_only_a_database_and_a_bucket(
    replicas, tmp_path: Path, pg_url: str, s3, dask_address: str, diabetes, monkeypatch
) -> None:
    prefix = s3.fresh_prefix("replicas")
    for key, value in s3.env.items():  # this process reads the bucket as the replicas do
        monkeypatch.setenv(key, value)
    bucket = open_storage(s3.url(prefix), tmp_path, endpoint_url=s3.endpoint, env=s3.env)
    shared = {
        "DROPSCORE__STATE__URL": pg_url,
        "DROPSCORE__TRAINING__BOOTSTRAP_DATA": "",  # the first model comes from the bucket
        "DROPSCORE__SCORING__SWEEP_SECONDS": "1",
        **s3.process_env(prefix),
    }

    def put(relative: str, body: bytes) -> None:
        with bucket.fs.open_output_stream(bucket.join(relative)) as sink:
            sink.write(body)

    def listed(relative: str) -> list[str]:
        selector = pafs.FileSelector(bucket.join(relative), allow_not_found=True)
        return sorted(i.base_name for i in bucket.fs.get_file_info(selector) if i.is_file)

    # what a person reads with the CLI on a third machine: the same URL and bucket
    settings = load_settings(
        SETTINGS_FILE,
        env={
            "DROPSCORE__PATHS__DATA_DIR": str(tmp_path / "reader"),
            **{k: v for k, v in shared.items() if k.startswith("DROPSCORE")},
        },
    )
    models = open_models(settings)
    model = models.default

    # 1. a training drop in the bucket trains the first model; both replicas serve it
    put("inbox/train/diabetes.csv", SAMPLE.read_bytes())
    a, b = replicas("a", **shared), replicas("b", **shared)
    for replica in (a, b):
        ready = wait_for(lambda r=replica: r.get("/ready"), PATIENCE, 0.2, f"{replica.name} ready")
        assert ready["model_version"] == "1"
    assert [v.version for v in model.registry.list()] == [1]  # trained once, not per replica
    assert sorted([a.role(), b.role()]) == ["leader", "standby"]

    # 2. fifty score drops: each ingested and scored exactly once between the two replicas
    names = [f"drop-{i:02d}.csv" for i in range(DROPS)]
    for i, name in enumerate(names):
        put(f"inbox/score/{name}", score_drop(i).encode())

    def all_scored() -> list | None:
        rows = model.ledger.list(kind="score", limit=None)
        done = [r for r in rows if r.output_path is not None]
        return rows if len(done) >= DROPS else None

    rows = wait_for(all_scored, PATIENCE, 0.5, f"{DROPS} drops scored")
    assert Counter(r.original_name for r in rows) == Counter(names)  # one row each
    assert {r.state for r in rows} == {"scored"}
    assert all(r.rows_scored == 4 and r.rows_failed == 0 for r in rows)
    outputs = wait_for(lambda: (o := listed("outbox")) and len(o) >= DROPS and o, 60, 0.2, "outbox")
    assert len(outputs) == DROPS  # one output each, no second scoring of any drop
    claims = BucketClaims(models.shared.db).rows()
    taken = [c for c in claims if "/inbox/score/" in c["key"]]
    assert sorted(c["key"].rsplit("/", 1)[1] for c in taken) == names  # one claim each
    print("drops taken by:", Counter(c["claimed_by"].split("/")[0] for c in taken))
    wait_for(lambda: listed("inbox/score") == [], 60, 0.2, "the score inbox emptied")
    assert len([n for n in listed("archive") if n.endswith(".csv")]) == DROPS + 1

    # 3. a version promoted through one replica is served by the other
    leader, standby = (a, b) if a.role() == "leader" else (b, a)
    version, _ = register_trained(model.settings, model.registry, diabetes, promote=False)
    assert version == 2 and standby.served_version() == "1"
    promoted = requests.post(leader.url + f"/models/{version}/promote", timeout=10)
    assert promoted.status_code == 200, promoted.text
    moment = time.monotonic()
    wait_for(lambda: standby.served_version() == "2", PATIENCE, 0.02, "the standby to serve 2")
    print(f"promotion served by the other replica after {time.monotonic() - moment:.2f} s")

    # 4. kill -9 of the leader: the standby leads and its schedules run
    os.kill(leader.proc.pid, signal.SIGKILL)
    leader.proc.wait(timeout=60)
    moment = time.monotonic()
    wait_for(lambda: standby.role() == "leader", PATIENCE, 0.2, "the standby to lead")
    print(f"takeover after kill -9: {time.monotonic() - moment:.1f} s")

    def swept() -> bool:
        health = standby.get("/health")
        return bool(health) and health["scheduler"]["by_job"]["score_sweep"]["executed"] >= 1

    wait_for(swept, PATIENCE, 0.2, "the new leader's sweep to run")
    put("inbox/score/after.csv", score_drop(DROPS).encode())
    wait_for(
        lambda: any(
            r.original_name == "after.csv" and r.output_path
            for r in model.ledger.list(kind="score", limit=None)
        ),
        PATIENCE,
        0.5,
        "a drop after the takeover scored",
    )
    assert standby.served_version() == "2"

    # 5. a bulk score on the Dask cluster equals the local engine's, row for row
    frame = diabetes.drop(columns=["target"]).head(500)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    put("bulk/in.parquet", buffer.getvalue())
    outputs = {}
    for engine in ("local", "dask"):
        env = process_env(
            tmp_path / f"cli-{engine}",
            free_port(),
            **shared,
            DROPSCORE__SCORING__ENGINE=engine,
            DROPSCORE__SCORING__DASK_ADDRESS=dask_address,
        )
        done = subprocess.run(
            [sys.executable, "-m", "scoring", "score", bucket.uri("bulk/in.parquet"),
             "-o", bucket.uri(f"bulk/{engine}.parquet")],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        with bucket.fs.open_input_stream(bucket.join(f"bulk/{engine}.parquet")) as source:
            outputs[engine] = pq.read_table(io.BytesIO(source.read())).to_pandas()
    assert len(outputs["local"]) == len(frame)
    pd.testing.assert_frame_equal(outputs["dask"], outputs["local"])

    # nothing was shared through a local folder: each replica's models/ and outbox are scratch
    for name in ("a", "b"):
        assert not list((tmp_path / name / "models").glob("*/model.skops"))
