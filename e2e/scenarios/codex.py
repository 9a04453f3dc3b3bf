"""Codex CLI 0.171.0 (``codex exec``) with the custom provider block from the docs page."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import requests

from e2e.context import BROKE
from e2e.context import Context
from e2e.context import scenario
from e2e.harness import CLIENTS
from e2e.harness import Account
from e2e.harness import Ran
from e2e.harness import check
from e2e.provider import ANTHROPIC_KEY
from e2e.provider import OPENAI_KEY
from e2e.provider import ToolCall

CODEX = str(CLIENTS / ".bin" / "codex")
PROMPT = "Reply with the single word: pong"

# Top-level keys go above the docs snippet: after its [model_providers.pagegrid] header they would
# belong to that table (the docs page warns customers about exactly this).
QUIET_TOP = 'check_for_update_on_startup = false\n'
QUIET_TABLES = '\n[analytics]\nenabled = false\n\n[feedback]\nenabled = false\n'


def _home(ctx: Context, name: str, account: Account) -> tuple[Path, dict[str, str]]:
    """A scratch HOME with ``~/.codex/config.toml`` = the docs snippet (+ telemetry off)."""
    home = ctx.scratch.home(name)
    config = ctx.snippet("codex-cli", "codex-cli-config", account.key)
    check(f'base_url = "{ctx.gateway.url}/v1"' in config, f"docs config has another base_url:\n{config}")
    (home / ".codex").mkdir()
    (home / ".codex" / "config.toml").write_text(QUIET_TOP + config + "\n" + QUIET_TABLES)
    env_line = ctx.snippet("codex-cli", "codex-cli-env", account.key)
    name_, _, value = env_line.strip().removeprefix("export ").partition("=")
    check(name_ == "PAGEGRID_API_KEY", f"docs env snippet sets {name_!r}")
    (home / "work").mkdir()
    return home, {name_: value.strip('"')}


def _exec(ctx: Context, name: str, account: Account, prompt: str, *args: str, timeout: float = 120) -> Ran:
    home, env = _home(ctx, name, account)
    return ctx.run(name, [CODEX, "exec", "--skip-git-repo-check", "--color", "never", *args, prompt], env,
                   home=home, cwd=home / "work", timeout=timeout)


def _ok(ran: Ran, marker: str) -> None:
    check(ran.returncode == 0, f"codex exited {ran.returncode}\n{ran.describe()}")
    check(marker in ran.stdout, f"codex did not print the provider's answer {marker!r}\n{ran.describe()}")


def _tokens_used(ctx: Context, ran: Ran) -> str:
    """Codex prints the usage it was told: "tokens used N", the sum over the turn's calls of
    input - cached + output. Through PageGrid (passthrough or translated, where cache writes count
    as uncached input) it must be exactly what the provider reported."""
    match = re.search(r"tokens used\s+([\d,]+)", ran.stderr)
    check(match, f"codex printed no token count\n{ran.describe()}")
    assert match is not None
    shown = int(match.group(1).replace(",", ""))
    expected = sum(c.usage.input_tokens + c.usage.cache_write + c.usage.output_tokens for c in ctx.calls())
    check(shown == expected, f"codex shows {shown} tokens used; the provider reported {expected} "
                             "(uncached input + cache writes + output, over all calls)")
    return f"codex shows {shown} tokens as reported; "


def _exec_command(token: str):  # noqa: ANN202 - a Script.tool picker
    def pick(names: list[str]) -> ToolCall | None:
        if "exec_command" in names:
            return ToolCall("exec_command", {"cmd": f"echo {token}"})
        if "shell" in names:
            return ToolCall("shell", {"command": ["bash", "-lc", f"echo {token}"]})
        return None
    return pick


def _upstream(ctx: Context, path: str, model: str, key_header: str, key: str, account: Account) -> None:
    calls = ctx.calls()
    check(calls, "the provider received no model call")
    for call in calls:
        check(call.path == path, f"provider got {call.path}, expected {path}")
        check(call.body.get("model") == model, f"provider got model {call.body.get('model')!r}")
        check(call.stream, "Codex's request reached the provider without stream: true")
    for rec in ctx.provider.requests:
        headers = {k.lower(): v for k, v in rec.headers.items()}
        check(headers.get(key_header) == key, f"upstream {key_header} is {headers.get(key_header)!r}")
        check(account.key not in str(rec.headers), "the customer's pg- key reached the provider")


@scenario("Codex CLI", "exec, gpt-5.4 (Responses passthrough), docs config.toml")
def gpt_text(ctx: Context) -> str:
    account = ctx.account("codex-gpt")
    marker = ctx.begin("pong-codex-gpt")
    ran = _exec(ctx, "codex-gpt", account, PROMPT)
    _ok(ran, marker)
    _upstream(ctx, "/v1/responses", "gpt-5.4", "authorization", f"Bearer {OPENAI_KEY}", account)
    body = ctx.calls()[0].body
    for name in ("input", "tools", "reasoning", "store", "include", "prompt_cache_key"):
        check(name in body, f"field {name!r} of Codex's body did not reach the provider")
    return _tokens_used(ctx, ran) + ctx.bank.assert_ledger(account, ctx.calls())


@scenario("Codex CLI", "exec, gpt-5.4, function call round trip (exec_command)")
def gpt_tool(ctx: Context) -> str:
    account = ctx.account("codex-gpt-tool")
    token = f"e2e-codex-{secrets.token_hex(4)}"
    marker = ctx.begin("codex-tool-done", tool=_exec_command(token))
    ran = _exec(ctx, "codex-gpt-tool", account, "Run echo, then report.")
    _ok(ran, marker)
    results = ctx.provider.script.tool_results
    check(any(token in r for r in results),
          f"no function_call_output with {token} reached the provider: {results}")
    _upstream(ctx, "/v1/responses", "gpt-5.4", "authorization", f"Bearer {OPENAI_KEY}", account)
    return _tokens_used(ctx, ran) + ctx.bank.assert_ledger(account, ctx.calls())


@scenario("Codex CLI", "exec -m claude-sonnet-4-6 (Responses → Messages)")
def claude_text(ctx: Context) -> str:
    account = ctx.account("codex-claude")
    marker = ctx.begin("pong-codex-claude")
    ran = _exec(ctx, "codex-claude", account, PROMPT, "-m", "claude-sonnet-4-6")
    _ok(ran, marker)
    _upstream(ctx, "/v1/messages", "claude-sonnet-4-6", "x-api-key", ANTHROPIC_KEY, account)
    return _tokens_used(ctx, ran) + ctx.bank.assert_ledger(account, ctx.calls())


@scenario("Codex CLI", "exec -m claude-sonnet-4-6, function call round trip")
def claude_tool(ctx: Context) -> str:
    account = ctx.account("codex-claude-tool")
    token = f"e2e-codex-{secrets.token_hex(4)}"
    marker = ctx.begin("codex-claude-tool-done", tool=_exec_command(token))
    ran = _exec(ctx, "codex-claude-tool", account, "Run echo, then report.", "-m", "claude-sonnet-4-6")
    _ok(ran, marker)
    results = ctx.provider.script.tool_results
    check(any(token in r for r in results), f"no tool_result with {token} reached the provider: {results}")
    _upstream(ctx, "/v1/messages", "claude-sonnet-4-6", "x-api-key", ANTHROPIC_KEY, account)
    return _tokens_used(ctx, ran) + ctx.bank.assert_ledger(account, ctx.calls())


@scenario("Codex CLI", "built-in provider + openai_base_url: WebSocket → 426 → HTTP")
def builtin_provider_websocket(ctx: Context) -> str:
    """Not the documented setup, but what customers try first (captures/codex_b6): Codex opens a
    WebSocket on GET /v1/responses; PageGrid must answer 426 so Codex falls back to HTTP at once."""
    account = ctx.account("codex-builtin")
    marker = ctx.begin("pong-codex-builtin")
    home = ctx.scratch.home("codex-builtin")
    (home / ".codex").mkdir()
    (home / ".codex" / "config.toml").write_text(
        QUIET_TOP + f'model = "gpt-5.4"\nopenai_base_url = "{ctx.gateway.url}/v1"\n' + QUIET_TABLES)
    (home / "work").mkdir()
    log_before = ctx.gateway.log_text()
    ran = ctx.run("codex-builtin", [CODEX, "exec", "--skip-git-repo-check", "--color", "never", PROMPT],
                  {"CODEX_API_KEY": account.key, "OPENAI_API_KEY": account.key}, home=home, cwd=home / "work")
    _ok(ran, marker)
    websocket = ctx.gateway.answered("GET", "/v1/responses", 426, since=len(log_before))
    check(websocket >= 1, "no WebSocket attempt answered 426 in the gateway's request lines:\n"
          f"{ctx.gateway.log_text()[len(log_before):][-1500:]}")
    check(ran.seconds < 20, f"the fallback to HTTP took {ran.seconds:.0f}s")
    _upstream(ctx, "/v1/responses", "gpt-5.4", "authorization", f"Bearer {OPENAI_KEY}", account)
    return f"{websocket} WebSocket attempt(s) got 426; " + ctx.bank.assert_ledger(account, ctx.calls())


@scenario("Codex CLI", "key over its daily request limit: Codex stops promptly with the 429")
def daily_limit(ctx: Context) -> str:
    """A daily limit that resets in hours answers 429 without retry-after and with
    x-should-retry: false, so Codex gives up at once instead of sleeping until midnight. Codex
    prints only the status after its retries, so the limit's message is checked on the wire."""
    account = ctx.account("codex-daily", "--daily-limit", "1")
    marker = ctx.begin("pong-codex-daily")
    first = _exec(ctx, "codex-daily-1", account, PROMPT)
    _ok(first, marker)
    second = _exec(ctx, "codex-daily-2", account, PROMPT, timeout=45)
    output = second.stdout + second.stderr
    check(second.returncode not in (0, -9) and "429" in output,
          f"the second call (over the daily limit) did not end with a 429 within 45 s\n{second.describe()}")
    direct = requests.post(f"{ctx.gateway.url}/v1/responses", timeout=10,
                           headers={"Authorization": f"Bearer {account.key}"},
                           json={"model": "gpt-5.4", "input": "hi"})
    message = direct.json()["error"]["message"]
    check(direct.status_code == 429 and "Daily request limit" in message
          and "retry-after" not in direct.headers and direct.headers.get("x-should-retry") == "false",
          f"the refusal does not name the limit or invites a retry: {direct.status_code} {message!r}")
    return f"Codex stopped after {second.seconds:.1f}s; gateway said {message[:70]!r}; " + \
        ctx.bank.assert_ledger(account, ctx.calls())


