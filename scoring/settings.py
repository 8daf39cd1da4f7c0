"""One settings loader for the whole product: ``settings.toml`` → environment → explicit overrides.

Every key is declared once, as a dataclass field whose metadata carries its help text, so the
shipped file, the README and the validator cannot drift apart without a test noticing. Loading
fails with one line naming the key, the value and what was expected, before anything starts.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import tomllib
import typing
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.base.config import MARKERS, ReadOptions
from ingest.base.layout import DEFAULT_MODEL, DataLayout, model_name_problem
from scoring.api.proxies import network_problem
from scoring.keys_protocol import MIN_KEY_LENGTH
from scoring.lifecycle.estimators import check_estimator_name, check_estimator_params
from scoring.setting_values import SettingsError, coerce, env_overrides, merge

ENV_FILE = "DROPSCORE_SETTINGS"
# Keys that were replaced, by section: the old key, and the keys it still sets when they are
# not set themselves. [server] max_request_mb capped every body; it now caps both kinds.
DEPRECATED = {"server": {"max_request_mb": ("max_json_mb", "max_upload_mb")}}
DASK_INSTALL_HINT = "[scoring] engine = 'dask' needs Dask: pip install 'dropscore[dask]'"

log = logging.getLogger("dropscore.settings")


def _f(default: Any, help: str, **checks: Any) -> Any:
    """Declare a setting: its default, its one-line help and optional checks."""
    kw: dict[str, Any] = {"metadata": {"help": help, **checks}}
    if isinstance(default, list | dict):
        kw["default_factory"] = lambda d=default: type(d)(d)
    else:
        kw["default"] = default
    return field(**kw)


@dataclass(frozen=True)
class PathsSettings:
    """``[paths]``: where dropscore keeps its data."""

    data_dir: Path = _f(Path("data"), "folder for inbox/, lake/, outbox/, models/ and state.db")


@dataclass(frozen=True)
class ModelSettings:
    """``[model]``: what the model predicts, from which columns, with what."""

    target: str = _f("target", "column the model learns to predict")
    features: list[str] = _f([], "feature columns; empty means every column but target and ids")
    id_columns: list[str] = _f([], "columns that identify rows and are never used as features")
    estimator: str = _f("linear_regression", "estimator name (see README for the list)")
    params: dict[str, Any] = _f({}, "keyword arguments passed to the estimator")
    test_size: float = _f(0.2, "fraction of rows held out to measure the model", gt=0.0, lt=1.0)
    random_state: int = _f(42, "seed for the hold-out split and the estimator")


@dataclass(frozen=True)
class TrainingSettings:
    """``[training]``: when retrains run and what a new model must beat."""

    schedule: str = _f("0 2 * * *", "cron expression for the nightly retrain")
    timezone: str = _f("UTC", "IANA time zone the schedule is read in")
    min_rows: int = _f(20, "fewest training rows a retrain accepts", ge=2)
    max_rows: int = _f(
        1_000_000, "most rows a retrain reads: a reproducible (stratified) sample beyond", ge=2
    )
    promote: str = _f("not_worse", "promotion rule", choices=("always", "not_worse", "never"))
    tolerance: float = _f(0.0, "how much worse (primary metric) a new model may be", ge=0.0)
    bootstrap_data: Path | None = _f(
        None, "labelled file taken into the empty training lake at first start"
    )


@dataclass(frozen=True)
class ScoringSettings:
    """``[scoring]``: how drops are scored and written."""

    on_arrival: bool = _f(True, "score each drop in inbox/score/ as soon as it is ingested")
    sweep_seconds: int = _f(60, "how often the sweep scores drops that have no output", ge=1)
    batch_rows: int = _f(100_000, "rows per batch in bulk scoring; bounds memory", ge=1)
    output_format: str = _f("parquet", "format of files in outbox/", choices=("parquet", "csv"))
    engine: str = _f("local", "bulk scoring engine", choices=("local", "dask"))
    dask_address: str = _f("", "Dask scheduler address; empty starts a local cluster")


@dataclass(frozen=True)
class IngestSettings:
    """``[ingest]``: how the watcher notices files and what it accepts."""

    stable_seconds: float = _f(2.0, "size and mtime must hold still this long", ge=0.0)
    rescan_seconds: float = _f(30.0, "full rescan of the inboxes, for missed events", gt=0.0)
    poll: bool = _f(False, "use the polling observer (network shares)")
    max_file_mb: float = _f(1024.0, "largest file accepted, in MB", gt=0.0)
    max_columns: int = _f(1000, "most columns a file may have", ge=1)
    excel_sheet: str = _f("", "sheet to read: name or 0-based index; empty is the first")
    csv_encodings: list[str] = _f(["cp1252", "latin-1"], "encodings tried after UTF-8")
    batch_rows: int = _f(
        ReadOptions.batch_rows, "rows per batch when a drop is read; bounds memory", ge=1
    )
    ready_marker: str = _f(
        "", "take <name> only once <name><marker> exists; empty is off", choices=MARKERS
    )


@dataclass(frozen=True)
class ServerSettings:
    """``[server]``: where the API listens and what one request may ask."""

    host: str = _f("127.0.0.1", "address the API listens on")
    port: int = _f(8000, "port the API listens on", ge=0, le=65535)
    workers: int = _f(2, "worker processes for `dropscore api`", ge=1)
    threads: int = _f(8, "request threads for `dropscore serve`", ge=1)
    max_json_mb: float = _f(10.0, "largest JSON request body, in MB (read into memory)", gt=0.0)
    max_upload_mb: float = _f(
        2048.0, "largest /score-file upload, in MB (spooled to disk in data_dir)", gt=0.0
    )
    max_rows_per_request: int = _f(
        5_000_000, "most rows one request may hold (/predict, the protocols, /score-file)", ge=1
    )
    cached_versions: int = _f(
        3, "versions per model kept loaded besides the champion, for calls naming one", ge=1
    )
    api_keys: list[str] = _f(
        [],
        "admin keys settings-1, -2…; auth is on once any key exists here or in `dropscore keys`",
        min_length=MIN_KEY_LENGTH,
        secret=True,
    )
    session_idle_minutes: float = _f(
        60.0, "a dashboard session unused this long ends (logging out ends it at once)", gt=0.0
    )
    session_max_hours: float = _f(12.0, "a dashboard session ends this long after login", gt=0.0)
    trusted_proxies: list[str] = _f(
        [],
        "addresses/CIDRs of proxies whose X-Forwarded-Proto/-For are honoured; empty: none",
        each=network_problem,
    )
    header_seconds: float = _f(
        10.0, "seconds a client has to send a request's headers (else 408 and close)", gt=0.0
    )
    body_min_kb_per_second: float = _f(
        1.0, "slowest average upload rate, in KB/s, once header_seconds passed (else 408)", ge=0.0
    )
    graceful_seconds: float = _f(
        30.0, "seconds a stop waits for uploads and answers under way to finish", ge=0.0
    )


@dataclass(frozen=True)
class StateSettings:
    """``[state]``: where the ledger, registry index, runs, keys and scheduled jobs are kept."""

    url: str = _f(
        "",
        "empty: SQLite files in data_dir; postgresql+psycopg://user@host:port/db for replicas",
        secret=True,  # it may carry a password: never printed, not even when wrong
    )


@dataclass(frozen=True)
class MonitoringSettings:
    """``[monitoring]``: when scored data counts as drifted from the version's training data."""

    drift_on_scoring: bool = _f(
        True, "compare every scored drop, upload and job with the version's training profile"
    )
    psi_threshold: float = _f(0.2, "a feature drifted when its PSI is above this", gt=0.0)
    js_threshold: float = _f(
        0.1, "a feature drifted when its Jensen-Shannon distance is above this", gt=0.0, le=1.0
    )
    ks_pvalue: float = _f(
        0.01, "a numeric feature drifted when its KS test's p-value is below this", ge=0.0, lt=1.0
    )
    drift_share: float = _f(
        0.0,
        "the data drifted when more than this share of its features did (0: any)",
        ge=0.0,
        lt=1.0,
    )
    min_rows: int = _f(100, "fewer scored rows get statistics but no verdict", ge=1)
    log_fraction: float = _f(
        0.0, "share of live requests written to the prediction log (0: off)", ge=0.0, le=1.0
    )
    log_flush_rows: int = _f(
        10_000, "the prediction log writes a Parquet part every this many rows", ge=1
    )
    log_flush_seconds: float = _f(
        10.0, "…or this often, whichever comes first (and on a clean stop)", gt=0.0
    )
    log_max_mb: float = _f(
        1024.0, "the prediction log's parts beyond this size are removed, oldest first", gt=0.0
    )
    log_max_days: float = _f(30.0, "prediction log parts older than this are removed", gt=0.0)
    window_rows: int = _f(10_000, "a live drift window closes after this many rows", ge=1)
    window_seconds: float = _f(3600.0, "…or after this long, whichever comes first", gt=0.0)
    retrain_on_drift: bool = _f(
        False, "queue a retrain (trigger drift/performance) on drift or a realized-metric fall"
    )
    cooldown_minutes: float = _f(
        1440.0, "at most one reaction retrain per trigger per model this often", gt=0.0
    )
    performance_margin: float = _f(
        0.05, "a realized primary metric this far below the hold-out's queues a retrain", ge=0.0
    )
    canary_check_seconds: float = _f(
        60.0, "how often the leader checks a canary's rule (promote, roll back or wait)", gt=0.0
    )


