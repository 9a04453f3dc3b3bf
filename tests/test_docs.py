"""The public docs: every page renders for anyone, shows the live catalog, and every API snippet runs.

The snippet runner renders each page with a live server's URL as this deployment's public URL, takes
the curl and Python snippets out of the HTML exactly as a reader would copy them, puts a real funded
key in place of the placeholder, scripts the fake provider for the call the snippet makes, and runs
the snippet in a subprocess. Then it checks the output, what the provider received, and the ledger.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import update

from pagegrid.catalog import SEED
from pagegrid.catalog import catalog
from pagegrid.dashboard.docs import ORDER
from pagegrid.dashboard.docs import TITLES
from pagegrid.extensions import db
from pagegrid.models import CatalogModel
from pagegrid.setups import tool_setups
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream import chat_chunks
from tests.fake_upstream import chat_completion
from tests.fake_upstream import message
from tests.fake_upstream import openai_response
from tests.fake_upstream import openai_response_events
from tests.fake_upstream import stream_events

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "docs"
PLACEHOLDER = "pg-your-key-here"
LANGUAGES = {"bash", "python", "javascript", "toml", "json", "powershell"}
SNIPPET = re.compile(
    r'<div class="snippet"><button class="copy button small secondary" data-copy-target="([^"]+)">'
    r'Copy</button><pre id="([^"]+)" data-lang="([^"]+)"><code>(.*?)</code></pre></div>', re.S)
CALL_BLOCK = re.compile(r'{%\s*call snippet\("([^"]+)",\s*"([^"]+)"\)\s*%}(.*?){%\s*endcall\s*%}', re.S)
ANY_SNIPPET = re.compile(r'snippet\(\s*"([^"]+)"\s*,\s*"([^"]+)"')
SHARED = re.compile(r'shared\(setups\["([^"]+)"\]\)')  # a setup from pagegrid/setups.py
SETUPS = tool_setups("https://gw.example.com", "pg-your-key-here", [])
URL = re.compile(r"https?://[^\s\"'<>\\]+")
# What the fake provider answers, and therefore what each snippet must print and be charged for.
TEXT = "Paris is the capital of France."
INPUT_TOKENS, OUTPUT_TOKENS, COUNTED_TOKENS = 21, 9, 19
ERROR_BODY = re.compile(r'"error"\s*:\s*\{|"type"\s*:\s*"error"|^event: error', re.M)
# What a snippet that parses the answer into a model (``.parse(``) gets, and prints.
CITY, CITY_PRINTED = {"name": "Paris", "country": "France"}, "name='Paris' country='France'"
STREAM_END = {"/v1/messages": "message_stop", "/v1/chat/completions": "[DONE]",
              "/v1/responses": "response.completed"}


def _runnable(language: str, code: str) -> bool:
    return language == "python" or (language == "bash" and bool(re.search(r"^curl ", code, re.M)))


def _declared() -> list[tuple[str, str]]:
    """(page, snippet id) of every curl or Python snippet written in the page templates, or
    shared with the key pages (pagegrid/setups.py)."""
    written = [(name, snippet_id) for name in ORDER
               for snippet_id, language, code in CALL_BLOCK.findall((TEMPLATES / f"{name}.html").read_text())
               if _runnable(language, code)]
    shared = [(name, snippet_id) for name in ORDER
              for snippet_id in SHARED.findall((TEMPLATES / f"{name}.html").read_text())
              if _runnable(SETUPS[snippet_id].language, SETUPS[snippet_id].code)]
    return written + shared


RUNNABLE = _declared()


@dataclass(frozen=True)
class Snippet:
    """One code block as a reader copies it."""

    id: str
    language: str
    code: str


def snippets(page_html: str) -> dict[str, Snippet]:
    """Every snippet of a rendered page, by id, with its code unescaped."""
    found = {}
    for target, pre_id, language, code in SNIPPET.findall(page_html):
        assert target == pre_id, f"the copy button of {pre_id} targets {target}"
        assert pre_id not in found, f"duplicate snippet id {pre_id}"
        found[pre_id] = Snippet(pre_id, language, html.unescape(code))
    return found


def render(client, name: str, **kwargs) -> str:
    response = client.get(f"/docs/{name}", **kwargs)
    assert response.status_code == 200, name
    return response.get_data(as_text=True)


def all_snippets(client, **kwargs) -> dict[str, dict[str, Snippet]]:
    return {name: snippets(render(client, name, **kwargs)) for name in ORDER}


# 1. pages ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ORDER)
def test_every_page_renders_for_an_anonymous_visitor(client, name):
    page = render(client, name)
    assert f"<h1>{html.escape(TITLES[name])}</h1>" in page
    start = page.index('aria-label="Documentation"')
    nav = page[start:page.index("</nav>", start)]
    for other in ORDER:
        assert f'href="/docs/{other}"' in nav
    assert 'class="on" aria-current="page">' in nav
    assert "loading" not in page.lower()
    assert "log in" in page.lower()  # the anonymous header, not a dashboard page


def _article(page: str) -> str:
    return page[page.index("<article>"):page.index("</article>")]


def test_docs_root_is_getting_started(client):
    root = client.get("/docs/")
    assert root.status_code == 200
    assert _article(root.get_data(as_text=True)) == _article(render(client, "getting-started"))


@pytest.mark.parametrize("path", ["/docs/nope", "/docs/layout", "/docs/macros", "/docs/Getting-Started"])
def test_unknown_page_is_404(client, path):
    assert client.get(path).status_code == 404


def test_snippets_have_unique_ids_languages_and_copy_buttons(client):
    seen: dict[str, str] = {}
    for name, found in all_snippets(client).items():
        page = render(client, name)
        assert page.count('data-copy-target="') == len(found)
        for snippet in found.values():
            assert snippet.id not in seen, f"{snippet.id} is on {seen.get(snippet.id)} and {name}"
            seen[snippet.id] = name
            assert snippet.language in LANGUAGES, snippet.id
            assert snippet.code.strip() and snippet.code == snippet.code.strip("\n"), snippet.id
    declared = {snippet_id for name in ORDER
                for snippet_id, _ in ANY_SNIPPET.findall((TEMPLATES / f"{name}.html").read_text())}
    declared |= {snippet_id for name in ORDER
                 for snippet_id in SHARED.findall((TEMPLATES / f"{name}.html").read_text())}
    assert declared == set(seen)
    runnable = {s.id for found in all_snippets(client).values() for s in found.values()
                if _runnable(s.language, s.code)}
    assert runnable == {snippet_id for _, snippet_id in RUNNABLE}


def test_snippet_macro_escapes_code_exactly_once(app):
    code = "cat <<'EOF' && echo \"<b>&amp;</b>\"\n  indented\nEOF"
    source = ('{% from "docs/macros.html" import snippet %}{{ snippet("a", "bash", code) }}'
              '{% call snippet("b", "bash") %}\nx="<i>" {{ value }} && y\n{% endcall %}')
    with app.test_request_context():
        out = app.jinja_env.from_string(source).render(code=code, value="a&b<c>")
    found = snippets(out)
    assert found["a"].code == code
    assert found["b"].code == 'x="<i>" a&b<c> && y'
    assert "<b>" not in out and "<i>" not in out


# 2. the models page -----------------------------------------------------------------------------------
def _row(page: str, model_id: str) -> str:
    match = re.search(rf'<tr id="model-{re.escape(model_id)}"[^>]*>(.*?)</tr>', page, re.S)
    assert match, f"no row for {model_id}"
    return match.group(1)


def _prices(row: str) -> dict[str, str]:
    return dict(re.findall(r'data-price="([a-z_0-9]+)">([^<]+)<', row))


PRICE_COLUMNS = ("input", "output", "cache_write", "cache_write_1h", "cache_read")


def test_models_page_lists_every_active_model_with_its_exact_prices(app, client):
    page = render(client, "models")
    with app.app_context():
        active = {m.id: m for m in catalog().active()}
    assert set(re.findall(r'<tr id="model-([^"]+)"', page)) == set(active)
    for model_id, provider, name, aliases, context, max_out, _, prices in SEED:
        row = _row(page, model_id)
        assert _prices(row) == dict(zip(PRICE_COLUMNS, [f"${price}" for price in prices], strict=True))
        assert f"<code>{model_id}</code>" in row and name in row
        assert f"{context:,}" in row and f"{max_out:,}" in row
        assert all(f"<code>{alias}</code>" in row for alias in aliases)
        assert {"anthropic": "Anthropic", "openai": "OpenAI"}[provider] in row
        assert "vision" in row and "tools" in row
    haiku = _prices(_row(page, "claude-haiku-4-5-20251001"))
    assert list(haiku.values()) == ["$1", "$5", "$1.25", "$2", "$0.10"]
    assert "GET " in page and "/v1/models" in page
    entry = json.loads(snippets(page)["models-entry"].code)
    assert entry["id"] in active and set(entry["pricing"]) >= set(PRICE_COLUMNS)


def test_models_page_follows_price_edits_in_the_database(app, client):
    with app.app_context():
        db.session.execute(update(CatalogModel).where(CatalogModel.id == "claude-haiku-4-5-20251001")
                           .values(input_nanos=1_500, cache_read_nanos=125, output_nanos=5_250))
        db.session.execute(update(CatalogModel).where(CatalogModel.id == "gpt-5.5").values(active=False))
        db.session.commit()
        app.extensions["pagegrid.catalog"].invalidate()
    page = render(client, "models")
    assert _prices(_row(page, "claude-haiku-4-5-20251001")) == {
        "input": "$1.50", "output": "$5.25", "cache_write": "$1.25", "cache_write_1h": "$2",
        "cache_read": "$0.125"}
    assert 'id="model-gpt-5.5"' not in page
    openclaw = json.loads(snippets(render(client, "openclaw"))["openclaw-config"].code)
    assert "gpt-5.5" not in json.dumps(openclaw)


# 3. base URLs -----------------------------------------------------------------------------------------
def _assert_every_url_starts_with(found: dict[str, dict[str, Snippet]], base: str) -> None:
    runnable = 0
    for name, page_snippets in found.items():
        for snippet in page_snippets.values():
            for url in URL.findall(snippet.code):
                assert url.startswith(base), f"{name}/{snippet.id} uses {url}, not {base}"
                assert "//" not in url.split("://", 1)[1], f"{name}/{snippet.id}: {url}"
            if _runnable(snippet.language, snippet.code):
                runnable += 1
                # Snippets that read the environment get the URL from the page's export snippet.
                if PLACEHOLDER in snippet.code or snippet.language == "bash":
                    assert base in snippet.code, f"{name}/{snippet.id} does not use {base}"
    assert runnable == len(RUNNABLE)


@pytest.mark.parametrize("configured", ["https://gateway.example.com", "https://gateway.example.com/"])
def test_snippets_use_the_configured_public_url(app, client, configured):
    app.config["PAGEGRID_PUBLIC_URL"] = configured
    found = all_snippets(client, base_url="http://10.0.0.7:8000")
    _assert_every_url_starts_with(found, "https://gateway.example.com")
    assert "10.0.0.7" not in json.dumps({n: [s.code for s in f.values()] for n, f in found.items()})


def test_snippets_use_the_request_host_without_a_public_url(app, client):
    app.config["PAGEGRID_PUBLIC_URL"] = None
    _assert_every_url_starts_with(all_snippets(client, base_url="http://docs.example.test:8123"),
                                  "http://docs.example.test:8123")


# 4. tool setup snippets (text that is not run against the API, but must be right) ---------------------
BASE = "https://gw.example.com"


@pytest.fixture
def public(app, client) -> dict[str, dict[str, Snippet]]:
    """Every page's snippets, rendered with ``BASE`` as the public URL."""
    app.config["PAGEGRID_PUBLIC_URL"] = BASE
    return all_snippets(client)


