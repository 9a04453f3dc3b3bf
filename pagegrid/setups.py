"""Ready-to-paste setups for the tools and SDKs (pure): one source for the docs pages and each
key's page, so the two never drift apart.

Each setup is the exact text a customer copies, built from this deployment's base URL, a key (the
docs' placeholder, a key's ``pg-65b0…69d0`` on its page, or the whole secret right after it was
created) and the live catalog. The snippet ids are the docs' (tests and ``e2e/`` find them by id).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from string import Template

from pagegrid.catalog import ModelEntry
from pagegrid.money import per_mtok_decimal

# Example models the snippets name, if the catalog has them; else its first model of that provider.
PREFERRED = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-5.4"}


@dataclass(frozen=True)
class Setup:
    """One copyable block: its docs snippet id, the tool it sets up, its language and its text."""

    id: str
    tool: str
    language: str
    code: str


def example_model(models: list[ModelEntry], provider: str) -> ModelEntry | None:
    """The model the snippets use for ``provider``."""
    mine = [m for m in models if m.provider == provider]
    return next((m for m in mine if m.id == PREFERRED[provider]), mine[0] if mine else None)


# The texts, with $api (base URL + /v1), $base, $key, $claude and $gpt filled in by tool_setups.
_TEXTS: tuple[tuple[str, str, str, str], ...] = (
    ("claude-code-env", "Claude Code", "bash", """\
export ANTHROPIC_BASE_URL="$api"
export ANTHROPIC_API_KEY="$key\""""),
    ("codex-cli-env", "Codex CLI", "bash", """\
export PAGEGRID_API_KEY="$key\""""),
    ("codex-cli-config", "Codex CLI", "toml", """\
model = "$gpt"
model_provider = "pagegrid"

[model_providers.pagegrid]
name = "PageGrid"
base_url = "$api"
env_key = "PAGEGRID_API_KEY"
wire_api = "responses\""""),
    ("sdk-python-anthropic", "Anthropic SDK", "python", """\
from anthropic import Anthropic

client = Anthropic(api_key="$key", base_url="$base")

message = client.messages.create(
    model="$claude",
    max_tokens=1024,
    messages=[{"role": "user", "content": "Explain prompt caching in two sentences."}],
)
print(message.content[0].text)"""),
    ("sdk-js-anthropic", "Anthropic SDK", "javascript", """\
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({ apiKey: "$key", baseURL: "$base" });

const message = await client.messages.create({
  model: "$claude",
  max_tokens: 1024,
  messages: [{ role: "user", content: "Explain prompt caching in two sentences." }],
});
console.log(message.content[0].text);"""),
    ("sdk-python-openai", "OpenAI SDK", "python", """\
from openai import OpenAI

client = OpenAI(api_key="$key", base_url="$api")

response = client.chat.completions.create(
    model="$gpt",
    max_completion_tokens=1024,
    messages=[{"role": "user", "content": "Explain prompt caching in two sentences."}],
)
print(response.choices[0].message.content)"""),
    ("sdk-js-openai", "OpenAI SDK", "javascript", """\
import OpenAI from "openai";

const client = new OpenAI({ apiKey: "$key", baseURL: "$api" });

const response = await client.chat.completions.create({
  model: "$gpt",
  max_completion_tokens: 1024,
  messages: [{ role: "user", content: "Explain prompt caching in two sentences." }],
});
console.log(response.choices[0].message.content);"""),
    ("getting-started-curl", "curl", "bash", """\
curl $api/messages \\
  -H "x-api-key: $key" \\
  -H "content-type: application/json" \\
  -d '{
    "model": "$claude",
    "max_tokens": 256,
    "messages": [{"role": "user", "content": "What is the capital of France?"}]
  }'"""),
)


def tool_setups(base: str, key: str, models: list[ModelEntry]) -> dict[str, Setup]:
    """Every setup by id, in the order a key's page shows them; ``base`` has no trailing slash."""
    claude, gpt = example_model(models, "anthropic"), example_model(models, "openai")
    values = {"api": base + "/v1", "base": base, "key": key,
              "claude": claude.id if claude else PREFERRED["anthropic"],
              "gpt": gpt.id if gpt else PREFERRED["openai"]}
    found = {ident: Setup(ident, tool, language, Template(text).substitute(values))
             for ident, tool, language, text in _TEXTS}
    openclaw = Setup("openclaw-config", "OpenClaw", "json", openclaw_config(base, models, key))
    order = ("claude-code-env", "codex-cli-env", "codex-cli-config", "openclaw-config")
    return {ident: openclaw if ident == "openclaw-config" else found[ident]
            for ident in (*order, *(i for i in found if i not in order))}


def openclaw_config(base: str, models: list[ModelEntry], key: str) -> str:
    """``~/.openclaw/openclaw.json`` with PageGrid's live catalog as two providers."""
    providers: dict[str, dict] = {}
    claude = [_openclaw_model(m) for m in models if m.provider == "anthropic"]
    gpt = [_openclaw_model(m) for m in models if m.provider == "openai"]
    if claude:
        providers["pagegrid"] = {"baseUrl": base, "apiKey": key, "api": "anthropic-messages",
                                 "models": claude}
    if gpt:
        providers["pagegrid-openai"] = {"baseUrl": base + "/v1", "apiKey": key,
                                        "api": "openai-completions", "models": gpt}
    config: dict = {"models": {"mode": "merge", "providers": providers}}
    default = example_model(models, "anthropic")
    if default is not None:
        config["agents"] = {"defaults": {"model": {"primary": f"pagegrid/{default.id}"}}}
    return tight_json(config)


def _openclaw_model(model: ModelEntry) -> dict:
    price = model.price
    return {"id": model.id, "name": model.display_name, "reasoning": model.thinking,
            "input": ["text", "image"] if model.vision else ["text"],
            "contextWindow": model.context_window, "maxTokens": model.max_output,
            "cost": {"input": _dollars(price.input), "output": _dollars(price.output),
                     "cacheRead": _dollars(price.cache_read), "cacheWrite": _dollars(price.cache_write)}}


def _dollars(nanos_per_token: int) -> int | float:
    # At most three decimals per 1M tokens, so the float prints exactly.
    value = float(per_mtok_decimal(nanos_per_token))
    return int(value) if value.is_integer() else value


# A JSON list or object of scalars only, as json.dumps(indent=2) spreads it over several lines.
_FLAT = re.compile(r'([\[{])\n\s*((?:(?:"[^"\n]*": )?(?:"[^"\n]*"|[-\d.]+|true|false|null),\n\s*)*'
                   r'(?:"[^"\n]*": )?(?:"[^"\n]*"|[-\d.]+|true|false|null))\n\s*([\]}])')


def tight_json(value: dict, longest: int = 80) -> str:
    """Indented JSON with short lists and objects of plain values kept on one line, for snippets."""
    def join(match: re.Match) -> str:
        line = match[1] + re.sub(r",\n\s*", ", ", match[2]) + match[3]
        return line if len(line) <= longest else match[0]

    return _FLAT.sub(join, json.dumps(value, indent=2, ensure_ascii=False))
