"""Consistent backups of the live database: SQLite's online backup API, or ``pg_dump``.

SQLite: one backup step copies the whole database from a single read transaction, so the copy
is the database as of one commit (``balance == sum(ledger)`` holds in it) while the gateway keeps
writing (WAL mode: the reader blocks no writer). The copy is written beside the target and
renamed into place, so a half-written file never carries the target's name.

PostgreSQL: ``pg_dump --format=custom`` of the configured database (restore with
``pg_restore --clean --if-exists --no-owner -d URL FILE``; see docs/deploy.md).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

# Users whose balance is not the sum of their ledger rows: none in any consistent copy.
_INCONSISTENT = """
SELECT count(*) FROM users
WHERE balance_nanos != (SELECT coalesce(sum(amount_nanos), 0) FROM ledger WHERE ledger.user_id = users.id)
"""


@dataclass(frozen=True)
class BackupResult:
    """What was written and what the copy was checked for."""

    path: Path
    size_bytes: int
    users: int | None = None
    inconsistent_users: int | None = None


def backup(database_url: str, target: Path) -> BackupResult:
    """Copy the database at ``database_url`` to ``target`` (SQLite file or pg_dump archive)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("an in-memory SQLite database cannot be backed up")
        return backup_sqlite(Path(url.database), target)
    if url.get_backend_name() == "postgresql":
        return backup_postgresql(database_url, target)
    raise ValueError(f"no backup method for {url.get_backend_name()} databases")


def backup_sqlite(source: Path, target: Path) -> BackupResult:
    """The online backup API, in one step: a snapshot of one commit."""
    if not source.exists():
        raise ValueError(f"there is no database at {source}")
    target = target.resolve()
    if target == source.resolve():
        raise ValueError("the backup must not overwrite the database itself")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst)  # pages=-1: everything from one read transaction
        dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        (check,) = dst.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            raise RuntimeError(f"the copy failed its integrity check: {check}")
        users = dst.execute("SELECT count(*) FROM users").fetchone()[0]
        inconsistent = dst.execute(_INCONSISTENT).fetchone()[0]
    finally:
        dst.close()
        src.close()
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, target)
    return BackupResult(target, target.stat().st_size, users, inconsistent)


def backup_postgresql(database_url: str, target: Path) -> BackupResult:
    """``pg_dump --format=custom`` (one snapshot: a consistent copy while the gateway runs)."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise ValueError("pg_dump is not on PATH: install the PostgreSQL client tools "
                         "(see docs/deploy.md, 'Backups')")
    url = make_url(database_url).set(drivername="postgresql")
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)  # never on the command line, where ps shows it
    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    done = subprocess.run([pg_dump, "--format=custom", "--no-owner", f"--file={partial}",
                           url.set(password=None).render_as_string(hide_password=False)],
                          env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"pg_dump failed: {done.stderr.strip()}")
    os.replace(partial, target)
    return BackupResult(target, target.stat().st_size)