def exported(code: str, env: dict[str, str]) -> dict[str, str]:
    """The variables an ``export`` snippet sets, as bash sees them after running it."""
    names = re.findall(r"^export ([A-Z_]+)=", code, re.M)
    assert names and len(names) == len([line for line in code.splitlines() if line.strip()]), code
    result = subprocess.run(["bash", "-c", code + "\nenv -0"], env=env, capture_output=True, text=True,
                            timeout=30, check=True)
    values = dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)
    return {name: values[name] for name in names}


def clean_env(home: Path) -> dict[str, str]:
    """This process's environment without API settings or proxies, with a private home."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANTHROPIC_", "OPENAI_", "PAGEGRID_")) and "proxy" not in k.lower()}
    env.update(HOME=str(home), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


def test_claude_code_page_sets_a_v1_base_url(public, tmp_path):
    page = public["claude-code"]
    env = exported(page["claude-code-env"].code, clean_env(tmp_path))
    assert env == {"ANTHROPIC_BASE_URL": f"{BASE}/v1", "ANTHROPIC_API_KEY": PLACEHOLDER}
    assert f'$env:ANTHROPIC_BASE_URL = "{BASE}/v1"' in page["claude-code-powershell"].code
    assert f'$env:ANTHROPIC_API_KEY = "{PLACEHOLDER}"' in page["claude-code-powershell"].code
    persist = page["claude-code-powershell-persist"].code
    assert f'SetEnvironmentVariable("ANTHROPIC_BASE_URL", "{BASE}/v1", "User")' in persist
    assert page["claude-code-run"].code == "claude"
    assert page["claude-code-models"].code.startswith("claude --model claude-")


def _claude_code_costs(client) -> tuple[str, float]:
    """The page's sentence about Claude Code's request, and the hold it names in dollars."""
    found = re.search(r"For Claude Code on (.*?) per\s+request", render(client, "claude-code"), re.S)
    assert found, "no hold for Claude Code on the page"
    return found.group(1), float(re.search(r"\$([0-9.]+)", found.group(1)).group(1))


def test_claude_code_costs_name_its_default_model_and_request(app, client, runner, fake_upstream):
    """Claude Code 2.1.332 asks for claude-opus-5-5 with max_tokens 128,000 (make e2e). Before a sync
    adds that model the page names the seed's Opus; either way the hold covers 128,000 output tokens."""
    before, opus_4_8 = _claude_code_costs(client)
    assert "<code>claude-opus-4-8</code>" in before and "128,000 output tokens" in before
    assert opus_4_8 > 128_000 * 25 / 1e6  # Opus 4.8's $25 per 1M output tokens, plus the input
    listed = {"type": "model", "id": "claude-opus-5-5", "display_name": "Claude Opus 5.5",
              "created_at": "2026-11-01T00:00:00Z"}
    fake_upstream.reply({"data": [listed], "has_more": False})
    assert runner.invoke(args=["sync-models"]).exit_code == 0
    app.extensions["pagegrid.catalog"].invalidate()
    after, opus_5_5 = _claude_code_costs(client)
    assert "<code>claude-opus-5-5</code>" in after and "128,000 output tokens" in after
    assert 128_000 * 20 / 1e6 < opus_5_5 < opus_4_8  # Opus 5.5's $20 per 1M output, cheaper than 4.8