@scenario("Codex CLI", "$0 wallet: the 402 message is shown, nothing charged")
def broke(ctx: Context) -> str:
    account = ctx.account("codex-broke", email=BROKE)
    ctx.begin("never")
    before = ctx.gateway.answered("POST", "/v1/responses", 402)
    ran = _exec(ctx, "codex-broke", account, PROMPT, timeout=60)
    attempts = ctx.gateway.answered("POST", "/v1/responses", 402) - before
    output = ran.stdout + ran.stderr
    check(ran.returncode not in (0, -9) and "wallet balance" in output,
          f"codex did not end with PageGrid's 402 message within 60 s\n{ran.describe()}")
    check(not ctx.calls(), "a request without funds reached the provider")
    ctx.bank.assert_ledger(account, [])
    shown = next((line for line in output.splitlines() if "wallet balance" in line), "")
    return f"shown after {ran.seconds:.1f}s and {attempts} attempts: {shown.strip()[:90]!r}; nothing charged"


@scenario("Codex CLI", "exec -m claude-sonnet-4-6, reasoning high: signed thinking survives a tool turn")
def claude_thinking_tool(ctx: Context) -> str:
    """With reasoning on, Claude's thinking goes to Codex as a reasoning item (encrypted_content);
    on the tool-result turn it must come back to the provider as the same signed thinking block,
    before the tool_use (the real API refuses a thinking tool turn without it)."""
    account = ctx.account("codex-claude-thinking")
    token = f"e2e-codex-{secrets.token_hex(4)}"
    marker = ctx.begin("codex-thinking-done", tool=_exec_command(token))
    ran = _exec(ctx, "codex-claude-thinking", account, "Run echo, then report.", "-m", "claude-sonnet-4-6",
                "-c", "model_reasoning_effort=high")
    _ok(ran, marker)
    calls = ctx.calls()
    check(len(calls) == 2, f"expected 2 calls, got {len(calls)}")
    check((calls[0].body.get("thinking") or {}).get("type") == "enabled",
          f"reasoning effort high did not enable thinking: {calls[0].body.get('thinking')}")
    first_sig = f"e2e-signature-{calls[0].usage.input_tokens}"
    assistant = [m for m in calls[1].body.get("messages", []) if m.get("role") == "assistant"]
    blocks = assistant[-1]["content"] if assistant and isinstance(assistant[-1].get("content"), list) else []
    kinds = [b.get("type") for b in blocks]
    check(blocks and blocks[0].get("type") == "thinking" and blocks[0].get("signature") == first_sig
          and "tool_use" in kinds,
          f"the tool-result turn did not carry the signed thinking block first: {json.dumps(blocks)[:600]}")
    check((calls[1].body.get("thinking") or {}).get("type") == "enabled", "thinking was dropped on turn 2")
    return "thinking round-tripped; " + _tokens_used(ctx, ran) + ctx.bank.assert_ledger(account, calls)
