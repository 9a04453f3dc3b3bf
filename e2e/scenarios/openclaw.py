"""OpenClaw 2026.9.6 on Node 24 (``infer model run`` and ``agent exec``), with the
``~/.openclaw/openclaw.json`` the docs page renders (two providers: ``anthropic-messages`` and
``openai-completions``)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from e2e.context import BROKE
from e2e.context import Context
from e2e.context import scenario
from e2e.harness import CLIENTS
from e2e.harness import NODE24_BIN
from e2e.harness import Account
from e2e.harness import Ran
from e2e.harness import check
from e2e.provider import ANTHROPIC_KEY
from e2e.provider import OPENAI_KEY
from e2e.provider import ToolCall

OPENCLAW = [str(NODE24_BIN / "node"), str(CLIENTS / "openclaw" / "openclaw.mjs")]
PROMPT = "Reply with the single word: pong"
CLAUDE = "pagegrid/claude-sonnet-4-6"
GPT = "pagegrid-openai/gpt-5.4"


def _home(ctx: Context, name: str, account: Account) -> Path:
    """A scratch HOME whose ``~/.openclaw/openclaw.json`` is the docs snippet, update checks off."""
    home = ctx.scratch.home(name)
    config = json.loads(ctx.snippet("openclaw", "openclaw-config", account.key))
    providers = config["models"]["providers"]
    check(providers["pagegrid"]["api"] == "anthropic-messages"
          and providers["pagegrid-openai"]["api"] == "openai-completions",
          f"docs config has other providers: {list(providers)}")
    config["update"] = {"checkOnStart": False}
    config["telemetry"] = {"enabled": False}
    (home / ".openclaw").mkdir()
    (home / ".openclaw" / "openclaw.json").write_text(json.dumps(config, indent=2))
    (home / "work").mkdir()
    return home


def _run(ctx: Context, name: str, account: Account, args: list[str]) -> Ran:
    home = _home(ctx, name, account)
    return ctx.run(name, [*OPENCLAW, *args], {}, home=home, cwd=home / "work", timeout=180)


def _ok(ran: Ran, marker: str) -> None:
    check(ran.returncode == 0, f"openclaw exited {ran.returncode}\n{ran.describe()}")
    check(marker in ran.stdout, f"openclaw did not print the provider's answer {marker!r}\n{ran.describe()}")


def _upstream(ctx: Context, path: str, model: str, account: Account) -> None:
    calls = ctx.calls()
    check(calls, "the provider received no model call")
    header, key = (("x-api-key", ANTHROPIC_KEY) if path == "/v1/messages"
                   else ("authorization", f"Bearer {OPENAI_KEY}"))
    for call in calls:
        check(call.path == path, f"provider got {call.path}, expected {path}")
        check(call.body.get("model") == model, f"provider got model {call.body.get('model')!r}")
    for rec in ctx.provider.requests:
        headers = {k.lower(): v for k, v in rec.headers.items()}
        check(headers.get(header) == key, f"upstream {header} is {headers.get(header)!r}")
        check(account.key not in str(rec.headers), "the customer's pg- key reached the provider")


@scenario("OpenClaw", "infer model run, anthropic-messages (pagegrid/claude-sonnet-4-6)")
def infer_anthropic(ctx: Context) -> str:
    account = ctx.account("openclaw-infer-claude")
    marker = ctx.begin("pong-oc-infer-claude")
    ran = _run(ctx, "openclaw-infer-claude", account,
               ["infer", "model", "run", "--local", "--model", CLAUDE, "--prompt", PROMPT])
    _ok(ran, marker)
    _upstream(ctx, "/v1/messages", "claude-sonnet-4-6", account)
    return ctx.bank.assert_ledger(account, ctx.calls())


@scenario("OpenClaw", "infer model run, openai-completions (pagegrid-openai/gpt-5.4)")
def infer_openai(ctx: Context) -> str:
    account = ctx.account("openclaw-infer-gpt")
    marker = ctx.begin("pong-oc-infer-gpt")
    ran = _run(ctx, "openclaw-infer-gpt", account,
               ["infer", "model", "run", "--local", "--model", GPT, "--prompt", PROMPT])
    _ok(ran, marker)
    _upstream(ctx, "/v1/chat/completions", "gpt-5.4", account)
    return ctx.bank.assert_ledger(account, ctx.calls())


def _write_tool(token: str):  # noqa: ANN202 - a Script.tool picker
    def pick(names: list[str]) -> ToolCall | None:
        if "write" in names:
            return ToolCall("write", {"path": "e2e-openclaw.txt", "content": token})
        return None
    return pick


def _agent(ctx: Context, name: str, model: str, path: str, upstream_model: str) -> str:
    account = ctx.account(name)
    token = f"e2e-oc-{secrets.token_hex(4)}"
    marker = ctx.begin(f"{name}-done", tool=_write_tool(token))
    home = _home(ctx, name, account)
    ran = ctx.run(name, [*OPENCLAW, "agent", "exec", "--model", model, "--cwd", str(home / "work"),
                         "Write the marker file, then report."],
                  {}, home=home, cwd=home / "work", timeout=180)
    _ok(ran, marker)
    written = home / "work" / "e2e-openclaw.txt"
    check(written.exists() and written.read_text().strip() == token,
          f"OpenClaw did not run the write tool (no {written})\n{ran.describe()}")
    check(ctx.provider.script.tool_results, "no tool result reached the provider")
    _upstream(ctx, path, upstream_model, account)
    return ctx.bank.assert_ledger(account, ctx.calls())


@scenario("OpenClaw", "agent exec + write tool, anthropic-messages")
def agent_anthropic(ctx: Context) -> str:
    return _agent(ctx, "openclaw-agent-claude", CLAUDE, "/v1/messages", "claude-sonnet-4-6")


@scenario("OpenClaw", "agent exec + write tool, openai-completions")
def agent_openai(ctx: Context) -> str:
    return _agent(ctx, "openclaw-agent-gpt", GPT, "/v1/chat/completions", "gpt-5.4")


@scenario("OpenClaw", "key over its daily request limit: the 429 is shown promptly")
def daily_limit(ctx: Context) -> str:
    """A daily limit answers 429 with retry-after = seconds to UTC midnight (hours)."""
    account = ctx.account("openclaw-daily", "--daily-limit", "1")
    marker = ctx.begin("pong-oc-daily")
    args = ["infer", "model", "run", "--local", "--model", CLAUDE, "--prompt", PROMPT]
    first = _run(ctx, "openclaw-daily-1", account, args)
    _ok(first, marker)
    home = _home(ctx, "openclaw-daily-2", account)
    second = ctx.run("openclaw-daily-2", [*OPENCLAW, *args], {}, home=home, cwd=home / "work", timeout=90)
    output = second.stdout + second.stderr
    check(second.returncode not in (0, -9) and "Daily request limit" in output,
          f"the second call (over the daily limit) did not end with the limit's message within 90 s\n"
          f"{second.describe()}")
    shown = next((line for line in output.splitlines() if "Daily request limit" in line), "")
    return f"shown after {second.seconds:.1f}s: {shown.strip()[:100]!r}; " + \
        ctx.bank.assert_ledger(account, ctx.calls())


@scenario("OpenClaw", "$0 wallet: the 402 message is shown, nothing charged")
def broke(ctx: Context) -> str:
    account = ctx.account("openclaw-broke", email=BROKE)
    ctx.begin("never")
    home = _home(ctx, "openclaw-broke", account)
    args = ["infer", "model", "run", "--local", "--model", CLAUDE, "--prompt", PROMPT]
    ran = ctx.run("openclaw-broke", [*OPENCLAW, *args], {}, home=home, cwd=home / "work", timeout=90)
    output = ran.stdout + ran.stderr
    check(ran.returncode not in (0, -9) and "wallet balance" in output,
          f"openclaw did not end with PageGrid's 402 message within 90 s\n{ran.describe()}")
    check(not ctx.calls(), "a request without funds reached the provider")
    ctx.bank.assert_ledger(account, [])
    shown = next((line for line in output.splitlines() if "wallet balance" in line), "")
    return f"shown after {ran.seconds:.1f}s: {shown.strip()[:100]!r}; nothing charged"
