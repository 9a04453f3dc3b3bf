"""The SDK snippets of the docs pages, run as a customer would paste them: Python with the
repository's ``anthropic``/``openai`` packages, JavaScript with the pinned npm SDKs on Node 24, and
the curl one-liners. Each snippet is taken from the page as the gateway renders it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from e2e.context import Context
from e2e.context import scenario
from e2e.harness import VENV_BIN
from e2e.harness import WORK
from e2e.harness import check
from e2e.provider import ANTHROPIC_KEY
from e2e.provider import OPENAI_KEY


@dataclass(frozen=True)
class Snippet:
    """A docs snippet and what it must do."""

    page: str
    id: str
    path: str  # what the provider must receive
    model: str  # upstream model id
    stream: bool
    env_snippet: tuple[str, str] | None = None  # (page, id) of a bash snippet with `export` lines
    prints_tokens: bool = False  # the snippet prints "tokens: N in, M out"


SNIPPETS = [
    Snippet("sdk-examples", "sdk-python-anthropic", "/v1/messages", "claude-sonnet-4-6", False),
    Snippet("sdk-examples", "sdk-python-anthropic-stream", "/v1/messages", "claude-sonnet-4-6", True,
            prints_tokens=True),
    Snippet("sdk-examples", "sdk-python-openai", "/v1/chat/completions", "gpt-5.4", False),
    Snippet("sdk-examples", "sdk-python-openai-stream", "/v1/messages", "claude-sonnet-4-6", True),
    Snippet("sdk-examples", "sdk-python-openai-responses", "/v1/responses", "gpt-5.4", False),
    Snippet("sdk-examples", "sdk-python-env", "/v1/messages", "claude-sonnet-4-6", False,
            env_snippet=("sdk-examples", "sdk-env")),
    Snippet("claude-code", "claude-code-sdk-env", "/v1/messages", "claude-sonnet-4-6", False,
            env_snippet=("claude-code", "claude-code-env")),
    Snippet("sdk-examples", "sdk-js-anthropic", "/v1/messages", "claude-sonnet-4-6", False),
    Snippet("sdk-examples", "sdk-js-anthropic-stream", "/v1/messages", "claude-sonnet-4-6", True,
            prints_tokens=True),
    Snippet("sdk-examples", "sdk-js-openai", "/v1/chat/completions", "gpt-5.4", False),
    Snippet("sdk-examples", "sdk-js-openai-stream", "/v1/chat/completions", "gpt-5.4", True),
    Snippet("sdk-examples", "sdk-curl-stream", "/v1/messages", "claude-sonnet-4-6", True),
    Snippet("sdk-examples", "sdk-curl-chat-stream", "/v1/chat/completions", "gpt-5.4", True),
    Snippet("codex-cli", "codex-cli-curl", "/v1/responses", "gpt-5.4", False),
    Snippet("openclaw", "openclaw-curl", "/v1/messages", "claude-sonnet-4-6", False),
]


def _exports(code: str, key: str) -> dict[str, str]:
    env = {}
    for line in code.splitlines():
        match = re.fullmatch(r'export (\w+)="?([^"]*)"?', line.strip())
        if match:
            env[match.group(1)] = match.group(2)
    check(env, f"no export lines in {code!r}")
    return env


def _run_snippet(ctx: Context, snip: Snippet) -> str:
    account = ctx.account(snip.id)
    marker = ctx.begin(f"answer-{snip.id}")
    code = ctx.snippet(snip.page, snip.id, account.key)
    lang = ctx.docs_snippets(snip.page)[snip.id][0]
    env: dict[str, str] = {}
    if snip.env_snippet:
        env = _exports(ctx.snippet(*snip.env_snippet, key=account.key), account.key)
    home = ctx.scratch.home(snip.id)
    if lang == "python":
        path = home / "example.py"
        argv = [str(VENV_BIN / "python"), str(path)]
    elif lang == "javascript":
        # Beside .e2e/node_modules, where the pinned @anthropic-ai/sdk and openai are installed.
        path = WORK / "snippets" / f"{snip.id}.mjs"
        argv = ["node", str(path)]
    else:
        check(lang == "bash", f"snippet #{snip.id} is {lang}")
        path = home / "example.sh"
        argv = ["bash", "-e", str(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code + "\n")
    ran = ctx.run(snip.id, argv, env, home=home, timeout=60)
    check(ran.returncode == 0, f"the snippet exited {ran.returncode}\n{_shown(path)}\n{ran.describe()}")
    if lang == "bash":
        check(all(word in ran.stdout for word in marker.split("-")),
              f"the answer {marker!r} is not in curl's output\n{ran.describe()}")
    else:
        check(marker in ran.stdout, f"the snippet did not print the answer {marker!r}\n{ran.describe()}")
    calls = ctx.calls()
    check(len(calls) == 1, f"the provider got {len(calls)} model calls, expected 1")
    [call] = calls
    check(call.path == snip.path and call.body.get("model") == snip.model and call.stream == snip.stream,
          f"the provider got {call.path} model={call.body.get('model')} stream={call.stream}, expected "
          f"{snip.path} model={snip.model} stream={snip.stream}")
    header, key = (("x-api-key", ANTHROPIC_KEY) if snip.path == "/v1/messages"
                   else ("authorization", f"Bearer {OPENAI_KEY}"))
    for rec in ctx.provider.requests:
        headers = {k.lower(): v for k, v in rec.headers.items()}
        check(headers.get(header) == key, f"upstream {header} is {headers.get(header)!r}")
    if snip.prints_tokens:
        expected = f"{call.input_tokens} in, {call.output_tokens} out"
        check(expected in ran.stdout, f"the stream's usage is not {expected!r}\n{ran.describe()}")
    return ctx.bank.assert_ledger(account, calls)


def _shown(path: Path) -> str:
    return f"--- {path.name} ---\n{path.read_text()}"


def _register(snip: Snippet) -> None:
    client = ("Python SDK" if "-python-" in snip.id or snip.id == "claude-code-sdk-env"
              else "JS SDK" if "-js-" in snip.id else "curl")
    mode = "stream" if snip.stream else "non-stream"
    scenario(client, f"docs #{snip.id} ({mode}, → {snip.model})")(lambda ctx: _run_snippet(ctx, snip))


for _snip in SNIPPETS:
    _register(_snip)
