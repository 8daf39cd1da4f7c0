"""Batch jobs over HTTP (KServe's ``:batch_predict`` idea): submit, follow, list.

``POST /models/<name>/jobs {"input": …, "output": …}`` (role ``operate``, audited like every
state-changing call) checks the two names (``scoring.jobs.locations``: the model's own lake or
outbox, or ``s3://`` under ``[storage] url``) and queues the job in the model's state database;
it answers 202 with the job and its ``Location`` at once. Whichever process runs the background
work claims and runs it (``scoring.jobs.runner``); a bad input file is a failed job with its
reason, read at ``GET /models/<name>/jobs/<id>``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from scoring.api.auth import current_key_name
from scoring.api.context import services
from scoring.api.jsonio import request_json
from scoring.api.openapi import (
    INTEGER,
    STRING,
    array,
    json_body,
    nullable,
    obj,
    operation,
    query_param,
    response_object,
)
from scoring.api.params import int_arg
from scoring.errors import NotFound, ValidationFailed
from scoring.jobs.locations import resolve_input, resolve_output
from scoring.jobs.queue_protocol import STATES

bp = Blueprint("jobs", __name__)

SUBMIT = obj(
    input={**STRING, "description": "lake/score/<file>, outbox/<file>, or s3://… under "
           "[storage] url"},
    output={**STRING, "description": "outbox/<file> or s3://… under [storage] url; its "
            "suffix is the format (.parquet, .csv, .json, .jsonl)"},
)  # fmt: skip
JOB = obj(
    id=STRING,
    model=STRING,
    state={"type": "string", "enum": list(STATES)},
    input=STRING,
    output=STRING,
    submitted_at=STRING,
    submitted_by=nullable(STRING),
    started_at=nullable(STRING),
    finished_at=nullable(STRING),
    rows=nullable(INTEGER),
    rows_scored=nullable(INTEGER),
    rows_failed=nullable(INTEGER),
    failures=nullable(INTEGER),
    model_version=nullable(STRING),
    error=nullable(STRING),
    attempts=INTEGER,
)
EXAMPLE = {"input": "outbox/in.parquet", "output": "outbox/in.scored.parquet"}


@bp.post("/jobs")
@operation(
    "Queue a batch job: score a file from the model's lake or outbox (or the bucket) into the"
    " outbox (or the bucket); follow it at the Location answered",
    body=json_body(SUBMIT, outbox=EXAMPLE),
    responses={
        202: {
            **response_object(JOB, "Queued"),
            "headers": {"Location": {"required": True, "schema": STRING}},
        }
    },
    errors=(400, 422),
)
def submit_job() -> tuple[Response, int, dict[str, str]]:
    """Check the input and output names and queue the job; a replica's runner takes it."""
    body = request_json()
    if not isinstance(body, dict) or set(body) - {"input", "output"}:
        raise ValidationFailed(
            'the body must be a JSON object {"input": …, "output": …}',
            [{"field": "body", "problem": "expected exactly input and output"}],
        )
    m = services().model()
    resolve_input(m.settings, body.get("input"))
    resolve_output(m.settings, body.get("output"))
    job = m.jobs.submit(body["input"], body["output"], by=current_key_name())
    url = _url(job.id)
    return jsonify(job.to_dict(m.name)), 202, {"Location": url}


@bp.get("/jobs")
@operation(
    "List the model's batch jobs, newest first",
    query=[query_param("limit", {**INTEGER, "minimum": 1, "maximum": 1000}, "page size")],
    responses={200: response_object(obj(jobs=array(JOB)))},
    errors=(422,),
)
def list_jobs() -> Response:
    """List the model's batch jobs, newest first."""
    m = services().model()
    jobs = m.jobs.list(limit=int_arg("limit", 100, 1, 1000))
    return jsonify({"jobs": [job.to_dict(m.name) for job in jobs]})


@bp.get("/jobs/<id:job_id>")
@operation(
    "One batch job: its state, rows, failures and error", responses={200: response_object(JOB)}
)
def show_job(job_id: int) -> Response:
    """Show one batch job."""
    m = services().model()
    job = m.jobs.get(job_id)
    if job is None:
        raise NotFound(f"model {m.name!r} has no job {job_id}")
    return jsonify(job.to_dict(m.name))


def _url(job_id: int) -> str:
    """The job's URL in the scheme the client used (/models/<name>/jobs/N, or /jobs/N)."""
    by_name = request.url_rule is not None and "model" in request.url_rule.arguments
    named: dict[str, Any] = {"model": services().model().name} if by_name else {}
    return url_for("jobs.show_job", job_id=job_id, **named)
