"""``make e2e`` / ``make e2e-latest``: PageGrid end to end with the real clients, against a fake provider.

Starts a fresh PostgreSQL database, the fake provider (in this process), PageGrid under gunicorn
with gevent as ``make run`` does (plus a second one with a 3-second rate-limit window), provisions
users and keys through the CLI, runs every scenario in ``e2e/scenarios/`` and prints a markdown
table: client × version × scenario × pass/fail (with the reason) × seconds. Exits 1 if any failed.

    [PAGEGRID_E2E_DIR=.e2e-latest] .venv/bin/python -m e2e.run [-k SUBSTRING ...] [--list]

Run ``bash e2e/install.sh`` first (``make e2e`` does): it installs the pinned clients into ``.e2e/``;
``bash e2e/install.sh --latest`` (``make e2e-latest``) the newest ones into ``.e2e-latest/``, which
``PAGEGRID_E2E_DIR`` selects.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from e2e.context import BROKE
from e2e.context import FUNDED
from e2e.context import REGISTRY
from e2e.context import Context
from e2e.context import Entry
from e2e.harness import CLIENTS
from e2e.harness import NODE24_BIN
from e2e.harness import VENV_BIN
from e2e.harness import WORK
from e2e.harness import Bank
from e2e.harness import Database
from e2e.harness import Failed
from e2e.harness import Gateway
from e2e.harness import Scratch
from e2e.harness import check
from e2e.provider import Provider
from e2e.scenarios import claude_code  # registers scenarios (and names Claude Code's default model)
from e2e.scenarios import codex  # noqa: F401 - registers scenarios
from e2e.scenarios import openclaw  # noqa: F401
from e2e.scenarios import sdks  # noqa: F401


@dataclass
class Outcome:
    """One row of the report."""

    entry: Entry
    passed: bool
    seconds: float
    detail: str


def _installed() -> list[str]:
    missing = [str(p) for p in (CLIENTS / ".bin" / "claude", CLIENTS / ".bin" / "codex",
                                CLIENTS / ".bin" / "openclaw", NODE24_BIN / "node") if not p.exists()]
    return missing


def run_one(ctx: Context, entry: Entry) -> Outcome:
    """Run a scenario; any exception is a failure with its message."""
    print(f"▶ {entry.client}: {entry.name}", flush=True)
    start = time.monotonic()
    try:
        detail = entry.func(ctx)
        passed = True
    except Failed as exc:
        detail, passed = str(exc), False
    except Exception:  # a crash in a scenario is a failure of that scenario, not of the run
        detail, passed = traceback.format_exc(), False
    outcome = Outcome(entry, passed, time.monotonic() - start, detail)
    _dump_requests(ctx, entry)
    status = "PASS" if passed else "FAIL"
    print(f"  {status} in {outcome.seconds:.1f}s: {detail.splitlines()[0] if detail else ''}", flush=True)
    if not passed:
        print("    " + detail.replace("\n", "\n    "), flush=True)
    return outcome


def _dump_requests(ctx: Context, entry: Entry) -> None:
    """What the provider received in the scenario, for reading after a failure."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{entry.client} {entry.name}".lower()).strip("-")[:80]
    with open(ctx.logs / f"upstream-{slug}.jsonl", "w") as fh:
        for rec in ctx.provider.requests:
            fh.write(json.dumps({"method": rec.method, "path": rec.path, "headers": rec.headers,
                                 "body": rec.body}) + "\n")


