"""Claude Code 2.1.332 in print mode (``claude -p``), configured as the docs page says."""

from __future__ import annotations

import contextlib
import json
import secrets
import time

from werkzeug.wrappers import Response

from e2e.context import BROKE
from e2e.context import Context
from e2e.context import scenario
from e2e.harness import CLIENTS
from e2e.harness import Account
from e2e.harness import Failed
from e2e.harness import Ran
from e2e.harness import check
from e2e.harness import kill_group
from e2e.harness import start_client
from e2e.provider import ANTHROPIC_KEY
from e2e.provider import ToolCall
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream import serve
from tests.serving import free_port

CLAUDE = str(CLIENTS / ".bin" / "claude")
PROMPT = "Reply with the single word: pong"
# What `claude -p` without --model asks for: Opus 5.5 since 2.1.332 (2.1.197 asked for
# claude-opus-4-8). It is in the price list but not in the seed, so the runner syncs it before the
# scenarios (see e2e/run.py), as a deployment's daily sync-models does once Anthropic lists it.
DEFAULT_MODEL = "claude-opus-5-5"


def _env(ctx: Context, account: Account, *, v1: bool = True, bearer: bool = False,
         url: str | None = None) -> dict[str, str]:
    base = (url or ctx.gateway.url) + ("/v1" if v1 else "")
    return {"ANTHROPIC_BASE_URL": base,
            ("ANTHROPIC_AUTH_TOKEN" if bearer else "ANTHROPIC_API_KEY"): account.key}


def _docs_env(ctx: Context, account: Account) -> dict[str, str]:
    """The two ``export`` lines of the docs snippet ``claude-code-env``."""
    code = ctx.snippet("claude-code", "claude-code-env", account.key)
    env = {}
    for line in code.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            env[name] = value.strip().strip('"')
    check(set(env) == {"ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"}, f"unexpected docs env: {code}")
    return env


def _ok(ran: Ran, marker: str) -> None:
    check(ran.returncode == 0, f"claude exited {ran.returncode}\n{ran.describe()}")
    check(marker in ran.stdout, f"claude did not print the provider's answer {marker!r}\n{ran.describe()}")


def _usage_shown(ctx: Context, ran: Ran) -> str:
    """``--output-format json`` reports the usage Claude Code was told, summed over the turns: it
    must be what the provider reported (cached tokens as cache reads, not as input)."""
    try:
        result = json.loads(ran.stdout)
    except ValueError:
        raise Failed(f"claude printed no JSON result\n{ran.describe()}") from None
    usage = result.get("usage") or {}
    shown = tuple(usage.get(k) for k in ("input_tokens", "cache_creation_input_tokens",
                                         "cache_read_input_tokens", "output_tokens"))
    calls = ctx.calls()
    sent = (sum(c.usage.input_tokens for c in calls), sum(c.usage.cache_write for c in calls),
            sum(c.usage.cache_read for c in calls), sum(c.usage.output_tokens for c in calls))
    check(shown == sent, f"Claude Code shows usage (input, cache write, cache read, output) = {shown}; "
                         f"the provider reported {sent}")
    return "usage shown as reported; "


def _upstream_checks(ctx: Context, model: str, account: Account) -> None:
    """What reached the provider: the gateway's key, Claude Code's headers and body untouched."""
    calls = ctx.calls()
    check(calls, "the provider received no model call")
    for rec in ctx.provider.requests:
        headers = {k.lower(): v for k, v in rec.headers.items()}
        check(headers.get("x-api-key") == ANTHROPIC_KEY,
              f"upstream x-api-key is {headers.get('x-api-key')!r}")
        check(account.key not in str(rec.headers), "the customer's pg- key reached the provider")
        check(rec.path == "/v1/messages" or rec.path == "/v1/messages/count_tokens",
              f"provider got path {rec.path}")
    main = [c for c in calls if c.body.get("tools")]
    check(main, f"no request with tools reached the provider: {[c.body.get('model') for c in calls]}")
    body = main[0].body
    check(body.get("model") == model, f"provider got model {body.get('model')!r}, expected {model!r}")
    check(body.get("stream") is True, "Claude Code's request lost stream: true")
    for name in ("system", "metadata", "thinking", "tools"):
        check(name in body, f"field {name!r} of Claude Code's body did not reach the provider")
    rec = next(r for r in ctx.provider.requests if r.body is body or r.body == body)
    headers = {k.lower(): v for k, v in rec.headers.items()}
    check(headers.get("anthropic-version") == "2023-06-01",
          f"anthropic-version {headers.get('anthropic-version')}")
    check("anthropic-beta" in headers, "anthropic-beta was not forwarded")


