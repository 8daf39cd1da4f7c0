"""The scheduled jobs, as module-level functions the job store names ``schedules.jobs:<name>``.

Their arguments are plain values (the settings file and the data folder) pickled into state.db;
each run loads the settings itself and calls the same functions as the operational commands:
``retrain`` is ``dropscore train``'s ``run_retrain``, ``score_sweep`` the bulk scorer's sweep,
``canary_check`` one check of a canary's rule (``scoring.traffic.check``).
"""

from __future__ import annotations

import logging

from ingest.base.layout import DEFAULT_MODEL
from scoring.bulk.drops import standalone_sweep
from scoring.lifecycle.runner import record_skipped, run_retrain
from scoring.lifecycle.runs import RetrainBusy
from scoring.models.factory import open_model
from scoring.settings import Settings, load_settings

log = logging.getLogger("dropscore.schedules")


def load_job_settings(
    settings_path: str | None, data_dir: str, model: str = DEFAULT_MODEL
) -> Settings:
    """Rebuild one model's settings from the plain values stored with the job."""
    settings = load_settings(settings_path, overrides={"paths": {"data_dir": data_dir}})
    return settings.for_model(model)


def retrain(settings_path: str | None, data_dir: str, model: str = DEFAULT_MODEL) -> str:
    """Retrain on the lake if it changed; return the run's state (succeeded, skipped, failed)."""
    settings = load_job_settings(settings_path, data_dir, model)
    served = open_model(settings)  # this job's own process: opened once for the run
    try:
        record = run_retrain(settings, served.registry, trigger="schedule", runs=served.runs)
    except RetrainBusy as exc:
        record = record_skipped(settings, "schedule", str(exc), "busy", served.runs)
    return record.state


def score_sweep(settings_path: str | None, data_dir: str, model: str = DEFAULT_MODEL) -> int:
    """Score every normalized score drop that has no output yet; return how many were scored."""
    settings = load_job_settings(settings_path, data_dir, model)
    scored = standalone_sweep(settings)
    if scored:
        log.info("sweep scored drops", extra={"files": len(scored), "model": model})
    return len(scored)


def canary_check(settings_path: str | None, data_dir: str, model: str = DEFAULT_MODEL) -> str:
    """Check the model's canary rule once; return the outcome (pass, fail, wait or idle)."""
    from scoring.models.factory import open_shared
    from scoring.traffic.check import check_canary

    settings = load_job_settings(settings_path, data_dir, model)
    shared = open_shared(settings)
    served = open_model(settings, server=shared.db)
    try:
        checked = check_canary(served, shared.audit)
    finally:
        served.db.dispose()
        shared.db.dispose()
    return "idle" if checked.evaluation is None else checked.evaluation.outcome
