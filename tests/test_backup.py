"""``flask --app app backup PATH`` while the gateway writes, and restoring what it wrote."""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import requests
from sqlalchemy import select

from pagegrid import billing
from pagegrid import create_app
from pagegrid.extensions import db
from pagegrid.models import User
from tests.conftest import POSTGRES_ADMIN_URL
from tests.test_live import start_gunicorn

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
CONSISTENT = """
SELECT count(*) FROM users
WHERE balance_nanos != (SELECT coalesce(sum(amount_nanos), 0) FROM ledger WHERE ledger.user_id = users.id)
   OR held_nanos != (SELECT coalesce(sum(amount_nanos), 0) FROM holds WHERE holds.user_id = users.id)
"""


def flask_cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEGRID_")}
    env["PAGEGRID_DATABASE_URL"] = database_url
    return subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "app", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def sqlite_only(database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("the SQLite backup API (the PostgreSQL run tests pg_dump)")
    return database_url


@pytest.mark.live
def test_backup_during_a_write_load_is_consistent_and_restores(sqlite_only, app, fake_server, fake_upstream,
                                                               wallets, tmp_path):
    users = [wallets.user("30") for _ in range(4)]
    keys = [wallets.key(user) for user in users]
    stop = threading.Event()
    copies: list[Path] = []
    with start_gunicorn(sqlite_only, fake_server, tmp_path,
                        {"PAGEGRID_JOURNAL_DIR": str(tmp_path / "journal")}) as url:
        def traffic(i: int) -> int:
            codes = 0
            while not stop.is_set():
                stream = codes % 2 == 0
                requests.post(f"{url}/v1/messages", json={**BODY, "stream": stream}, timeout=20,
                              headers={"x-api-key": keys[i]})
                codes += 1
            return codes

        def credits() -> int:
            done = 0
            while not stop.is_set():
                with app.app_context():
                    billing.credit(users[done % 4], 1, "backup test top-up")
                done += 1
            return done

        with ThreadPoolExecutor(6) as pool:
            load = [pool.submit(traffic, i) for i in range(4)] + [pool.submit(credits)]
            try:
                for n in range(3):
                    target = tmp_path / "backups" / f"pagegrid-{n}.db"
                    done = flask_cli(sqlite_only, "backup", str(target))
                    assert done.returncode == 0, done.stderr
                    assert f"Backed up to {target}" in done.stdout and "balance == sum(ledger)" in done.stdout
                    copies.append(target)
            finally:
                stop.set()
            sent = sum(f.result() for f in load)
        for user in users:
            wallets.wait_settled(user)
    assert sent > 10
    counts = []
    for copy in copies:
        with sqlite3.connect(copy) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert conn.execute(CONSISTENT).fetchone() == (0,), copy
            counts.append(conn.execute("SELECT count(*) FROM ledger").fetchone()[0])
        assert not copy.with_name(f".{copy.name}.partial").exists()
    assert counts == sorted(counts)  # later copies hold at least as much as earlier ones

    # restore: the copy becomes the database (gateway stopped), init-db, and it serves again
    restored = tmp_path / "restored" / "pagegrid.db"
    restored.parent.mkdir()
    restored.write_bytes(copies[-1].read_bytes())
    restored_url = f"sqlite:///{restored}"
    done = flask_cli(restored_url, "init-db")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(copies[-1]) as conn:
        balance_then = conn.execute("SELECT balance_nanos FROM users WHERE id = ?", (users[0],)).fetchone()[0]
    again = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": restored_url,
                        "PAGEGRID_JOURNAL_DIR": str(tmp_path / "journal-restored"),
                        "PAGEGRID_ANTHROPIC_URL": fake_upstream.url, "PAGEGRID_ANTHROPIC_KEY": "sk-ant-x"})
    with again.app_context():
        balance = db.session.scalar(select(User.balance_nanos).where(User.id == users[0]))
        assert balance == balance_then  # the copy's wallet, to the nano-USD
        assert balance == billing.ledger_sum(users[0])
        db.engine.dispose()
    response = again.test_client().post("/v1/messages", json=BODY, headers={"x-api-key": keys[0]})
    assert response.status_code == 200
    with again.app_context():
        assert db.session.scalar(select(User.balance_nanos).where(User.id == users[0])) == \
            billing.ledger_sum(users[0])
        db.engine.dispose()


def test_backup_refuses_bad_targets(sqlite_only, runner, tmp_path):
    path = sqlite_only.removeprefix("sqlite:///")
    result = runner.invoke(args=["backup", path])
    assert result.exit_code != 0 and "must not overwrite the database itself" in result.output
    result = runner.invoke(args=["backup", str(tmp_path)])
    assert result.exit_code != 0


def test_pg_dump_backup_restores_into_a_new_database(database_url, app, client, funded, wallets, runner,
                                                     tmp_path, fake_upstream):
    if not database_url.startswith("postgresql"):
        pytest.skip("pg_dump needs PostgreSQL (--db=postgresql)")
    user_id, key = funded
    assert client.post("/v1/messages", json=BODY, headers={"x-api-key": key}).status_code == 200
    target = tmp_path / "pagegrid.dump"
    result = runner.invoke(args=["backup", str(target)])
    assert result.exit_code == 0, result.output
    name = f"pagegrid_restore_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    restored = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        done = subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "-d", restored, str(target)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        with psycopg.connect(restored) as conn:
            assert conn.execute(CONSISTENT).fetchone() == (0,)
            assert conn.execute("SELECT balance_nanos FROM users WHERE id = %s", (user_id,)).fetchone()[0] \
                == wallets.balance(user_id)
        assert flask_cli(restored, "init-db").returncode == 0
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
