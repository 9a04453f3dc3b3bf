"""Settlement that no outage can lose: hold leases, background retries and the journal.

- Every request this process has admitted and not yet settled is *in flight*; a background
  loop renews the leases of their holds (one UPDATE for all of them), so ``release-holds`` and
  the loops of other workers only ever free the holds of a worker that died.
- A settlement that cannot be written (database down, any error) is appended to this process's
  journal file (fsynced) and retried in the background with backoff. The journal file is locked
  while its process lives; a file nobody holds belongs to a dead process and is replayed by the
  next worker's loop, at ``init-db`` and by ``flask --app app settle-pending``. Replays are
  exactly-once: the ledger's unique ``request_id`` refuses a second charge.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path

import gevent
from flask import Flask
from gevent import monkey

from pagegrid import billing
from pagegrid import metrics
from pagegrid.extensions import db
from pagegrid.pricegroups import Multiplier
from pagegrid.translate.usage import Usage

log = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0


def _encode(charge: billing.Charge) -> str:
    record = dataclasses.asdict(charge)
    record["started_at"] = charge.started_at.isoformat()
    return json.dumps(record, separators=(",", ":"))


def _decode(line: str) -> billing.Charge:
    record = json.loads(line)
    record["usage"] = Usage(**record["usage"])
    record["price"] = billing.Price(**record["price"])
    record["multiplier"] = Multiplier(**record.get("multiplier", {}))  # older lines: list prices
    record["started_at"] = datetime.fromisoformat(record["started_at"])
    return billing.Charge(**record)


class Journal:
    """This process's append-only file of settlements not yet written to the database."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file = None
        self._pid = 0

    def append(self, charge: billing.Charge) -> None:
        """Write ``charge`` durably (fsync) before anything else is attempted."""
        handle = self._own()
        handle.write(_encode(charge) + "\n")
        handle.flush()
        os.fsync(handle.fileno())

    def clear(self) -> None:
        """Every journaled settlement of this process is in the database now."""
        if self._file is not None and self._pid == os.getpid():
            self._file.truncate(0)
            self._file.seek(0)

    def _own(self):  # noqa: ANN202 - a text file handle
        if self._file is None or self._pid != os.getpid():  # a fork gets its own file
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"settle-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
            self._file = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - lives with the process
            fcntl.flock(self._file, fcntl.LOCK_EX)
            self._pid = os.getpid()
        return self._file

    def replay_orphans(self) -> tuple[int, int]:
        """Settle what dead processes journaled; return (settled or already settled, still failing)."""
        done = failed = 0
        if not self.directory.is_dir():
            return done, failed
        for path in sorted(self.directory.glob("settle-*.jsonl")):
            if self._file is not None and path.name == Path(self._file.name).name:
                continue
            with open(path, "r+", encoding="utf-8") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive and retries it itself
                left = []
                for line in handle.read().splitlines():
                    if not line.strip():
                        continue
                    try:
                        billing.settle(_decode(line))
                        done += 1
                    except Exception:
                        db.session.rollback()
                        log.exception("journaled settlement still failing; kept in %s", path)
                        left.append(line)
                        failed += 1
                if left:
                    handle.seek(0)
                    handle.truncate(0)
                    handle.write("".join(f"{line}\n" for line in left))
                    handle.flush()
                    os.fsync(handle.fileno())
                else:
                    path.unlink()
        return done, failed


