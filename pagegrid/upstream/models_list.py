"""``GET /v1/models`` of a provider account: the model ids it serves (I/O only)."""

from __future__ import annotations

from pagegrid.errors import UpstreamError
from pagegrid.upstream.anthropic import DEFAULT_VERSION
from pagegrid.upstream.base import UpstreamTarget
from pagegrid.upstream.http import get_json

MAX_PAGES = 50  # a provider that keeps saying has_more is not followed forever
PAGE_SIZE = 1000


def list_models(target: UpstreamTarget, *, connect_timeout: float, read_timeout: float) -> list[dict]:
    """Every model the account lists (``{"id": …, "display_name"?: …}``); raises UpstreamError."""
    if target.provider == "anthropic":
        headers = {"anthropic-version": DEFAULT_VERSION, "accept": "application/json"}
        if target.api_key:
            headers["x-api-key"] = target.api_key
    else:
        headers = {"accept": "application/json"}
        if target.api_key:
            headers["authorization"] = f"Bearer {target.api_key}"
    models: list[dict] = []
    params: dict[str, str] = {"limit": str(PAGE_SIZE)} if target.provider == "anthropic" else {}
    for _ in range(MAX_PAGES):
        status, body = get_json(target.base_url + "/v1/models", headers, params,
                                connect_timeout=connect_timeout, read_timeout=read_timeout)
        if status != 200 or body is None or not isinstance(body.get("data"), list):
            raise UpstreamError(_refusal(status, body))
        page = [m for m in body["data"] if isinstance(m, dict) and isinstance(m.get("id"), str)]
        models.extend(page)
        # Anthropic pages with has_more / last_id (the next request's after_id); OpenAI sends all.
        if target.provider != "anthropic" or not body.get("has_more") or not body.get("last_id"):
            return models
        params = {"limit": str(PAGE_SIZE), "after_id": str(body["last_id"])}
    return models


def _refusal(status: int, body: dict | None) -> str:
    if status in (401, 403):
        return f"credentials rejected (HTTP {status})"
    if status == 200:
        return "the answer is not a model list"
    detail = ""
    if body and isinstance(body.get("error"), dict):
        detail = f": {str(body['error'].get('message', ''))[:200]}"
    return f"HTTP {status}{detail}"