@scenario("Claude Code", "base …/v1 (docs snippet), ANTHROPIC_API_KEY, default model")
def default_model_v1(ctx: Context) -> str:
    account = ctx.account("claude-v1")
    marker = ctx.begin("pong-v1")
    ran = ctx.run("claude-v1", [CLAUDE, "-p", PROMPT], _docs_env(ctx, account))
    _ok(ran, marker)
    _upstream_checks(ctx, DEFAULT_MODEL, account)
    check(ctx.gateway.answered("HEAD", "/v1", 200) >= 1,
          "no HEAD /v1 probe answered 200 in the gateway's log")
    return ctx.bank.assert_ledger(account, ctx.calls())


def _plain_turn(ctx: Context, name: str, model_args: list[str], upstream_model: str, *,
                v1: bool, bearer: bool) -> str:
    """One `claude -p` turn with the given base URL form, auth variable and model."""
    account = ctx.account(name)
    marker = ctx.begin(f"pong-{name}")
    ran = ctx.run(name, [CLAUDE, "-p", PROMPT, *model_args], _env(ctx, account, v1=v1, bearer=bearer))
    _ok(ran, marker)
    _upstream_checks(ctx, upstream_model, account)
    return ctx.bank.assert_ledger(account, ctx.calls())


@scenario("Claude Code", "bare host, ANTHROPIC_AUTH_TOKEN (Bearer), default model")
def default_model_bare_bearer(ctx: Context) -> str:
    return _plain_turn(ctx, "claude-bare", [], DEFAULT_MODEL, v1=False, bearer=True)


@scenario("Claude Code", "bare host, ANTHROPIC_API_KEY, --model claude-haiku-4-5")
def haiku_bare(ctx: Context) -> str:
    return _plain_turn(ctx, "claude-haiku-bare", ["--model", "claude-haiku-4-5"],
                       "claude-haiku-4-5-20251001", v1=False, bearer=False)


@scenario("Claude Code", "base …/v1, ANTHROPIC_AUTH_TOKEN, --model claude-haiku-4-5")
def haiku_v1_bearer(ctx: Context) -> str:
    return _plain_turn(ctx, "claude-haiku-v1", ["--model", "claude-haiku-4-5"],
                       "claude-haiku-4-5-20251001", v1=True, bearer=True)


@scenario("Claude Code", "tool_use: Bash writes a file, tool_result goes back")
def tool_use(ctx: Context) -> str:
    account = ctx.account("claude-tool")
    token = f"e2e-tool-{secrets.token_hex(4)}"
    home = ctx.scratch.home("claude-tool")
    work = home / "work"
    work.mkdir()

    def pick(names: list[str]) -> ToolCall | None:
        if "Bash" not in names:
            return None
        return ToolCall("Bash", {"command": f"echo {token} > e2e-tool.txt && cat e2e-tool.txt",
                                 "description": "Write the e2e marker file"})

    marker = ctx.begin("tool-done", tool=pick)
    ran = ctx.run("claude-tool", [CLAUDE, "-p", "Write the marker file, then report.",
                                  "--allowedTools", "Bash", "--output-format", "json"],
                  _env(ctx, account), home=home, cwd=work)
    _ok(ran, marker)
    shown = _usage_shown(ctx, ran)
    written = work / "e2e-tool.txt"
    check(written.exists() and written.read_text().strip() == token,
          f"Claude Code did not run the Bash tool (no {written})\n{ran.describe()}")
    results = ctx.provider.script.tool_results
    check(any(token in r for r in results), f"no tool_result with {token} reached the provider: {results}")
    check(token in ran.stdout, f"the final answer with the tool output was not printed\n{ran.describe()}")
    return shown + ctx.bank.assert_ledger(account, ctx.calls())


