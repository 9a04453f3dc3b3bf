"""Fixtures: a fresh database per run (SQLite or PostgreSQL), the fake upstream, real SDK clients."""

from __future__ import annotations

import functools
import os
import re
import secrets
import threading
import time
from pathlib import Path

import anthropic
import httpx2
import openai
import psycopg
import pytest
from flask.testing import FlaskClient
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

from pagegrid import billing
from pagegrid import create_app
from pagegrid.catalog import seed_catalog
from pagegrid.extensions import db
from pagegrid.keys import create_key
from pagegrid.models import ApiKey
from pagegrid.models import AuditEntry
from pagegrid.models import CatalogModel
from pagegrid.models import Hold
from pagegrid.models import KeyUsage
from pagegrid.models import LedgerEntry
from pagegrid.models import OneTimeSecret
from pagegrid.models import OutboxMessage
from pagegrid.models import PasswordReset
from pagegrid.models import PriceGroup
from pagegrid.models import PriceRule
from pagegrid.models import RecoveryCode
from pagegrid.models import RequestLogEntry
from pagegrid.models import StoredResponse
from pagegrid.models import StripeTopUp
from pagegrid.models import TopUpCode
from pagegrid.models import Upstream
from pagegrid.models import UpstreamStatus
from pagegrid.models import User
from pagegrid.settlement import settlements
from pagegrid.users import create_user
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream import serve

UPSTREAM_KEY = "sk-ant-fake-upstream-key"
OPENAI_UPSTREAM_KEY = "sk-openai-fake-upstream-key"
PASSWORD = "pw-123456-long"
POSTGRES_ADMIN_URL = os.environ.get("PAGEGRID_TEST_POSTGRES_URL",
                                    "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", choices=("sqlite", "postgresql"), default="sqlite",
                     help="database the suite runs on")


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A new, migrated database for this run; dropped at the end."""
    if request.config.getoption("--db") == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'pagegrid.db'}"
        _migrate(url)
        yield url
        return
    name = f"pagegrid_test_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        _migrate(url)
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(url: str) -> None:
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True})
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session")
def fake_server():
    fake = FakeUpstream()
    server = serve(fake)
    yield fake
    server.shutdown()


@pytest.fixture
def fake_upstream(fake_server: FakeUpstream) -> FakeUpstream:
    """The fake provider, with no script and no recorded requests."""
    fake_server.reset()
    return fake_server


@pytest.fixture
def app(database_url: str, fake_upstream: FakeUpstream, tmp_path: Path):
    """An app on the run's database, emptied and re-seeded, pointed at the fake upstream."""
    app = create_app({
        "PAGEGRID_JOURNAL_DIR": str(tmp_path / "journal"),
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "PAGEGRID_ANTHROPIC_URL": fake_upstream.url,
        "PAGEGRID_ANTHROPIC_KEY": UPSTREAM_KEY,
        "PAGEGRID_OPENAI_URL": fake_upstream.url,
        "PAGEGRID_OPENAI_KEY": OPENAI_UPSTREAM_KEY,
        "PAGEGRID_DEMO_DELAY": 0.0,
        "PAGEGRID_UPSTREAM_READ_TIMEOUT": 5.0,
        "PAGEGRID_UPSTREAM_CONNECT_TIMEOUT": 2.0,
    })
    app.test_client_class = ReadingClient
    with app.app_context():
        for table in (StoredResponse, RequestLogEntry, AuditEntry, RecoveryCode, OneTimeSecret, OutboxMessage,
                      PasswordReset, LedgerEntry, Hold, KeyUsage, TopUpCode, StripeTopUp, ApiKey, User,
                      PriceGroup, Upstream, UpstreamStatus, CatalogModel, PriceRule):
            db.session.execute(delete(table))
        db.session.commit()
        seed_catalog()
    yield app
    with app.app_context():
        try:
            _assert_every_wallet_consistent()
            assert settlements(app).pending() == 0, "a settlement was left waiting for a retry"
        finally:
            settlements(app).stop()
            db.session.remove()
            db.engine.dispose()


def _assert_every_wallet_consistent(timeout: float = 10.0) -> None:
    """After every test: no hold left open, and balance == sum(ledger) for every user."""
    deadline = time.monotonic() + timeout
    while db.session.scalar(select(func.count()).select_from(Hold)) and time.monotonic() < deadline:
        db.session.rollback()
        time.sleep(0.05)  # a live server settles right after its reply
    assert db.session.scalar(select(func.count()).select_from(Hold)) == 0, "a hold was left open"
    sums = select(LedgerEntry.user_id, func.sum(LedgerEntry.amount_nanos).label("total")) \
        .group_by(LedgerEntry.user_id).subquery()
    wrong = db.session.execute(
        select(User.email, User.balance_nanos, User.held_nanos, func.coalesce(sums.c.total, 0))
        .outerjoin(sums, sums.c.user_id == User.id)
        .where((User.balance_nanos != func.coalesce(sums.c.total, 0)) | (User.held_nanos != 0))).all()
    assert not wrong, f"balance != sum(ledger) or money still held: {wrong}"