class Settlements:
    """Per process: requests in flight, their lease renewal, and settlements waiting to retry."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.lease_seconds = float(app.config["PAGEGRID_HOLD_LEASE_SECONDS"])
        self.journal = Journal(Path(app.config["PAGEGRID_JOURNAL_DIR"]))
        self._lock = threading.Lock()
        self._in_flight: dict[str, None] = {}
        self._pending: list[tuple[float, float, billing.Charge]] = []  # (due, delay, charge)
        self._loop_pid = 0
        self._wake = threading.Event()
        self.draining = False  # the worker is stopping: streams end at their next event
        self._stopped = False

    # -- in flight ---------------------------------------------------------------------------

    def admitted(self, request_id: str) -> None:
        """A hold was taken for ``request_id``: keep its lease alive until it settles."""
        with self._lock:
            self._in_flight[request_id] = None
        self._ensure_loop()

    def in_flight(self, request_id: str) -> bool:
        """``request_id`` holds money this process has neither settled, released nor journaled."""
        with self._lock:
            return request_id in self._in_flight

    def finished(self, request_id: str) -> None:
        """``request_id`` is settled or released (or queued for a retry)."""
        with self._lock:
            self._in_flight.pop(request_id, None)

    def drain(self, seconds: float) -> None:
        """The worker is stopping: let streams run ``seconds`` more, then end every one still
        open at its next event (the client gets an SSE error event and is charged for what it
        received; a stream silent until gunicorn's own deadline is settled as it is killed)."""
        def end_streams() -> None:
            self.draining = True

        if monkey.is_module_patched("threading"):  # called from a signal handler in the hub
            gevent.spawn_later(max(0.0, seconds), end_streams)
        else:
            threading.Timer(max(0.0, seconds), end_streams).start()

    # -- settlement --------------------------------------------------------------------------

    def settle(self, charge: billing.Charge) -> None:
        """Charge now, or journal the charge and retry it in the background. Never raises."""
        try:
            with self.app.app_context():
                billing.settle(charge)
        except Exception:
            log.exception("settlement of %s failed; journaled and retried in the background",
                          charge.request_id)
            metrics.journaled()
            self._defer(charge)
        self.finished(charge.request_id)

    def _defer(self, charge: billing.Charge) -> None:
        with self._lock:  # the journal is cleared under the same lock once nothing is pending
            try:
                self.journal.append(charge)
            except OSError:
                log.exception("could not journal the settlement of %s", charge.request_id)
            self._pending.append((time.monotonic() + RETRY_FIRST_SECONDS, RETRY_FIRST_SECONDS, charge))
        self._ensure_loop()
        self._wake.set()

    def stop(self) -> None:
        """End the background loop once nothing is in flight or pending (tests, shutdown)."""
        self._stopped = True
        self._wake.set()

    def pending(self) -> int:
        """Settlements of this process waiting for a retry."""
        with self._lock:
            return len(self._pending)

    # -- the background loop -----------------------------------------------------------------

    def _ensure_loop(self) -> None:
        if self._loop_pid == os.getpid():
            return
        with self._lock:
            if self._loop_pid == os.getpid():
                return
            self._loop_pid = os.getpid()
        threading.Thread(target=self._run, name="pagegrid-settlements", daemon=True).start()

    def _run(self) -> None:
        renew_every = max(0.05, self.lease_seconds / 4)
        last_renewal = last_sweep = last_busy = time.monotonic()
        while True:
            self._wake.wait(timeout=min(renew_every, RETRY_FIRST_SECONDS))
            self._wake.clear()
            now = time.monotonic()
            with self._lock:
                busy = bool(self._in_flight or self._pending)
                if busy:
                    last_busy = now
                elif self._stopped or now - last_busy > self.lease_seconds:
                    self._loop_pid = 0  # idle: the next admission starts a new loop
                    return
            if not busy:
                continue  # an idle loop touches no database
            if now - last_renewal >= renew_every:
                last_renewal = now
                self._guarded(self._renew)
            self._guarded(self._retry_due)
            if now - last_sweep >= self.lease_seconds:
                last_sweep = now
                self._guarded(self.sweep)

    def _guarded(self, step) -> None:  # noqa: ANN001
        try:
            with self.app.app_context():
                step()
        except Exception as exc:  # the database may be down: try again next round
            log.warning("settlement loop: %s failed: %s", step.__name__, exc)

    def _renew(self) -> None:
        with self._lock:
            ids = list(self._in_flight)
        if ids:
            billing.renew_leases(ids, self.lease_seconds)

    def _retry_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [item for item in self._pending if item[0] <= now]
            self._pending = [item for item in self._pending if item[0] > now]
        for index, (_, delay, charge) in enumerate(due):
            try:
                billing.settle(charge)
            except Exception:
                db.session.rollback()
                metrics.retried(ok=False)
                backoff = min(delay * 2, RETRY_MAX_SECONDS)
                with self._lock:
                    self._pending.extend((now + backoff, backoff, c) for _, _, c in due[index:])
                raise
            metrics.retried(ok=True)
            log.info("retried settlement of %s succeeded", charge.request_id)
        with self._lock:
            if due and not self._pending:
                self.journal.clear()

    def sweep(self) -> None:
        """Replay dead processes' journals, then free the holds whose lease expired."""
        self.journal.replay_orphans()
        billing.release_expired_holds()


def settlements(app: Flask) -> Settlements:
    """This app's settlement service."""
    return app.extensions["pagegrid.settlements"]