def client_versions() -> dict[str, str]:
    """The installed version of each client of the report, read from what the install put there."""
    def npm(folder: Path) -> str:
        try:
            return json.loads((folder / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            return "?"

    def command(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip() or "?"
        except OSError:
            return "?"

    python = command([str(VENV_BIN / "python"), "-c", "from importlib.metadata import version as v; "
                      "print('anthropic', v('anthropic') + ', openai', v('openai'))"])
    curl = command(["curl", "--version"]).split()
    return {
        "Claude Code": npm(CLIENTS / "@anthropic-ai" / "claude-code"),
        "Codex CLI": npm(CLIENTS / "@openai" / "codex"),
        "OpenClaw": f"{npm(CLIENTS / 'openclaw')} (Node {npm(NODE24_BIN.parent)})",
        "JS SDK": f"@anthropic-ai/sdk {npm(CLIENTS / '@anthropic-ai' / 'sdk')}, "
                  f"openai {npm(CLIENTS / 'openai')}",
        "Python SDK": python,
        "curl": curl[1] if len(curl) > 1 else "?",
    }


def _reason(detail: str) -> str:
    """A failure in one line: the check that failed, and the client's first words if it printed any."""
    lines = [line.strip() for line in detail.strip().splitlines()]
    reason = lines[0] if lines else ""
    for marker in ("--- stdout ---", "--- stderr ---"):
        said = lines[lines.index(marker) + 1:] if marker in lines else []
        first = next((line for line in said if line and not line.startswith("---")), "")
        if first:
            reason += f" ({first[:120]})"
            break
    return reason[:200]


def report(outcomes: list[Outcome], total: float, notes: list[str], versions: dict[str, str]) -> str:
    """The closing table (markdown): client, version, scenario, pass/fail with the reason, seconds."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| client | version | scenario | result | seconds |", "|---|---|---|---|---:|"]
    for o in outcomes:
        result = "pass" if o.passed else f"**FAIL**: {_reason(o.detail)}"
        rows.append(f"| {o.entry.client} | {cell(versions.get(o.entry.client, '?'))} | {cell(o.entry.name)} "
                    f"| {cell(result)} | {o.seconds:.1f} |")
    passed = sum(o.passed for o in outcomes)
    rows.append(f"\ne2e: {passed} passed, {len(outcomes) - passed} failed in {total:.0f}s")
    failed = [o for o in outcomes if not o.passed]
    if failed:
        rows.append("\nFailures:")
        for o in failed:
            detail = o.detail.strip().replace("\n", "\n    ")
            rows.append(f"- {o.entry.client}: {o.entry.name}\n    {detail}")
    if notes:
        rows.append("\nNotes:")
        rows += [f"- {n}" for n in notes]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Set up, run the selected scenarios, report."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", action="append", default=[], help="run scenarios whose client or name "
                        "contains this (case-insensitive); repeatable")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    selected = [e for e in REGISTRY
                if not args.k or any(k.lower() in f"{e.client} {e.name}".lower() for k in args.k)]
    if args.list:
        for e in selected:
            print(f"{e.client}: {e.name}")
        return 0
    missing = _installed()
    if missing:
        print(f"The clients are not installed in {WORK}; run `make e2e` or `make e2e-latest`. Missing:\n  "
              + "\n  ".join(missing))
        return 2

    started = time.monotonic()
    logs = WORK / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    db = Database()
    provider = Provider()
    gateways: list[Gateway] = []
    outcomes: list[Outcome] = []
    try:
        gateway = Gateway(db, provider.url, logs, "main")
        gateways.append(gateway)
        gateway.start()
        needs_fast = any("rpm" in e.name for e in selected)
        fast = None
        if needs_fast:
            fast = Gateway(db, provider.url, logs, "rpm-window-3s", {"PAGEGRID_RPM_WINDOW_SECONDS": "3"})
            gateways.append(fast)
            fast.start(migrate=False)
        bank = Bank(gateway, db)
        bank.user(FUNDED, "100")
        bank.user(BROKE, None)
        # The catalog of a deployment whose daily sync-models has seen Anthropic list Claude Code's
        # default model (the price list has it, the seed does not).
        provider.anthropic_models = [claude_code.DEFAULT_MODEL]
        synced = gateway.cli("sync-models")
        provider.anthropic_models = []
        check(f"added {claude_code.DEFAULT_MODEL}: price list" in synced, f"sync-models printed:\n{synced}")
        gateway.wait_ready()
        if fast is not None:
            fast.wait_ready()
        print(f"PageGrid at {gateway.url} (database {db.name}), fake provider at {provider.url}; "
              f"setup took {time.monotonic() - started:.1f}s", flush=True)
        ctx = Context(provider, gateway, bank, Scratch(WORK / "homes"), logs, fast)
        for entry in selected:
            outcomes.append(run_one(ctx, entry))
        notes = ctx.notes
    finally:
        for gw in gateways:
            gw.stop()
        provider.close()
        db.drop()
    total = time.monotonic() - started
    print("\n" + report(outcomes, total, notes, client_versions()), flush=True)
    print(f"\nClient transcripts and gunicorn logs: {logs}")
    return 0 if outcomes and all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