@pytest.mark.parametrize("page, snippet_id", [("codex-cli", "codex-cli-config"),
                                              ("codex-app", "codex-app-config")])
def test_codex_pages_configure_a_responses_provider(app, public, page, snippet_id):
    config = tomllib.loads(public[page][snippet_id].code)
    provider = config["model_providers"]["pagegrid"]
    assert config["model_provider"] == "pagegrid"
    assert provider["wire_api"] == "responses"
    assert provider["base_url"] == f"{BASE}/v1"
    assert provider["env_key"] == "PAGEGRID_API_KEY"
    with app.app_context():
        assert catalog().resolve(config["model"]) is not None
    assert "[model_providers.pagegrid]" in public[page][snippet_id].code


def test_codex_cli_key_variable_matches_the_config(public, tmp_path):
    env = exported(public["codex-cli"]["codex-cli-env"].code, clean_env(tmp_path))
    config = tomllib.loads(public["codex-cli"]["codex-cli-config"].code)
    assert env == {config["model_providers"]["pagegrid"]["env_key"]: PLACEHOLDER}
    assert "PAGEGRID_API_KEY" in public["codex-app"]["codex-app-macos"].code
    assert "PAGEGRID_API_KEY" in public["codex-app"]["codex-app-windows"].code


def test_openclaw_config_names_live_models_and_the_right_base_urls(app, client, public):
    config = json.loads(public["openclaw"]["openclaw-config"].code)
    providers = config["models"]["providers"]
    claude, gpt = providers["pagegrid"], providers["pagegrid-openai"]
    assert (claude["api"], claude["baseUrl"], claude["apiKey"]) == ("anthropic-messages", BASE, PLACEHOLDER)
    assert (gpt["api"], gpt["baseUrl"], gpt["apiKey"]) == ("openai-completions", f"{BASE}/v1", PLACEHOLDER)
    with app.app_context():
        active = {m.id: m for m in catalog().active()}
    listed = {m["id"]: (name, m) for name, p in providers.items() for m in p["models"]}
    assert set(listed) == set(active)
    for model_id, (name, entry) in listed.items():
        assert name == ("pagegrid" if active[model_id].provider == "anthropic" else "pagegrid-openai")
        assert entry["maxTokens"] == active[model_id].max_output
    haiku = listed["claude-haiku-4-5-20251001"][1]["cost"]
    assert haiku == {"input": 1, "output": 5, "cacheRead": 0.1, "cacheWrite": 1.25}
    provider, _, model_id = config["agents"]["defaults"]["model"]["primary"].partition("/")
    assert provider in providers and model_id in active
    assert "Node.js 24" in render(client, "openclaw")


