"""What makes a serving protocol one: the declaration each protocol adapter makes of itself.

A protocol other than dropscore's own (MLflow's, the Open Inference Protocol, KServe v1) is one
``Protocol`` object in its adapter's module: its blueprint, the shape of its error bodies, the
paths that speak it (so a URL no route matched still gets its clients' error shape), the role
each of its routes needs and which ones are open probes, and how its routes name the model.
The app, the error handlers and auth iterate over ``scoring.api.adapters.PROTOCOLS`` and name
no protocol; adding one is a module with its blueprint and declaration, listed there once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint

# status, our error code, message, details → the protocol's JSON error body
ErrorBody = Callable[[int, str, str, list | None], dict[str, Any]]


@dataclass(frozen=True)
class Protocol:
    """One protocol's identity: blueprint, error body, paths, roles and model naming."""

    blueprint: Blueprint
    error_body: ErrorBody
    roles: Mapping[str, str]  # view name → the lowest role allowed
    open: frozenset[str] = frozenset()  # views anyone may call: the probes orchestrators poll
    paths: tuple[str, ...] = ()  # unrouted paths that speak it: exact matches ("/v2")
    prefixes: tuple[str, ...] = ()  # … and paths under these ("/v2/")
    model_paths: tuple[str, ...] = ()  # … and /models/<name> + these endings ("/invocations")
    # The route argument that names the model (OIP's and KServe's <model:name>), if any.
    model_arg: str | None = None
    # Routes that name no model answer for the default one (MLflow's plain /invocations).
    default_model: bool = False

    @property
    def name(self) -> str:
        """The protocol's name: its blueprint's, the first part of its endpoints."""
        return self.blueprint.name

    def endpoint(self, view: str) -> str:
        """Spell a view as Flask's endpoint: ``blueprint.view``."""
        return f"{self.name}.{view}"

    def endpoint_roles(self) -> dict[str, str]:
        """Return each non-open endpoint with the role it needs, as auth's table spells them."""
        return {self.endpoint(view): role for view, role in self.roles.items()}

    def open_endpoints(self) -> frozenset[str]:
        """Return the endpoints open to anyone."""
        return frozenset(self.endpoint(view) for view in self.open)

    def owns_path(self, path: str) -> bool:
        """Say whether a path no route matched speaks this protocol (for its error's shape)."""
        if path in self.paths or path.startswith(self.prefixes):
            return True
        return bool(self.model_paths) and (
            path.startswith("/models/") and path.endswith(self.model_paths)
        )


def endpoint_roles(protocols: tuple[Protocol, ...]) -> dict[str, str]:
    """Return every declared endpoint's role, for auth's one table."""
    return {e: role for p in protocols for e, role in p.endpoint_roles().items()}


def open_endpoints(protocols: tuple[Protocol, ...]) -> frozenset[str]:
    """Return every endpoint the protocols declare open."""
    return frozenset().union(*(p.open_endpoints() for p in protocols))


def protocol_of_blueprint(
    protocols: tuple[Protocol, ...], blueprint: str | None
) -> Protocol | None:
    """Return the protocol a blueprint belongs to, or None for dropscore's own."""
    for protocol in protocols:
        if protocol.name == blueprint:
            return protocol
    return None
