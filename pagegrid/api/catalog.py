"""``GET /v1/models``: the live catalog, in a shape both the Anthropic and OpenAI SDKs parse."""

from __future__ import annotations

from flask import Response
from flask import jsonify
from flask import request

from pagegrid.api import bp
from pagegrid.catalog import ModelEntry
from pagegrid.catalog import catalog
from pagegrid.catalog import model_json
from pagegrid.errors import ModelNotFound
from pagegrid.keys import KeyContext
from pagegrid.keys import authenticate
from pagegrid.keys import key_from_headers
from pagegrid.pool import upstream_label
from pagegrid.pricegroups import LIST_PRICES
from pagegrid.pricegroups import Multiplier


def _visible(key: KeyContext | None) -> list[ModelEntry]:
    models = catalog().active()
    if key is None or not key.allowed_models:
        return models
    allowed = set(key.allowed_models)
    return [m for m in models if {m.id, *m.aliases} & allowed]


def _optional_key() -> KeyContext | None:
    # No key needed (the pricing page calls this); a key that is sent must be valid.
    return authenticate(request.headers) if key_from_headers(request.headers) else None


def _multiplier(key: KeyContext | None) -> Multiplier:
    # A key's user pays their price group's prices; without a key, the list prices.
    return key.multiplier if key is not None else LIST_PRICES


def _upstream_label(model: ModelEntry) -> str:
    return upstream_label(model.provider)


@bp.get("/models")
@bp.get("/v1/models")
def list_models() -> Response:
    """Every active model (only those the key may use, at its user's prices, when a key is sent)."""
    key = _optional_key()
    data = [model_json(m, _upstream_label(m), _multiplier(key)) for m in _visible(key)]
    return jsonify({"object": "list", "data": data, "has_more": False,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None})


@bp.get("/models/<path:model_id>")
@bp.get("/v1/models/<path:model_id>")
def get_model(model_id: str) -> Response:
    """One active model by id or alias."""
    key = _optional_key()
    for model in _visible(key):
        if model_id == model.id or model_id in model.aliases:
            return jsonify(model_json(model, _upstream_label(model), _multiplier(key)))
    raise ModelNotFound(f"model: {model_id} is not available.", param="model")