def test_config_snippets_parse(public):
    languages = set()
    for page_snippets in public.values():
        for snippet in page_snippets.values():
            languages.add(snippet.language)
            if snippet.language == "json":
                json.loads(snippet.code)
            elif snippet.language == "toml":
                tomllib.loads(snippet.code)
            elif snippet.language == "bash" and not _runnable("bash", snippet.code):
                subprocess.run(["bash", "-n", "-c", snippet.code], check=True, timeout=30)
    assert languages == LANGUAGES


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_javascript_snippets_are_valid_modules(public, tmp_path):
    checked = 0
    for page_snippets in public.values():
        for snippet in page_snippets.values():
            if snippet.language == "javascript":
                path = tmp_path / f"{snippet.id}.mjs"
                path.write_text(snippet.code)
                result = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True,
                                        timeout=30)
                assert result.returncode == 0, f"{snippet.id}: {result.stderr}"
                checked += 1
    assert checked >= 4


# 5. the snippet runner ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiCall:
    """What a snippet asks PageGrid for."""

    path: str
    model: str | None
    stream: bool


PYTHON_CALLS = (("count_tokens(", "/v1/messages/count_tokens"), ("chat.completions.", "/v1/chat/completions"),
                ("responses.", "/v1/responses"), ("messages.", "/v1/messages"),
                ("models.list(", "/v1/models"))


