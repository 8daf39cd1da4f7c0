"""The ``dropscore`` command: the operational entry points, each calling the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ingest.base.formats import OUTPUT_FORMATS
from ingest.base.layout import KINDS
from scoring.service import drift_cli, init_cli, jobs_cli, keys_cli, records_cli, traffic_cli
from scoring.service.model_option import accept_model, chosen_model, model_option
from scoring.service.records_cli import fmt_number
from scoring.service.score_locations import Location, names_a_uri, score_location
from scoring.service.tables import text_table
from scoring.settings import ENV_FILE, Settings, SettingsError, load_settings

DEFAULT_SETTINGS = "settings.toml"
# Commands that read or change records but never build a model. They skip the check of
# [model] params against the estimator's signature, which would import scikit-learn, so they
# answer at once; scikit-learn, pandas and skops load only in commands that use them.
RECORD_COMMANDS = frozenset({"models", "files", "runs", "keys", "audit", "traffic"})
# Commands that act on every model (or on none), so --model does not choose for them.
ALL_MODEL_COMMANDS = frozenset({"serve", "worker", "api", "keys", "audit", "init"})
# Services log every event as JSON lines at INFO for log shippers; every other command is run by
# a person, prints its answer on stdout and logs readable lines on stderr, WARNING and up.
SERVICE_COMMANDS = frozenset({"serve", "worker", "api"})


class Context:
    """Load settings on first use, so ``--help`` works even with a broken settings file."""

    def __init__(
        self,
        path: str | None,
        check_params: bool = True,
        command: str | None = None,
    ) -> None:
        self.path = path
        self.check_params = check_params
        self.command = command
        self.overrides: dict[str, dict[str, Any]] = {}  # a command's options, e.g. --port
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """Load the settings file on first use and keep it; a bad file is a clean error.

        The settings are those of the model ``--model`` names, else of the only model or of
        ``default``; a command about one model refuses to guess among several named ones.
        """
        if self._settings is None:
            path = self.path
            if path is None and Path(DEFAULT_SETTINGS).is_file():
                import os

                path = os.environ.get(ENV_FILE) or DEFAULT_SETTINGS
            try:
                loaded = load_settings(
                    path, overrides=self.overrides, check_params=self.check_params
                )
                self._settings = loaded.for_model(self._model_name(loaded))
            except SettingsError as exc:
                raise click.ClickException(str(exc)) from None
            _say_settings(loaded, self.command in SERVICE_COMMANDS)
        return self._settings

    def reread(self) -> Settings:
        """Read the settings file again as at start, for a reload; SettingsError if invalid."""
        from scoring.service.reload import reread_file

        return reread_file(self.settings, self.overrides, self.check_params)

    @property
    def model(self) -> str | None:
        """The model ``--model`` (before or after the command) or ``DROPSCORE_MODEL`` named."""
        return chosen_model(click.get_current_context())

    def _model_name(self, loaded: Settings) -> str:
        """The model this command is about: --model, else the only one or ``default``."""
        if self.model is not None:
            return self.model
        names = loaded.model_names
        if len(names) > 1 and "default" not in names and self.command not in ALL_MODEL_COMMANDS:
            raise SettingsError(
                f"this service has several models ({', '.join(names)}): choose one with --model"
            )
        return loaded.name


def _say_settings(settings: Settings, service: bool) -> None:
    """Say which settings file is in use: in the JSON log for a service; on a terminal for a
    person (a pipe or a script gets it in the log, shown with -v, so answers stay clean)."""
    import logging

    from scoring.settings import source_line

    line = source_line(settings)
    log = logging.getLogger("dropscore")
    if service:
        file = None if settings.source is None else str(settings.source)
        log.info("settings", extra={"settings_file": file, "line": line})
    elif sys.stderr.isatty():
        click.echo(line, err=True)
    else:
        log.info(line)


pass_ctx = click.make_pass_decorator(Context)


@click.group()
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(dir_okay=False),
    envvar=ENV_FILE,
    help="settings file (default: ./settings.toml when present)",
)
@click.option("-v", "--verbose", is_flag=True, help="log what a command does (INFO) on stderr")
@click.option(
    "--log-level",
    default=None,
    help="logging level (default: INFO for serve, worker and api; WARNING for other commands)",
)
@click.pass_context
def main(
    ctx: click.Context,
    settings_path: str | None,
    verbose: bool,
    log_level: str | None,
) -> None:
    """dropscore: batch and streaming scoring for tabular models."""
    from scoring.service.logs import configure_logging

    command = ctx.invoked_subcommand
    service = command in SERVICE_COMMANDS
    level = log_level or ("INFO" if service or verbose else "WARNING")
    configure_logging(level.upper(), human=not service)
    ctx.obj = Context(
        settings_path,
        check_params=command not in RECORD_COMMANDS,
        command=command,
    )


main.params.append(model_option(from_env=True))  # the one --model, here and after a command


def _one_math_thread() -> None:
    """Give a serving process one BLAS/OpenMP thread, before anything loads those libraries.

    Request threads are the parallelism of a server; a second math thread per request only
    spins (seen under gunicorn), and OpenMP fixes its thread count when it loads. An operator
    can still set the variables explicitly.
    """
    import os

    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


def _address_options(command: Any) -> Any:
    """Add ``--host`` and ``--port``, which override [server] host and port for this run."""
    command = click.option("--port", type=int, help="port to listen on ([server] port)")(command)
    return click.option("--host", help="address to listen on ([server] host)")(command)


def _listen_at(ctx: Context, host: str | None, port: int | None) -> None:
    """Put ``--host``/``--port`` into the settings, validated like the file's values."""
    given = {"host": host, "port": port}
    ctx.overrides["server"] = {k: v for k, v in given.items() if v is not None}