@scenario("Claude Code", "$0 wallet: API Error 402, no retry, nothing charged")
def broke(ctx: Context) -> str:
    account = ctx.account("claude-broke", email=BROKE)
    ctx.begin("never")
    started = time.monotonic()
    ran = ctx.run("claude-broke", [CLAUDE, "-p", PROMPT], _env(ctx, account), timeout=90)
    output = ran.stdout + ran.stderr
    check(ran.returncode != 0, f"claude exited 0 on an empty wallet\n{ran.describe()}")
    check("402" in output, f"claude did not show the 402\n{ran.describe()}")
    check("balance" in output.lower() or "fund" in output.lower(),
          f"claude did not show PageGrid's 402 message\n{ran.describe()}")
    check(not ctx.calls(), "a request without funds reached the provider")
    posts = ctx.gateway.answered("POST", "/v1/v1/messages", 402)
    check(posts >= 1, "no 402 in the gateway's log")
    ctx.bank.assert_ledger(account, [])
    return f"402 shown after {time.monotonic() - started:.1f}s; {posts} attempt(s); nothing charged"


@scenario("Claude Code", "rpm=1 key, two quick calls: 429 + retry-after, both succeed")
def rpm_retry(ctx: Context) -> str:
    gateway = ctx.fast_gateway
    check(gateway is not None, "the short-window gateway did not start")
    assert gateway is not None
    account = ctx.account("claude-rpm1", "--rpm", "1")
    marker = ctx.begin("pong-rpm")
    env = _env(ctx, account, url=gateway.url)
    before = gateway.answered("POST", "/v1/v1/messages", 429)
    procs = []
    for i in range(2):
        home = ctx.scratch.home(f"claude-rpm-{i}")
        procs.append(start_client([CLAUDE, "-p", PROMPT], home, env))
        time.sleep(0.3)
    outs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            kill_group(proc)
        outs.append((proc.returncode, out, err))
    (ctx.logs / "claude-rpm.log").write_text("\n\n".join(f"exit {rc}\n{o}\n{e}" for rc, o, e in outs))
    for rc, out, err in outs:
        check(rc == 0 and marker in out, f"a call did not succeed after the retry: exit {rc}\n{out}\n{err}")
    limited = gateway.answered("POST", "/v1/v1/messages", 429) - before
    check(limited >= 1, "neither call was rate limited (expected a 429 for the second)")
    calls = ctx.calls()
    check(len(calls) == 2, f"the provider got {len(calls)} model calls, expected 2 (429s must not reach it)")
    return f"{limited} x 429 then retried; " + ctx.bank.assert_ledger(account, calls)


@scenario("Claude Code", "--model gpt-5.4 (Messages → Chat Completions), Bash tool round trip")
def gpt_model_tool(ctx: Context) -> str:
    account = ctx.account("claude-gpt-tool")
    token = f"e2e-tool-{secrets.token_hex(4)}"
    home = ctx.scratch.home("claude-gpt-tool")
    work = home / "work"
    work.mkdir()

    def pick(names: list[str]) -> ToolCall | None:
        if "Bash" not in names:
            return None
        return ToolCall("Bash", {"command": f"echo {token} > e2e-tool.txt && cat e2e-tool.txt",
                                 "description": "Write the e2e marker file"})

    marker = ctx.begin("gpt-tool-done", tool=pick)
    ran = ctx.run("claude-gpt-tool", [CLAUDE, "-p", "Write the marker file, then report.",
                                      "--model", "gpt-5.4", "--allowedTools", "Bash",
                                      "--output-format", "json"],
                  _env(ctx, account), home=home, cwd=work)
    _ok(ran, marker)
    shown = _usage_shown(ctx, ran)
    written = work / "e2e-tool.txt"
    check(written.exists() and written.read_text().strip() == token,
          f"Claude Code did not run the Bash tool (no {written})\n{ran.describe()}")
    check(any(token in r for r in ctx.provider.script.tool_results),
          f"no tool message with {token} reached the provider: {ctx.provider.script.tool_results}")
    for call in ctx.calls():
        check(call.path == "/v1/chat/completions" and call.body.get("model") == "gpt-5.4",
              f"provider got {call.path} model={call.body.get('model')}")
    return shown + ctx.bank.assert_ledger(account, ctx.calls())