def api_call(snippet: Snippet, base: str) -> ApiCall:
    """Read the endpoint, model and stream flag from a curl command or a Python SDK snippet."""
    if snippet.language == "bash":
        url = URL.search(snippet.code).group(0)
        assert url.startswith(base), url
        data = re.search(r"-d '(.*?)'", snippet.code, re.S)
        body = json.loads(data.group(1)) if data else {}
        return ApiCall(url.removeprefix(base), body.get("model"), body.get("stream") is True)
    path = next(path for marker, path in PYTHON_CALLS if marker in snippet.code)
    model = re.search(r'model="([^"]+)"', snippet.code)
    stream = "stream=True" in snippet.code or ".stream(" in snippet.code
    return ApiCall(path, model.group(1) if model else None, stream)


def upstream_path(call: ApiCall, provider: str | None) -> str | None:
    """Where the gateway should forward the call: Claude models go to /v1/messages, GPT ones stay."""
    if call.path in ("/v1/models", "/v1/key"):
        return None
    if call.path == "/v1/messages/count_tokens" or provider == "anthropic":
        return call.path if call.path.startswith("/v1/messages") else "/v1/messages"
    return "/v1/chat/completions" if call.path == "/v1/messages" else call.path


def script(fake: FakeUpstream, path: str, model: str, stream: bool) -> None:
    """Script the provider's answer for one forwarded call, in the provider's own format."""
    if path == "/v1/messages/count_tokens":
        fake.reply({"input_tokens": COUNTED_TOKENS})
        return
    if path == "/v1/messages":
        body = message(TEXT, model=model, input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS)
        events = stream_events(body)
    elif path == "/v1/chat/completions":
        body = chat_completion(TEXT, model=model, prompt_tokens=INPUT_TOKENS, completion_tokens=OUTPUT_TOKENS)
        events = chat_chunks(body)
    else:
        body = openai_response(TEXT, model=model, input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS)
        events = openai_response_events(body)
    if stream:
        fake.stream(events)
    else:
        fake.reply(body)


