"""Public docs pages: ``GET /docs/`` and ``GET /docs/<name>``, one Jinja template per page.

Jinja rather than Markdown: the pages interpolate live values (this deployment's base URL, the
catalog's models and prices, holds computed by the billing code) and render every code sample through
one ``snippet`` macro with a stable id, which Markdown could do only with extensions and a second pass.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from flask import abort
from flask import current_app
from flask import render_template
from flask import request
from flask_login import current_user

from pagegrid import billing
from pagegrid import bounds
from pagegrid import limits
from pagegrid import mail
from pagegrid import payments
from pagegrid import pricegroups
from pagegrid.catalog import ModelEntry
from pagegrid.catalog import catalog
from pagegrid.catalog import model_json
from pagegrid.dashboard import bp
from pagegrid.forms import KeyLimitsForm
from pagegrid.money import format_per_mtok
from pagegrid.money import format_usd
from pagegrid.pool import upstream_label
from pagegrid.pricegroups import LIST_PRICES
from pagegrid.pricegroups import Multiplier
from pagegrid.setups import PREFERRED
from pagegrid.setups import example_model
from pagegrid.setups import tight_json
from pagegrid.setups import tool_setups
from pagegrid.translate.usage import Usage

# The left nav: (section, ((page name, title), ...)). A page exists iff it is listed here.
SECTIONS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Start here", (("getting-started", "Getting started"), ("authentication", "Authentication"))),
    ("Tools", (("claude-code", "Claude Code"), ("codex-cli", "Codex CLI"),
               ("codex-app", "Codex app & IDE"), ("openclaw", "OpenClaw"))),
    ("API reference", (("messages", "Messages API"), ("chat-completions", "Chat Completions API"),
                       ("responses", "Responses API"), ("token-counting", "Token counting"),
                       ("models", "Models & pricing"), ("errors", "Errors"),
                       ("rate-limits", "Rate limits"), ("sdk-examples", "SDK examples"))),
    ("Account", (("wallet", "Wallet & billing"),)),
)
TITLES: dict[str, str] = {name: title for _, pages in SECTIONS for name, title in pages}
ORDER: list[str] = list(TITLES)

KEY_PLACEHOLDER = "pg-your-key-here"
# Claude Code's default model and the request it sends (make e2e): 2.1.332 asks for claude-opus-5-5
# with max_tokens 128,000 (2.1.197 asked for claude-opus-4-8 with 64,000). Until a sync adds
# claude-opus-5-5 to the catalog, the page names the Opus the seed has.
CLAUDE_CODE_MODELS = ("claude-opus-5-5", "claude-opus-4-8")
CLAUDE_CODE_BODY_BYTES = 80_000
CLAUDE_CODE_MAX_TOKENS = 128_000


def base_url() -> str:
    """The URL customers reach this deployment at, without a trailing slash."""
    configured = current_app.config.get("PAGEGRID_PUBLIC_URL")
    return (configured or request.host_url).rstrip("/")


def _hold(model: ModelEntry | None, body_bytes: int, max_tokens: int,
          multiplier: Multiplier = LIST_PRICES) -> str | None:
    if model is None:
        return None
    body = {"max_tokens": max_tokens, "messages": []}
    nanos = bounds.anthropic_messages(body, body_bytes, model).nanos(model)
    return format_usd(multiplier.apply(nanos), exact=True)


def _wallet_example(model: ModelEntry | None, multiplier: Multiplier = LIST_PRICES) -> dict | None:
    """A worked cost example on the example Claude model, computed by the billing code itself."""
    if model is None:
        return None
    counts = {"input": 1_200, "output": 850, "cache_write": 6_000, "cache_write_1h": 2_000,
              "cache_read": 40_000}
    price = model.price
    rows = [("Input", counts["input"], price.input),
            ("Output", counts["output"], price.output),
            ("Cache write, 5 minutes", counts["cache_write"], price.cache_write),
            ("Cache write, 1 hour", counts["cache_write_1h"], price.cache_write_1h),
            ("Cache read", counts["cache_read"], price.cache_read)]
    usage = Usage(input_tokens=counts["input"], output_tokens=counts["output"],
                  cache_creation_input_tokens=counts["cache_write"] + counts["cache_write_1h"],
                  cache_creation_1h_input_tokens=counts["cache_write_1h"],
                  cache_read_input_tokens=counts["cache_read"])
    lines = [(label, tokens, format_per_mtok(rate), format_usd(tokens * rate, exact=True))
             for label, tokens, rate in rows]
    list_cost = billing.cost_nanos(usage, price)
    return {"model": model, "counts": counts, "rows": lines, "total": format_usd(list_cost, exact=True),
            "group_total": None if multiplier.is_list
            else format_usd(multiplier.apply(list_cost), exact=True)}


def _mebibytes(size: int | None) -> str:
    if not size:
        return "no fixed limit"
    return f"{size // 2**20} MiB" if size % 2**20 == 0 else f"{size:,} bytes"


def _context(name: str) -> dict:
    """Everything the pages render: URLs, the live catalog and numbers from the billing rules."""
    models = catalog().active()
    claude = example_model(models, "anthropic")
    gpt = example_model(models, "openai")
    base = base_url()
    by_id = {m.id: m for m in models}
    claude_code_model = next((by_id[m] for m in CLAUDE_CODE_MODELS if m in by_id), claude)
    rpm = rpm_default()
    multiplier, group = pricegroups.user_prices(current_user.id if current_user.is_authenticated else None)
    return {
        # The viewer's prices: the list prices times their price group's multiplier.
        "per_mtok": partial(format_per_mtok, num=multiplier.num, den=multiplier.den),
        "multiplier": multiplier.text(), "price_group": group,
        "page": name, "title": TITLES[name], "sections": SECTIONS,
        "previous": _neighbour(name, -1), "next": _neighbour(name, 1),
        "base": base, "api_base": base + "/v1", "key": KEY_PLACEHOLDER,
        "setups": tool_setups(base, KEY_PLACEHOLDER, models),
        "models": models, "claude": claude.id if claude else PREFERRED["anthropic"],
        "gpt": gpt.id if gpt else PREFERRED["openai"],
        "claude_models": [m for m in models if m.provider == "anthropic"],
        "gpt_models": [m for m in models if m.provider == "openai"],
        "claude_code_model": claude_code_model,
        "claude_code_hold": _hold(claude_code_model, CLAUDE_CODE_BODY_BYTES, CLAUDE_CODE_MAX_TOKENS,
                                  multiplier),
        "claude_code_max_tokens": min(CLAUDE_CODE_MAX_TOKENS, claude_code_model.max_output)
                                  if claude_code_model else CLAUDE_CODE_MAX_TOKENS,
        "small_hold": _hold(claude, 2_000, 1_024, multiplier),
        "overdraft": current_app.config["PAGEGRID_OVERDRAFT"],
        "gpt_no_max_hold": _hold(gpt, 2_000, gpt.max_output if gpt else 0, multiplier),
        "wallet_example": _wallet_example(claude, multiplier),
        "rpm_default": rpm,
        "count_tokens_budget": max(limits.COUNT_TOKENS_MINIMUM, limits.COUNT_TOKENS_MULTIPLIER * rpm),
        "count_tokens_multiplier": limits.COUNT_TOKENS_MULTIPLIER,
        "count_tokens_minimum": limits.COUNT_TOKENS_MINIMUM,
        "max_body": _mebibytes(current_app.config.get("MAX_CONTENT_LENGTH")),
        "extra": PAGE_EXTRAS.get(name, lambda base, models: {})(base, models),
    }


def rpm_default() -> int:
    """The requests-per-minute limit the key form offers a new key."""
    return KeyLimitsForm.rpm.kwargs["default"]


def _neighbour(name: str, step: int) -> tuple[str, str] | None:
    index = ORDER.index(name) + step
    return (ORDER[index], TITLES[ORDER[index]]) if 0 <= index < len(ORDER) else None


def _models_extra(base: str, models: list[ModelEntry]) -> dict:
    if not models:
        return {"model_json": None}
    first = models[0]
    return {"model_json": tight_json(model_json(first, upstream_label(first.provider)))}


def _wallet_extra(base: str, models: list[ModelEntry]) -> dict:
    card = tuple(format_usd(n) for n in payments.amount_limits()) if payments.enabled() else None
    return {"card_payments": card, "mail": mail.enabled(current_app.config)}


PAGE_EXTRAS: dict[str, Callable[[str, list[ModelEntry]], dict]] = {
    "models": _models_extra,
    "wallet": _wallet_extra,
}


@bp.get("/docs/")
@bp.get("/docs/<name>")
def docs(name: str = ORDER[0]) -> str:
    """One public docs page (no login); ``/docs/`` is the first page, unknown names are 404."""
    if name not in TITLES:
        abort(404)
    return render_template(f"docs/{name}.html", **_context(name))
