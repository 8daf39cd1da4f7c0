"""The protocols this server speaks besides its own: each adapter's declaration, listed once.

Their routes are registered in this order, after dropscore's own. A new protocol is a module
with its blueprint and its ``Protocol`` declaration (``scoring.api.protocol``), added here.
"""

from __future__ import annotations

from scoring.api import kserve, mlflow, oip
from scoring.api.protocol import Protocol

PROTOCOLS: tuple[Protocol, ...] = (mlflow.PROTOCOL, oip.PROTOCOL, kserve.PROTOCOL)
