"""What watches live traffic in one serving process: the prediction log and the drift windows.

``watch_live`` registers on the app's dataplane only the observers ``[monitoring]`` switches on,
so with the log off and no windows the request path calls nothing more than before. ``stop``
writes what they hold: ``serve`` calls it when it stops, a gunicorn worker at exit.
"""

from __future__ import annotations

from dataclasses import dataclass

from scoring.inference.dataplane import Dataplane
from scoring.models.model import Models
from scoring.monitoring.predlog import LogOptions, PredictionLog
from scoring.monitoring.reaction import Reaction
from scoring.monitoring.windows import LiveWindows, WindowOptions
from scoring.settings import Settings

LIVE_KEY = "dropscore.live"  # app.extensions: the app's Live


@dataclass
class Live:
    """One process's live monitors; None where ``[monitoring]`` leaves one off."""

    log: PredictionLog | None = None
    windows: LiveWindows | None = None

    def stop(self) -> None:
        """Write what every monitor holds and end its thread."""
        if self.log is not None:
            self.log.stop()
        if self.windows is not None:
            self.windows.stop()


def watch_live(settings: Settings, models: Models, dataplane: Dataplane) -> Live:
    """Register the live observers the settings switch on; return them, to stop them later."""
    monitoring = settings.monitoring
    live = Live()
    if monitoring.log_fraction > 0:
        live.log = PredictionLog(
            lambda name: models.model(name).prediction_log(), LogOptions.of(monitoring)
        )
        dataplane.add(live.log.observe)
    if monitoring.drift_on_scoring:  # live windows follow the drift switch of bulk scoring
        options = WindowOptions.of(monitoring)
        live.windows = LiveWindows(models.model, options, Reaction(monitoring))
        dataplane.add(live.windows.observe)
    return live
