"""PageGrid: a self-hosted gateway that resells the Anthropic and OpenAI APIs from a prepaid wallet."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import redis.exceptions
import sqlalchemy.exc
from flask import Blueprint
from flask import Flask
from flask import render_template
from flask import request
from flask.json.provider import DefaultJSONProvider
from limits.errors import StorageError
from sqlalchemy import event
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import ServiceUnavailable

from pagegrid import admin
from pagegrid import api
from pagegrid import cli
from pagegrid import config
from pagegrid import dashboard
from pagegrid import headers
from pagegrid import logs
from pagegrid import money
from pagegrid import outbox
from pagegrid import probes
from pagegrid import proxies
from pagegrid import requestlog
from pagegrid import sessions
from pagegrid import webhooks
from pagegrid.catalog import Catalog
from pagegrid.errors import DependencyDown
from pagegrid.extensions import csrf
from pagegrid.extensions import db
from pagegrid.extensions import limiter
from pagegrid.extensions import login_manager
from pagegrid.extensions import migrate
from pagegrid.limits import RequestRate
from pagegrid.pool import Pool
from pagegrid.settlement import Settlements

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


@limiter.request_filter
def _api_path() -> bool:
    """The API counts its own requests (limits.check_rate, per key): Flask-Limiter's per-route
    check has no limits to find there, so it does not look."""
    return api.is_api_path(request.path)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: config from the environment (or ``test_config``), extensions, blueprints."""
    app = Flask(__name__, instance_path=str(ROOT / "instance"),
                template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(config.from_environ(Path(app.instance_path)))
    if test_config:
        app.config.from_mapping(test_config)
    app.config["SQLALCHEMY_DATABASE_URI"] = config.normalise_database_url(
        app.config["SQLALCHEMY_DATABASE_URI"])
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS",
                          config.engine_options(app.config["SQLALCHEMY_DATABASE_URI"]))
    cast(DefaultJSONProvider, app.json).sort_keys = False  # Flask's provider unless one is configured
    app.wsgi_app = proxies.TrustedProxyFix(  # type: ignore[method-assign]  # Flask's way to add middleware
        app.wsgi_app, proxies.parse_networks(app.config["PAGEGRID_TRUSTED_PROXIES"]))

    db.init_app(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        with app.app_context():
            event.listen(db.engine, "connect", _sqlite_pragmas)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    login_manager.init_app(app)
    sessions.init_app(app, cookieless=api.is_api_path)
    headers.init_app(app)
    csrf.init_app(app)
    csrf.exempt(api.bp)  # API clients authenticate with keys, not cookies
    csrf.exempt(webhooks.bp)  # Stripe signs its events instead
    app.extensions["pagegrid.catalog"] = Catalog()
    app.extensions["pagegrid.pool"] = Pool(app)
    app.extensions["pagegrid.settlements"] = Settlements(app)
    app.extensions["pagegrid.rate"] = RequestRate()

    app.register_blueprint(api.bp)
    app.register_blueprint(api.bp, name="api_root", url_prefix="")  # /messages, /chat/completions, ...
    csrf.exempt(Blueprint("api_root", __name__))
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(webhooks.bp)
    outbox.init_app(app)
    # The site's money filters, for every blueprint's templates (the rules are in pagegrid.money).
    app.add_template_filter(money.format_usd, "usd")
    app.add_template_filter(money.format_per_mtok, "per_mtok")
    app.add_template_global(money.format_per_mtok, "per_mtok")
    app.register_blueprint(probes.bp)
    limiter.exempt(probes.bp)  # a monitor polling /readyz must never be refused
    requestlog.init_app(app)  # after the api blueprint's hooks: the request id is stamped first
    logs.init_app(app)
    limiter.init_app(app)  # after the blueprints: request ids are stamped before limits run
    app.register_error_handler(HTTPException, _http_error)
    app.wsgi_app = api.SlashFolding(app.wsgi_app)  # type: ignore[method-assign]  # as above
    app.register_error_handler(Exception, _unexpected_error)
    cli.register(app)
    return app


def _sqlite_pragmas(connection, _record) -> None:  # noqa: ANN001 - DB-API objects
    # WAL lets readers run beside the writer; synchronous=NORMAL skips an fsync per commit
    # (still safe against a crashed process; PostgreSQL is the choice for power-loss durability).
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _http_error(exc: HTTPException):  # noqa: ANN202 - a Response or an HTML tuple
    if api.wants_json():
        return api.error_response(api.http_error(exc))
    return render_template("error.html", error=exc), exc.code or 500



def _unexpected_error(exc: Exception):  # noqa: ANN202
    down = dependency_down(exc)
    if down is not None:
        log.warning("%s unavailable during %s: %s", down.what, request.path, exc)
        db.session.rollback()
        if api.is_api_path(request.path):
            return api.error_response(down)
        page = ServiceUnavailable(down.message)
        return render_template("error.html", error=page), 503, down.headers
    if api.is_api_path(request.path):
        return api.handle_unexpected(exc)
    log.exception("unhandled error in %s", request.path)
    return render_template("error.html", error=None), 500


def dependency_down(exc: Exception) -> DependencyDown | None:
    """The 503 for an exception that means the database or Redis is unreachable, else None."""
    if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                        sqlalchemy.exc.TimeoutError)) or (
            isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated):
        return DependencyDown("database")
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                        StorageError)):
        return DependencyDown("rate limit store (Redis)")
    return None
