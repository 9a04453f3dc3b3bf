"""The client's IP behind a reverse proxy: forwarded headers count only from trusted proxies.

Werkzeug's ProxyFix believes the last hop of ``X-Forwarded-For`` from whoever sends it, so a
client reaching the app directly could name any IP. It is applied only to requests whose
``REMOTE_ADDR`` is in ``PAGEGRID_TRUSTED_PROXIES`` (addresses or CIDR ranges, comma-separated).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from collections.abc import Iterable

from werkzeug.middleware.proxy_fix import ProxyFix

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> list[Network]:
    """``"10.0.0.0/8, 127.0.0.1"`` as networks (ValueError on a typo, at start-up)."""
    return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]


class TrustedProxyFix:
    """WSGI middleware: ProxyFix (one hop of For and Proto) for requests from trusted proxies only."""

    def __init__(self, app: Callable, networks: Iterable[Network]) -> None:
        self.app = app
        self.fixed = ProxyFix(app, x_for=1, x_proto=1)
        self.networks = list(networks)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Rewrite the client address and scheme when the peer is a trusted proxy."""
        if self._trusted(environ.get("REMOTE_ADDR") or ""):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)
