"""The scheduler's job ids, one rule for every reader: three jobs per model, by kind and model.

Kept with the models, not in ``schedules``, so the dashboard can find a model's jobs without
reaching into the scheduler's package (or importing APScheduler). The model ``default`` keeps
the plain ids it had before several models (``retrain``, ``score_sweep``), so an existing data
folder keeps its stored jobs.
"""

from __future__ import annotations

from ingest.base.layout import DEFAULT_MODEL

RETRAIN = "retrain"
SWEEP = "score_sweep"
CANARY = "canary_check"  # a canary's rule, checked every ``[monitoring] canary_check_seconds``
JOB_KINDS = (RETRAIN, SWEEP, CANARY)


def job_id(kind: str, model: str) -> str:
    """The stored id of one model's job: the kind alone for ``default``, else kind:name."""
    return kind if model == DEFAULT_MODEL else f"{kind}:{model}"


def job_kind(job: str) -> str:
    """The kind of a stored job id (``retrain``, ``score_sweep``, ``canary_check``, or not ours)."""
    return job.partition(":")[0]


def job_model(job: str) -> str:
    """The model a stored job id belongs to (the inverse of ``job_id``)."""
    return job.partition(":")[2] or DEFAULT_MODEL


def is_ours(job: str) -> bool:
    """Tell whether a stored job id is one dropscore manages (of any model)."""
    return job_kind(job) in JOB_KINDS