class ReadingClient(FlaskClient):
    """Reads every response to the end and closes it, as an HTTP client does."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@functools.cache
def password_hash() -> str:
    """PASSWORD hashed once per run: every test user gets it (hashing costs ~0.1 s each)."""
    return generate_password_hash(PASSWORD)


class Wallets:
    """Factories and money checks that go through PageGrid's own code."""

    def __init__(self, app) -> None:
        self.app = app

    def user(self, balance_usd: str = "10", email: str | None = None, admin: bool = False) -> int:
        with self.app.app_context():
            user = create_user(email or f"user-{secrets.token_hex(4)}@example.com", PASSWORD, admin,
                               password_hash=password_hash())
            if balance_usd != "0":
                billing.credit(user.id, billing.usd_to_nanos(balance_usd), "test funds")
            return user.id

    def key(self, user_id: int, **options) -> str:
        """A key for the user; a high RPM and concurrency unless the test is about limits."""
        options.setdefault("rpm", 10_000)
        options.setdefault("concurrency", 1_000)
        with self.app.app_context():
            _, secret = create_key(db.session.get(User, user_id), **options)
            return secret

    def email(self, user_id: int) -> str:
        with self.app.app_context():
            return db.session.get(User, user_id).email

    def balance(self, user_id: int) -> int:
        with self.app.app_context():
            return db.session.scalar(select(User.balance_nanos).where(User.id == user_id))

    def charges(self, user_id: int) -> list[LedgerEntry]:
        with self.app.app_context():
            rows = db.session.scalars(
                select(LedgerEntry).where(LedgerEntry.user_id == user_id, LedgerEntry.kind == "usage")
                .order_by(LedgerEntry.id)).all()
            db.session.expunge_all()
            return list(rows)

    def wait_settled(self, user_id: int, timeout: float = 10.0) -> None:
        """Wait until no request of the user holds money (a live server settles after replying)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.app.app_context():
                open_holds = db.session.scalar(
                    select(func.count()).select_from(Hold).where(Hold.user_id == user_id))
            if not open_holds:
                return
            time.sleep(0.05)
        raise AssertionError(f"user {user_id} still has {open_holds} open holds")

    def assert_consistent(self, user_id: int) -> None:
        """balance == sum(ledger), and no hold is left open."""
        with self.app.app_context():
            user = db.session.get(User, user_id)
            db.session.refresh(user)
            assert user.balance_nanos == billing.ledger_sum(user_id)
            holds = db.session.scalar(select(func.count()).select_from(Hold).where(Hold.user_id == user_id))
            assert holds == 0
            assert user.held_nanos == 0


class Browser:
    """A logged-in (or not) dashboard session over the test client, CSRF tokens included."""

    CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')

    def __init__(self, app) -> None:
        self.client = app.test_client()

    def csrf(self, path: str = "/login") -> str:
        page = self.client.get(path).get_data(as_text=True)
        return self.CSRF.search(page).group(1)

    def login(self, email: str, password: str = PASSWORD):
        return self.client.post("/login", data={"email": email, "password": password,
                                                "csrf_token": self.csrf()})

    def get(self, path: str, **kwargs):
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict | None = None, *, token_from: str = "/dashboard", **kwargs):
        """POST a form with a valid CSRF token (taken from ``token_from``)."""
        return self.client.post(path, data={**(data or {}), "csrf_token": self.csrf(token_from)}, **kwargs)


@pytest.fixture
def browser(app) -> Browser:
    """A fresh, logged-out dashboard session."""
    return Browser(app)


@pytest.fixture
def wallets(app) -> Wallets:
    return Wallets(app)


@pytest.fixture
def funded(wallets: Wallets):
    """(user_id, key) for a user with $10."""
    user_id = wallets.user("10")
    return user_id, wallets.key(user_id)


@pytest.fixture
def sdk(app):
    """Build a real ``anthropic.Anthropic`` client wired to the app in-process."""
    clients = []

    def make(key: str, *, base_url: str = "http://gateway.test", bearer: bool = False,
             **kwargs) -> anthropic.Anthropic:
        http_client = httpx2.Client(transport=httpx2.WSGITransport(app=app))
        clients.append(http_client)
        auth = {"auth_token": key} if bearer else {"api_key": key}
        kwargs.setdefault("max_retries", 0)
        return anthropic.Anthropic(base_url=base_url, http_client=http_client, **auth, **kwargs)

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def openai_sdk(app):
    """Build a real ``openai.OpenAI`` client wired to the app in-process."""
    clients = []

    def make(key: str, **kwargs) -> openai.OpenAI:
        http_client = httpx2.Client(transport=httpx2.WSGITransport(app=app))
        clients.append(http_client)
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("base_url", "http://gateway.test/v1")
        return openai.OpenAI(api_key=key, http_client=http_client, **kwargs)

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def live_server(app):
    """The app on a real threaded HTTP server on loopback (for concurrency and disconnects)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
