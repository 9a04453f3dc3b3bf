"""Every file docs/deploy.md shows lives in deploy/ and is checked here (syntax at least)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
GUIDE = (ROOT / "docs" / "deploy.md").read_text()
VENV = Path(sys.executable).parent.parent


def test_the_guide_and_the_files_match():
    shown = set(re.findall(r"\]\(\.\./(deploy/[^)]+)\)", GUIDE))
    files = {str(p.relative_to(ROOT)) for p in DEPLOY.rglob("*") if p.is_file()}
    assert shown == files
    for topic in ("systemd", "nginx", "Caddy", "PAGEGRID_PUBLIC_URL", "proxy_buffering off", "cron",
                  "prune", "settle-pending", "backup", "logrotate", "Upgrading", "PostgreSQL", "Redis",
                  "pg_dump", "pg_restore"):
        assert topic in GUIDE, topic


def test_systemd_unit_verifies(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    env_file = tmp_path / "pagegrid.env"
    env_file.write_text("PAGEGRID_LOG_FORMAT=json\n")
    unit = (DEPLOY / "systemd" / "pagegrid.service").read_text()
    assert "ExecStart=/srv/pagegrid/.venv/bin/gunicorn -c gunicorn.conf.py wsgi:app" in unit
    assert "ExecStartPre=/srv/pagegrid/.venv/bin/flask --app app init-db" in unit
    stop = int(re.search(r"TimeoutStopSec=(\d+)", unit).group(1))
    assert stop > 60  # longer than gunicorn's graceful timeout, or streams are killed
    local = (unit.replace("/srv/pagegrid/.venv", str(VENV)).replace("/srv/pagegrid", str(ROOT))
             .replace("/etc/pagegrid/pagegrid.env", str(env_file))
             .replace("User=pagegrid", "User=root").replace("Group=pagegrid", "Group=root"))
    path = tmp_path / "pagegrid.service"
    path.write_text(local)
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Unknown" not in done.stderr and "ignoring" not in done.stderr.lower(), done.stderr


def test_environment_example_names_only_real_settings():
    readme = (ROOT / "README.md").read_text()
    for line in (DEPLOY / "pagegrid.env.example").read_text().splitlines():
        line = line.removeprefix("# ") if re.match(r"# PAGEGRID_\w+=", line) else line
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        assert re.fullmatch(r"PAGEGRID_[A-Z0-9_]+", name) and value and " " not in value, line
        assert f"`{name}`" in readme, f"{name} is not in the README's configuration table"


def _cron_entries() -> list[tuple[list[str], str, str]]:
    entries = []
    for line in (DEPLOY / "cron" / "pagegrid").read_text().splitlines():
        if not line.strip() or line.startswith("#") or re.match(r"^[A-Z]+=", line):
            continue
        parts = line.split(None, 6)
        entries.append((parts[:5], parts[5], parts[6]))
    return entries


def test_cron_lines_are_valid_and_run(database_url, app, tmp_path):
    ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
    commands = set(app.cli.list_commands(app.app_context()))
    backups = tmp_path / "backups"
    backups.mkdir()
    env_file = tmp_path / "pagegrid.env"
    env_file.write_text(f"PAGEGRID_DATABASE_URL={database_url}\n"
                        f"PAGEGRID_JOURNAL_DIR={tmp_path / 'journal'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEGRID_")}
    env.update(PAGEGRID_ENV_FILE=str(env_file), PAGEGRID_APP_DIR=str(ROOT), PAGEGRID_VENV=str(VENV))
    ran = []
    for fields, user, command in _cron_entries():
        for field, (low, high) in zip(fields, ranges, strict=True):
            for part in field.split(","):
                base, _, step = part.partition("/")
                assert not step or step.isdigit(), field
                if base != "*":
                    low_value, _, high_value = base.partition("-")
                    assert low <= int(low_value) <= high, field
                    assert not high_value or int(high_value) <= high, field
        assert user == "pagegrid"
        assert "%" not in command.replace("\\%", ""), "an unescaped % ends a cron command"
        if "pagegrid-flask" in command:
            name = command.split("pagegrid-flask", 1)[1].split()[0]
            assert name in commands, name
        # run it as cron would (\% is a literal %), against this test's database
        shell = (command.replace("\\%", "%").replace("/srv/pagegrid", str(ROOT))
                 .replace("/var/backups/pagegrid", str(backups)))
        done = subprocess.run(["/bin/sh", "-c", shell], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        ran.append(done.stdout)
    assert any("Pruned" in out for out in ran)
    assert any(p.name.startswith("pagegrid-") for p in backups.iterdir())


def test_wrapper_is_valid_shell():
    done = subprocess.run(["/bin/sh", "-n", str(DEPLOY / "bin" / "pagegrid-flask")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert os.access(DEPLOY / "bin" / "pagegrid-flask", os.X_OK)


def test_logrotate_config_parses(tmp_path):
    if shutil.which("logrotate") is None:
        pytest.skip("logrotate is not installed")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "pagegrid.log").write_text("line\n")
    config = (DEPLOY / "logrotate" / "pagegrid").read_text()
    assert "copytruncate" in config
    local = tmp_path / "pagegrid.logrotate"
    local.write_text(config.replace("/var/log/pagegrid", str(logs))
                     .replace("su pagegrid pagegrid", "su root root"))
    local.chmod(0o644)
    done = subprocess.run(["logrotate", "-d", "-s", str(tmp_path / "state"), str(local)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "error" not in (done.stdout + done.stderr).lower(), done.stderr


def _blocks(text: str) -> list[str]:
    """Strip comments and check the braces balance; return the statements (nginx syntax)."""
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    depth = 0
    for char in code:
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0, "a } without its {"
    assert depth == 0, "unclosed {"
    return [s.strip() for s in re.split(r"[;{}]", code) if s.strip()]


def test_nginx_config_is_well_formed_and_streams():
    text = (DEPLOY / "nginx" / "pagegrid.conf").read_text()
    statements = _blocks(text)
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    # every statement ends with ; or opens a block
    for chunk in re.split(r"[;{}]", code)[:-1]:
        assert "\n\n" not in chunk.strip(), f"a statement without its semicolon: {chunk.strip()!r}"
    assert "proxy_buffering off" in statements
    assert int(re.search(r"proxy_read_timeout (\d+)s", text).group(1)) >= 600
    assert "client_max_body_size 32m" in statements
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for" in statements
    assert "proxy_set_header X-Forwarded-Proto $scheme" in statements
    assert re.search(r"location = /metrics \{\s*return 404;", text)


def test_caddyfile_is_well_formed_and_streams():
    text = (DEPLOY / "caddy" / "Caddyfile").read_text()
    _blocks(text)
    assert "reverse_proxy 127.0.0.1:8000" in text and "flush_interval -1" in text
    assert int(re.search(r"read_timeout (\d+)m", text).group(1)) >= 10
    assert "respond @metrics 404" in text and "max_size 32MB" in text