@scenario("Claude Code", "upstream stream ends before message_stop: Claude Code re-sends it")
def stream_truncated(ctx: Context) -> str:
    """Straight to Anthropic, a stream that ends cleanly without ``message_stop`` makes Claude Code
    re-send the request without ``stream`` (tried against the fake directly); through PageGrid the
    customer must get the same recovery, and both upstream calls are charged once each."""
    account = ctx.account("claude-truncated")
    marker = ctx.begin("pong-after-truncation", cut_first_stream_after=1, cut_cleanly=True)
    ran = ctx.run("claude-truncated", [CLAUDE, "-p", PROMPT, "--model", "claude-haiku-4-5"],
                  _env(ctx, account))
    calls = ctx.calls()
    ledger = ctx.bank.assert_ledger(account, calls)
    _ok(ran, marker)
    check(len(calls) == 2 and calls[0].cut and not calls[1].stream,
          f"expected a truncated stream, then the same request without stream; got {len(calls)} call(s)")
    return "re-sent without stream; " + ledger


@scenario("Claude Code", "upstream connection aborted mid-answer: Claude Code re-sends it")
def stream_aborted(ctx: Context) -> str:
    """Straight to Anthropic, a connection that breaks inside a text block makes Claude Code re-send
    the request without ``stream`` (tried against the fake directly; after a finished block it gives
    up instead). Through PageGrid the same; the partial answer is charged once, as upstream_error."""
    account = ctx.account("claude-aborted")
    marker = ctx.begin("a partial answer that breaks", cut_first_stream_after=3)
    ran = ctx.run("claude-aborted", [CLAUDE, "-p", PROMPT, "--model", "claude-haiku-4-5"],
                  _env(ctx, account))
    calls = ctx.calls()
    ledger = ctx.bank.assert_ledger(account, calls)
    _ok(ran, marker)
    check(len(calls) == 2 and calls[0].cut and not calls[1].stream,
          f"expected a broken stream, then the same request without stream; got {len(calls)} call(s)")
    return "re-sent without stream; " + ledger


@scenario("Claude Code", "key over its daily request limit: the 429 is shown promptly")
def daily_limit(ctx: Context) -> str:
    """A daily limit answers 429 with retry-after = seconds to UTC midnight (hours). Claude Code
    honours retry-after on 429, so the customer must not be left waiting for hours."""
    account = ctx.account("claude-daily", "--daily-limit", "1")
    marker = ctx.begin("pong-daily")
    argv = [CLAUDE, "-p", PROMPT, "--model", "claude-haiku-4-5"]
    first = ctx.run("claude-daily-1", argv, _env(ctx, account))
    _ok(first, marker)
    second = ctx.run("claude-daily-2", argv, _env(ctx, account), timeout=60)
    output = second.stdout + second.stderr
    limited = ctx.gateway.answered("POST", "/v1/v1/messages", 429)
    check(second.returncode not in (0, -9) and "Daily request limit" in output,
          f"the second call (over the daily limit) did not end with the limit's message within 60 s "
          f"(the gateway answered {limited} x 429 so far)\n{second.describe()}")
    return f"shown after {second.seconds:.1f}s: {output.strip().splitlines()[0]!r}; " + \
        ctx.bank.assert_ledger(account, ctx.calls())