def run(snippet: Snippet, key: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a snippet as a reader would, with the placeholder replaced by a real key."""
    code = snippet.code.replace(PLACEHOLDER, key)
    command = ["bash", "-c", code] if snippet.language == "bash" else [sys.executable, "-c", code]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def page_env(page_snippets: dict[str, Snippet], key: str, env: dict[str, str]) -> dict[str, str]:
    """The variables the page's own ``export`` snippets set, for snippets that read the environment."""
    found: dict[str, str] = {}
    for snippet in page_snippets.values():
        if snippet.language == "bash" and snippet.code.startswith("export "):
            found |= exported(snippet.code.replace(PLACEHOLDER, key), env)
    assert found, "the snippet reads its key from the environment, but the page exports nothing"
    return found


@pytest.mark.parametrize("page, snippet_id", RUNNABLE, ids=[f"{p}/{s}" for p, s in RUNNABLE])
def test_snippet_runs_against_a_live_gateway(app, client, live_server, fake_upstream, wallets, tmp_path,
                                             page, snippet_id):
    app.config["PAGEGRID_PUBLIC_URL"] = live_server
    page_snippets = snippets(render(client, page))
    snippet = page_snippets[snippet_id]
    user_id = wallets.user("10")
    key = wallets.key(user_id)
    env = clean_env(tmp_path)
    if snippet.language == "python" and PLACEHOLDER not in snippet.code:
        env |= page_env(page_snippets, key, env)
    call = api_call(snippet, live_server)
    with app.app_context():
        model = catalog().resolve(call.model) if call.model else None
        active = [m.id for m in catalog().active()]
    assert call.model is None or model is not None, f"{snippet_id} names {call.model}, which is not active"
    forward = upstream_path(call, model.provider if model else None)
    parses = ".parse(" in snippet.code
    if forward and parses:
        fake_upstream.structured(CITY, input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS)
    elif forward:
        script(fake_upstream, forward, model.upstream_id, call.stream)
    charged = forward is not None and forward != "/v1/messages/count_tokens"
    before = len(wallets.charges(user_id))

    result = run(snippet, key, env, tmp_path)

    out = result.stdout
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}\n{out}"
    assert not ERROR_BODY.search(out), out
    if call.path == "/v1/models":
        assert all(model_id in out for model_id in active), out
    elif call.path == "/v1/key":
        assert '"object":"api_key"' in out.replace(" ", "") and '"available"' in out, out
    elif forward == "/v1/messages/count_tokens":
        assert str(COUNTED_TOKENS) in out, out
    elif call.stream:
        assert all(word in out for word in TEXT.split()), out
        if snippet.language == "bash":
            assert STREAM_END[call.path] in out, out
    else:
        assert (CITY_PRINTED if parses else TEXT) in out, out
    if " -i " in snippet.code:
        prefix = "anthropic-ratelimit" if call.path.startswith("/v1/messages") else "x-ratelimit"
        assert f"{prefix}-requests-remaining" in out.lower() and "request-id" in out.lower(), out
    if forward:
        [sent] = fake_upstream.requests
        assert sent.path == forward
        assert key not in json.dumps(sent.headers)
        if charged:
            assert bool((sent.body or {}).get("stream")) == call.stream
    else:
        assert fake_upstream.requests == []
    wallets.wait_settled(user_id)
    charges = wallets.charges(user_id)
    if charged:
        assert len(charges) == before + 1
        charge = charges[-1]
        assert (charge.model, charge.status) == (model.id, "complete")
        assert (charge.input_tokens, charge.output_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)
        assert charge.amount_nanos == -(INPUT_TOKENS * model.price.input + OUTPUT_TOKENS * model.price.output)
    else:
        assert len(charges) == before
    wallets.assert_consistent(user_id)
