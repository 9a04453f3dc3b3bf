"""Blueprint ``probes``: ``/healthz``, ``/readyz`` and ``/metrics``, no API key, never rate limited.

- ``GET /healthz``: the process answers (a load balancer's liveness check; touches nothing).
- ``GET /readyz``: the database and, when configured, Redis answer; otherwise 503 with
  ``retry-after`` and what is down, so a load balancer takes the instance out of rotation.
- ``GET /metrics``: Prometheus text. Open from loopback (a request that came through a proxy
  is not loopback, whatever its peer address); from anywhere else only with
  ``Authorization: Bearer $PAGEGRID_METRICS_TOKEN``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

import redis
from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request
from sqlalchemy import text

from pagegrid import metrics
from pagegrid.extensions import db

log = logging.getLogger(__name__)

bp = Blueprint("probes", __name__)

READY_RETRY_AFTER = "5"
REDIS_TIMEOUT_SECONDS = 1.0
_FORWARDING_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded")


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and serving."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when every dependency answers; 503 naming the ones that do not."""
    checks = {"database": _check_database()}
    if current_app.config.get("PAGEGRID_REDIS_URL"):
        checks["redis"] = _check_redis()
    down = [name for name, state in checks.items() if state != "ok"]
    response = jsonify(status="unavailable" if down else "ready", down=down, checks=checks)
    if down:
        response.status_code = 503
        response.headers["retry-after"] = READY_RETRY_AFTER
    return response


def _check_database() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        db.session.rollback()
        log.warning("readyz: database unreachable: %s", exc)
        return f"unreachable ({type(exc).__name__})"


def _check_redis() -> str:
    client = current_app.extensions.get("pagegrid.readyz_redis")
    if client is None:
        client = redis.Redis.from_url(current_app.config["PAGEGRID_REDIS_URL"],
                                      socket_timeout=REDIS_TIMEOUT_SECONDS,
                                      socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
        current_app.extensions["pagegrid.readyz_redis"] = client
    try:
        client.ping()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        log.warning("readyz: redis unreachable: %s", exc)
        return f"unreachable ({type(exc).__name__})"


def _from_loopback() -> bool:
    if any(name in request.headers for name in _FORWARDING_HEADERS):
        return False  # a proxy on this host relays someone else
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


@bp.get("/metrics")
def metrics_view() -> Response:
    """Prometheus exposition of every worker's metrics."""
    if not _from_loopback():
        token = current_app.config.get("PAGEGRID_METRICS_TOKEN")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if not token:
            return Response("Metrics are served to loopback only: set PAGEGRID_METRICS_TOKEN to "
                            "scrape them from elsewhere.\n", status=403, mimetype="text/plain")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return Response("Send Authorization: Bearer <PAGEGRID_METRICS_TOKEN>.\n", status=401,
                            mimetype="text/plain", headers={"WWW-Authenticate": "Bearer"})
    body = metrics.render(current_app.config.get("PROMETHEUS_MULTIPROC_DIR"))
    return Response(body, mimetype=None, content_type=metrics.CONTENT_TYPE)