@scenario("Claude Code", "failover: a 529 account and a dead one before the answering account")
def failover(ctx: Context) -> str:
    """Two accounts ahead of the provider in the pool: one overloaded (529), one refusing
    connections. Claude Code's request reaches the third account with one hold and one charge;
    the two are left cooling (and are taken out of the pool afterwards for the other scenarios)."""
    overloaded = FakeUpstream()
    server = serve(overloaded)
    overloaded.default = lambda req: Response(json.dumps(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        status=529, mimetype="application/json")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    names = (f"e2e-529-{secrets.token_hex(2)}", f"e2e-dead-{secrets.token_hex(2)}")
    try:
        ctx.gateway.cli("add-upstream", "anthropic", overloaded.url, "--key", "sk-e2e-overloaded",
                        "--name", names[0], "--priority", "10")
        ctx.gateway.cli("add-upstream", "anthropic", dead, "--key", "sk-e2e-dead",
                        "--name", names[1], "--priority", "9")
        time.sleep(2.2)  # every worker re-reads the accounts within 2 s
        account = ctx.account("claude-failover")
        marker = ctx.begin("pong-failover")
        ran = ctx.run("claude-failover", [CLAUDE, "-p", PROMPT, "--model", "claude-haiku-4-5"],
                      _env(ctx, account))
        _ok(ran, marker)
        check(len(overloaded.requests) >= 1, "the overloaded account was never tried")
        ledger = ctx.bank.assert_ledger(account, ctx.calls())
        rows = ctx.bank.db.query("SELECT upstream, attempts FROM ledger WHERE api_key_id = %s "
                                 "ORDER BY id", account.key_id)
        check(rows and rows[0] == ("env-anthropic", 3), f"the first charge records {rows[:1]}, "
                                                        "expected env-anthropic after 3 attempts")
        log = ctx.gateway.log_text()
        for name, reason in zip(names, ("HTTP 529", "Could not reach"), strict=True):
            check(f"upstream account {name} cooling for 5s: {reason}" in log,
                  f"the gateway's log does not show {name} cooling after {reason}")
        return f"{len(overloaded.requests)} call(s) hit the 529 account; charges {rows}; " + ledger
    finally:
        for name in names:
            with contextlib.suppress(RuntimeError):
                ctx.gateway.cli("set-upstream", name, "--disable")
        server.shutdown()

NEW_MODEL = "claude-sonnet-5-5"  # in the shipped price list, not in the seed


@scenario("Claude Code", "sync-models adds a model the provider lists; --model it works")
def synced_model(ctx: Context) -> str:
    account = ctx.account("claude-synced")
    rates = "SELECT auto_priced, active, input_nanos, output_nanos FROM catalog_models WHERE id = %s"
    check(not ctx.bank.db.query(rates, NEW_MODEL), f"{NEW_MODEL} is in the catalog before the sync")
    ctx.begin("never")
    ctx.provider.anthropic_models = [DEFAULT_MODEL, "claude-haiku-4-5-20251001", NEW_MODEL]
    try:
        printed = ctx.gateway.cli("sync-models")
    finally:
        ctx.provider.anthropic_models = []
    check(f"added {NEW_MODEL}: price list:" in printed, f"sync-models printed:\n{printed}")
    check(ctx.bank.db.query(rates, NEW_MODEL) == [(True, True, 2000, 10000)],
          f"{NEW_MODEL} in the catalog: {ctx.bank.db.query(rates, NEW_MODEL)}")
    marker = ctx.begin("pong-synced")
    ran = ctx.run("claude-synced", [CLAUDE, "-p", PROMPT, "--model", NEW_MODEL], _env(ctx, account))
    _ok(ran, marker)
    _upstream_checks(ctx, NEW_MODEL, account)
    return "synced and priced from the list; " + ctx.bank.assert_ledger(account, ctx.calls())