@dataclass(frozen=True)
class StorageSettings:
    """``[storage]``: where the inboxes, lake, archive, quarantine, artifacts and outbox live."""

    url: str = _f(
        "",
        "s3://bucket/prefix for inboxes, lake, archive, quarantine, models, outbox; empty: data_dir"
    )
    endpoint_url: str = _f("", "S3-compatible endpoint (MinIO, Ceph); empty: AWS's own")
    region: str = _f("", "the bucket's region; empty: AWS_REGION or us-east-1")


@dataclass(frozen=True)
class ModelEntry:
    """One served model's own settings: what it learns and when it retrains."""

    model: ModelSettings
    training: TrainingSettings


@dataclass(frozen=True)
class Settings:
    """Every section of ``settings.toml``, validated; one object for all of dropscore.

    ``model`` and ``training`` are those of the model this object is for (``name``); ``models``
    holds every model the file names, and ``for_model`` gives the same object for another one,
    so code written for one model (its layout, lake, registry, runs) serves each of many.
    """

    paths: PathsSettings = field(default_factory=PathsSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    state: StateSettings = field(default_factory=StateSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    source: Path | None = None  # the settings file, when there was one
    name: str = DEFAULT_MODEL  # the model this view is for
    # Every model by name, in the file's order (``default`` first); empty means just this one.
    models: Mapping[str, ModelEntry] = field(default_factory=dict)

    @property
    def model_names(self) -> tuple[str, ...]:
        """The names of every model this service serves, ``default`` (if any) first."""
        return tuple(self.models) or (self.name,)

    def for_model(self, name: str) -> Settings:
        """The settings seen by one model: its own [model]/[training] values and folders."""
        if name == self.name:
            return self
        entry = self.models.get(name)
        if entry is None:
            raise SettingsError(
                f"no model named {name!r}; this service has: {', '.join(self.model_names)}"
            )
        return dataclasses.replace(self, name=name, model=entry.model, training=entry.training)

    def section(self, name: str) -> str:
        """Where this model's ``model``/``training`` keys are set, for messages: ``[training]``
        for ``default``, ``[models.<name>]`` for a named model."""
        return f"[{name}]" if self.name == DEFAULT_MODEL else f"[models.{self.name}]"

    def each_model(self) -> list[Settings]:
        """One settings view per served model, in ``model_names`` order."""
        return [self.for_model(name) for name in self.model_names]

    @property
    def layout(self) -> DataLayout:
        """Every path of this model's data, from the one description of the data folder."""
        return DataLayout(self.paths.data_dir, self.name)

    @property
    def shared_db_path(self) -> Path:
        """The SQLite file every model shares: keys, audit trail, the scheduler's jobs."""
        return self.layout.shared_db_path

    @property
    def data_dir(self) -> Path:
        """Return the data root from ``[paths]``."""
        return self.paths.data_dir

    @property
    def db_path(self) -> Path:
        """Return the SQLite file that holds this model's ledger, registry index and runs."""
        return self.layout.db_path

    @property
    def models_dir(self) -> Path:
        """Return the registry's folder."""
        return self.layout.models


NOT_SECTIONS = ("source", "name", "models")
SECTIONS: dict[str, type] = {
    f.name: f.type if isinstance(f.type, type) else globals()[f.type]
    for f in dataclasses.fields(Settings)
    if f.name not in NOT_SECTIONS
}
# A [models.<name>] table holds these sections' keys; its unset [training] keys come from
# [training], except the sample file, which belongs to the one model it was written for.
PER_MODEL_SECTIONS = ("model", "training")
NOT_INHERITED = {"training": ("bootstrap_data",)}


def source_line(settings: Settings) -> str:
    """Say in one line which settings file is in use, or that none is and what that means.

    Without a file every key is its built-in default, which is rarely what a person meant (the
    target column is called "target" and the data folder is made where the command runs).
    """
    if settings.source is not None:
        return f"settings: {settings.source} (data folder {settings.data_dir})"
    return (
        f"settings: no settings file (none given with --settings or {ENV_FILE}, and no"
        f" ./settings.toml): built-in defaults, model {settings.name!r} predicting column"
        f" {settings.model.target!r}, data folder {settings.data_dir}; run `dropscore init NAME"
        " --target COLUMN FILE` to write one"
    )


def documented_keys() -> dict[str, dict[str, str]]:
    """Return every section's keys with their help text, for docs and the docs test."""
    return {
        name: {f.name: f.metadata["help"] for f in dataclasses.fields(cls)}
        for name, cls in SECTIONS.items()
    }


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    check_params: bool = True,
) -> Settings:
    """Load and validate settings; raise SettingsError naming the key, value and expectation.

    ``check_params=False`` skips checking ``[model] params`` against the estimator's signature,
    which imports scikit-learn: for commands that only read state and never build a model.
    """
    env = os.environ if env is None else env
    if path is None and env.get(ENV_FILE):
        path = env[ENV_FILE]
    raw: dict[str, dict[str, Any]] = {}
    base = Path.cwd()
    source = None
    if path is not None:
        source = Path(path).resolve()
        try:
            raw = tomllib.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"settings file {source} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"settings file {source} is not valid TOML: {exc}") from None
        base = source.parent
    merge(raw, env_overrides(env))
    merge(raw, {k: dict(v) for k, v in (overrides or {}).items()})
    _apply_deprecated(raw)
    named = raw.pop("models", None)
    sections = {}
    for section, values in raw.items():
        if section not in SECTIONS:
            raise SettingsError(
                f"unknown section [{section}]; expected one of {[*SECTIONS, 'models.<name>']}"
            )
        if not isinstance(values, dict):
            raise SettingsError(f"[{section}] must be a table, got {values!r}")
        sections[section] = _build_section(section, values, base)
    settings = Settings(**sections, source=source)
    _check_storage(settings.storage)
    if not settings.paths.data_dir.is_absolute():
        settings = _replace(settings, "paths", data_dir=base / settings.paths.data_dir)
    if named and "training" in raw:  # a bad inherited value is named where it is: [training]
        _check_schedule(settings.training, "[training]")
    models = _build_models(raw, named, settings, base)
    first = next(iter(models))
    settings = dataclasses.replace(
        settings,
        name=first,
        model=models[first].model,
        training=models[first].training,
        models=models,
    )
    _check_state(settings.state)
    for name in models:
        one = settings.for_model(name)
        _check_engine(_check_estimator(one, _where(name, named)))
        if check_params:
            _check_params(one, _where(name, named))
    return settings


def _where(name: str, named: Mapping[str, Any] | None) -> tuple[str, str]:
    """The section names a model's keys came from, for error messages."""
    if named and name in named:
        return f"[models.{name}]", f"[models.{name}]"
    return "[model]", "[training]"


def _build_models(
    raw: Mapping[str, Any], named: Any, settings: Settings, base: Path
) -> dict[str, ModelEntry]:
    """Read ``[model]`` (the model ``default``) and every ``[models.<name>]`` table.

    A file without ``[models.*]`` is the one model ``default``, exactly as before.
    """
    if named is None:
        named = {}
    if not isinstance(named, dict):
        raise SettingsError(f"[models] must hold tables like [models.churn], got {named!r}")
    models: dict[str, ModelEntry] = {}
    if "model" in raw and DEFAULT_MODEL in named:
        raise SettingsError("[models.default] and [model] both describe the model 'default'")
    if "model" in raw or not named:
        models[DEFAULT_MODEL] = ModelEntry(settings.model, settings.training)
    inherited = {
        k: v for k, v in raw.get("training", {}).items() if k not in NOT_INHERITED["training"]
    }
    for name, values in named.items():
        problem = model_name_problem(name)
        if problem:  # a quoted TOML key may hold a newline: quote it so the message stays one line
            shown = name if isinstance(name, str) and name.isprintable() and name else repr(name)
            raise SettingsError(f"[models.{shown}]: {problem}")
        where = f"[models.{name}]"
        if not isinstance(values, dict):
            raise SettingsError(f"{where} must be a table, got {values!r}")
        split: dict[str, dict[str, Any]] = {"model": {}, "training": dict(inherited)}
        for key, value in values.items():
            section = next(
                (s for s in PER_MODEL_SECTIONS if key in _field_names(SECTIONS[s])), None
            )
            if section is None:
                keys = sorted(k for s in PER_MODEL_SECTIONS for k in _field_names(SECTIONS[s]))
                raise SettingsError(f"{where} {key}: unknown key; expected one of {keys}")
            split[section][key] = value
        models[name] = ModelEntry(
            _build_section("model", split["model"], base, where),
            _build_section("training", split["training"], base, where),
        )
    return models


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _apply_deprecated(raw: dict[str, dict[str, Any]]) -> None:
    """Let a replaced key set the keys that replaced it, unless those are set; warn once."""
    for section, keys in DEPRECATED.items():
        values = raw.get(section)
        if not isinstance(values, dict):
            continue
        for old, new in keys.items():
            if old not in values:
                continue
            value = values.pop(old)
            for key in new:
                values.setdefault(key, value)
            log.warning(
                "deprecated setting",
                extra={"key": f"[{section}] {old}", "use": [f"[{section}] {k}" for k in new]},
            )


def _build_section(
    section: str, values: Mapping[str, Any], base: Path, where: str | None = None
) -> Any:
    cls = SECTIONS[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    where = where or f"[{section}]"
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise SettingsError(f"{where} {key}: unknown key; expected one of {sorted(fields)}")
        kwargs[key] = coerce(f"{where} {key}", value, hints[key], fields[key].metadata, base)
    return cls(**kwargs)


def _replace(settings: Settings, section: str, **changes: Any) -> Settings:
    new = dataclasses.replace(getattr(settings, section), **changes)
    return dataclasses.replace(settings, **{section: new})


def _check_state(state: StateSettings) -> None:
    """Refuse a ``[state] url`` of another kind, or PostgreSQL without its driver, at start."""
    from ingest.state.db import state_url_problem  # Deferred: SQLAlchemy, only when one is set

    problem = state_url_problem(state.url) if state.url else None
    if problem:
        raise SettingsError(f"[state] url: {problem}")


def _check_storage(storage: StorageSettings) -> None:
    """Refuse a ``[storage] url`` that is neither empty nor ``s3://bucket[/prefix]``, at start."""
    from ingest.lake.remote import storage_url_problem  # the one rule of a storage URL

    problem = storage_url_problem(storage.url)
    if problem:
        raise SettingsError(f"[storage] url = {storage.url!r}: {problem}")


def _check_engine(settings: Settings) -> Settings:
    """Refuse engine = "dask" at start when Dask is not installed, naming the extra."""
    if settings.scoring.engine == "dask":
        require_dask()
    return settings


def require_dask() -> None:
    """Raise a one-line SettingsError naming the extra to install when Dask is missing."""
    if importlib.util.find_spec("distributed") is None:
        raise SettingsError(DASK_INSTALL_HINT)


def _check_params(settings: Settings, where: tuple[str, str] = ("[model]", "[training]")) -> None:
    """Refuse ``[model] params`` the estimator does not take, at start rather than at 2 a.m."""
    try:
        check_estimator_params(settings.model.estimator, settings.model.params)
    except ValueError as exc:
        raise SettingsError(f"{where[0]} {exc}") from None


def _check_estimator(
    settings: Settings, where: tuple[str, str] = ("[model]", "[training]")
) -> Settings:
    """Refuse an unknown estimator, time zone or cron line at start, not at 2 a.m."""
    try:
        check_estimator_name(settings.model.estimator)
    except ValueError as exc:
        raise SettingsError(f"{where[0]} {exc}") from None
    _check_schedule(settings.training, where[1])
    return settings


def _check_schedule(training: TrainingSettings, where: str) -> None:
    """Refuse an unknown time zone or a bad cron line, naming the section they came from."""
    try:
        zoneinfo.ZoneInfo(training.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"{where} timezone = {training.timezone!r}: expected an IANA time zone"
            " name such as 'UTC' or 'Europe/Paris'"
        ) from None
    # Deferred: only loading settings needs the cron parser, not every import of this module.
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(training.schedule)
    except ValueError as exc:
        raise SettingsError(
            f"{where} schedule = {training.schedule!r}: expected a cron expression"
            f" with five fields ({exc})"
        ) from None