@main.command()
@_address_options
@pass_ctx
def serve(ctx: Context, host: str | None, port: int | None) -> None:
    """Run API + watcher + scheduler in one process (trains a first model if none)."""
    _one_math_thread()
    from schedules.scheduler import SchedulerStartError
    from scoring.service.runtime import AlreadyRunning, run_serve
    from scoring.service.server import CannotListen

    _listen_at(ctx, host, port)
    try:
        run_serve(ctx.settings, ctx.reread)
    except (CannotListen, AlreadyRunning, SchedulerStartError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--workers", type=int, default=None, help="worker processes ([server] workers)")
@_address_options
@pass_ctx
def api(ctx: Context, workers: int | None, host: str | None, port: int | None) -> None:
    """Run the API only, under gunicorn; replicas share the data folder."""
    import os
    import shutil
    import tempfile

    _one_math_thread()
    _listen_at(ctx, host, port)
    # prometheus_client picks per-process or shared counters when first imported, so the
    # shared folder must be in the environment before anything imports it.
    metrics_dir = tempfile.mkdtemp(prefix="dropscore-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    settings = ctx.settings
    from scoring.api.app import create_app, warm
    from scoring.models.factory import open_model
    from scoring.service.runtime import reap_interrupted
    from scoring.service.server import CannotListen, serve_gunicorn

    for one in settings.each_model():
        reap_interrupted(open_model(one))
    master = os.getpid()
    try:
        serve_gunicorn(
            settings,
            lambda now: warm(create_app(now, reread=ctx.reread, reload_all=True)),
            workers or settings.server.workers,
            ctx.reread,
        )
    except CannotListen as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        # A gunicorn worker that exits (a reload replaces them all) unwinds through here too:
        # only the master, once every worker is gone, removes the folder they all write to.
        if os.getpid() == master:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@main.command()
@pass_ctx
def worker(ctx: Context) -> None:
    """Run the watcher and scheduler only; one per data folder."""
    from schedules.scheduler import SchedulerStartError
    from scoring.service.runtime import AlreadyRunning, run_worker

    try:
        run_worker(ctx.settings, ctx.reread)
    except (AlreadyRunning, SchedulerStartError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--force", is_flag=True, help="retrain even when nothing changed since the champion")
@pass_ctx
def train(ctx: Context, force: bool) -> None:
    """Train now on the training lake, print metrics, promote by the rule."""
    from scoring.lifecycle.runner import run_retrain
    from scoring.lifecycle.runs import RetrainBusy
    from scoring.models.factory import open_model
    from scoring.service.runtime import open_intake

    settings = ctx.settings
    model = open_model(settings)
    _config, _ledger, intake = open_intake(settings, model)
    if settings.training.bootstrap_data is not None and settings.training.bootstrap_data.is_file():
        intake.bootstrap(settings.training.bootstrap_data)
    try:
        run = run_retrain(
            settings,
            model.registry,
            "cli",
            force=force,
            progress=lambda m: click.echo(m, err=True),
            runs=model.runs,
        )
    except RetrainBusy as exc:
        raise click.ClickException(str(exc)) from None
    if run.state == "failed":
        raise click.ClickException(f"run {run.id} failed: {run.error}; the champion keeps serving")
    if run.skip == "refused":
        raise click.ClickException(f"training refused: {run.reason}")
    if run.state == "skipped":
        click.echo(f"run {run.id} skipped: {run.reason}")
        return
    click.echo(_metrics_table(run))
    verdict = "promoted to champion" if run.promoted else "not promoted"
    click.echo(f"\nversion {run.version}: {verdict} ({run.reason})")


def _metrics_table(outcome: Any) -> str:
    header = ["metric", f"v{outcome.version} (new)"]
    if outcome.champion_metrics is not None:
        header.append(f"v{outcome.champion_version} (champion)")
    rows = [header]
    for name, value in outcome.metrics.items():
        row = [name, fmt_number(value)]
        if outcome.champion_metrics is not None:
            row.append(fmt_number(outcome.champion_metrics.get(name)))
        rows.append(row)
    return text_table(rows)




@main.command()
@click.argument("src", metavar="IN", type=Location(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "dst", type=Location(dir_okay=False, path_type=Path),
              help="output file (default: IN's name with .scored)")
@click.option("--format", "fmt", type=click.Choice(OUTPUT_FORMATS),
              help="output format (default: OUT's extension; without -o the input's family,"
              " CSV for Excel)")
@pass_ctx
def score(ctx: Context, src: Path, dst: Path | None, fmt: str | None) -> None:
    """Bulk-score one file with the champion, in bounded memory, with a progress bar."""
    if names_a_uri(src, dst):  # s3://…: read and written where it is (on Dask, by the workers)
        score_location(ctx.settings, str(src), None if dst is None else str(dst), fmt)
        return
    from ingest.base.errors import IngestError
    from ingest.base.formats import detect_format, output_spec
    from scoring.bulk.batch import estimate_rows, score_path
    from scoring.bulk.engines import engine_for
    from scoring.errors import DropscoreError
    from scoring.ingest_options import read_options
    from scoring.lifecycle.champion import load_version
    from scoring.models.factory import open_model
    from scoring.monitoring.bulk import BulkDrift
    from scoring.monitoring.records_protocol import CLI
    from scoring.service.outputs import OutputChoiceError, output_format
    from scoring.service.progress import progress_bar, summary_line

    settings = ctx.settings
    opened = open_model(settings)
    registry, drift = opened.registry, BulkDrift(opened)
    version = registry.champion_version()
    if version is None:
        raise click.ClickException("no model yet: run `dropscore train` first")
    try:
        with open(src, "rb") as fh:
            fmt = output_format(dst, fmt, detect_format(src.name, fh.read(8192)))
        model = load_version(registry, version)
        suffix = output_spec(fmt).suffixes[0]
        dst = dst or src.with_name(f"{src.name.split('.')[0]}.scored{suffix}")
        watch = drift.watch(model)
        with progress_bar(estimate_rows(src)) as bar:
            summary = score_path(
                src,
                dst,
                model,
                read=read_options(settings),
                fmt=fmt,
                progress=bar.update,
                engine=engine_for(settings, registry=registry),
                observe=watch,
            )
            bar.total = bar.n  # the total was an estimate: closing draws 100%, if it was shown
    except OutputChoiceError as exc:
        raise click.ClickException(str(exc)) from None
    except IngestError as exc:
        raise click.ClickException(f"{src.name}: {exc.message}") from None
    except DropscoreError as exc:
        raise click.ClickException(f"{src.name}: {exc.message}") from None
    click.echo(summary_line(summary, dst))
    found = drift.record(watch, source=CLI, ref=str(src.name))
    if found is not None:
        click.echo(drift_cli.drift_line(found), err=True)  # stdout stays the one summary line


DEFERRED_LINE = (
    "the disk is full: the drop waits in processing/ and a running serve or worker takes it "
    "once there is room"
)


@main.command("ingest")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--kind", type=click.Choice(KINDS), required=True)
@pass_ctx
def ingest_cmd(ctx: Context, files: tuple[str, ...], kind: str) -> None:
    """Ingest files as if dropped (the originals stay where they are)."""
    from ingest.base.names import shown
    from ingest.pipeline.recovery import DEFERRED
    from scoring.service.runtime import open_intake

    _config, _ledger, intake = open_intake(ctx.settings)
    failed = 0
    for name in files:
        record = intake.take_copy(Path(name), kind)
        state, detail = record.state, f"{record.rows} rows" if record.state == "normalized" else ""
        if record.state == "quarantined":
            failed += 1
            detail = (record.error or {}).get("message", "")
        elif (record.error or {}).get("code") == DEFERRED:  # still received: our disk is full
            failed += 1
            state, detail = "deferred", DEFERRED_LINE
        click.echo(f"{shown(name)}: #{record.id} {state} {detail}".rstrip())  # one line
    if failed:
        sys.exit(1)


for _command in (*records_cli.COMMANDS, *keys_cli.COMMANDS):  # runs, models, files, keys, audit
    main.add_command(_command)
main.add_command(init_cli.init)
main.add_command(traffic_cli.traffic_cmd)
main.add_command(jobs_cli.jobs_cmd)
main.add_command(drift_cli.drift_cmd)
for _name, _command in main.commands.items():  # commands about one model take --model after them
    if _name not in ALL_MODEL_COMMANDS:
        accept_model(_command)
