"""dropscore's scoring side: settings, features, training, registry, the API and the CLI."""

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # ``scoring.create_app`` without importing Flask for every ``scoring.*`` import.
    if name == "create_app":
        from scoring.api.app import create_app

        return create_app
    raise AttributeError(name)
