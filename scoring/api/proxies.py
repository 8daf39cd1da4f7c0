"""Which proxies may say who the client is and whether it spoke TLS: ``[server] trusted_proxies``.

Behind a TLS-terminating proxy the server sees plain http from the proxy's address; the proxy
says what it saw in ``X-Forwarded-Proto`` and ``X-Forwarded-For``. Anyone can send those
headers, so they are honoured only when the connection itself comes from a listed address or
network, and removed from every other request before the app sees them. From a trusted peer,
the scheme is the last ``X-Forwarded-Proto`` value (the one our proxy set), and the client is
the right-most ``X-Forwarded-For`` address that is not itself a trusted proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

    from scoring.settings import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SCHEMES = ("http", "https")


def network_problem(text: str) -> str | None:
    """Say why a ``trusted_proxies`` entry is not an address or CIDR, or None when it is one."""
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return f"addresses or CIDRs such as 10.0.0.5 or 10.0.0.0/8 ({text!r} is neither)"
    return None


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Turn checked ``trusted_proxies`` entries into networks (an address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


class TrustedProxies:
    """WSGI middleware: apply forwarded headers from trusted peers, drop them from anyone else."""

    def __init__(self, app: WSGIApplication, networks: Iterable[Network]) -> None:
        self.app = app
        self.networks = tuple(networks)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        """Rewrite the request's scheme and client address only when a trusted proxy sent it."""
        proto = environ.pop("HTTP_X_FORWARDED_PROTO", None)
        chain = environ.pop("HTTP_X_FORWARDED_FOR", None)
        if self.trusts(environ.get("REMOTE_ADDR", "")):
            scheme = (proto or "").rsplit(",", 1)[-1].strip().lower()
            if scheme in SCHEMES:
                environ["wsgi.url_scheme"] = scheme
            client = self.client(chain or "")
            if client is not None:
                environ["REMOTE_ADDR"] = client
        return self.app(environ, start_response)

    def trusts(self, address: str) -> bool:
        """Say whether an address is one of the trusted proxies."""
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client(self, chain: str) -> str | None:
        """Return the right-most address in ``X-Forwarded-For`` that is not a trusted proxy."""
        hops = [hop.strip() for hop in chain.split(",") if hop.strip()]
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return None  # a forged or garbled chain names no one
            if not self.trusts(hop):
                return hop
        return hops[0] if hops else None


def trust_proxies(app: Flask, settings: Settings) -> None:
    """Put the forwarded-header check in front of the app (first, before anything reads them)."""
    networks = parse_networks(settings.server.trusted_proxies)
    app.wsgi_app = TrustedProxies(app.wsgi_app, networks)  # type: ignore[method-assign]
