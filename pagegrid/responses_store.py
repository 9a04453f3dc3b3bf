"""Stored Responses (OpenAI's ``store``) for Claude models, and who owns each stored response.

A Claude model's completed response (``store`` unset or true) is kept with the input items its
turn added (the resolved input, each with an id) in ``stored_responses``, owned by the key's
user. A later request resolves ``previous_response_id`` to that chain's inputs and outputs, in
order, before the new input, and ``item_reference`` items to the stored items they name, so the
provider receives — and the hold bounds — the whole conversation (pipeline.py resolves it before
building the request). ``instructions`` and tools are not carried over, as at OpenAI.

A GPT model's response stays at OpenAI (``store`` passes through); PageGrid keeps only its
owner and account, so ``GET``/``DELETE /v1/responses/{id}`` reach OpenAI only for the owner.

Item ids PageGrid issues name their response: output items are ``msg_<hex>_<n>`` (see
``openai_item_id``), input items ``msg_<hex>_in<n>``, for the response ``resp_<hex>``; an
``item_reference`` is one primary-key lookup.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from flask import Flask
from flask import current_app

from pagegrid.errors import InvalidRequest
from pagegrid.errors import NotFound
from pagegrid.errors import PreviousResponseNotFound
from pagegrid.extensions import core
from pagegrid.extensions import db
from pagegrid.extensions import prune_before
from pagegrid.json_types import JSON
from pagegrid.models import StoredResponse
from pagegrid.models import utcnow

log = logging.getLogger(__name__)

PRUNE_BATCH = 1_000
# An item id PageGrid issued: its response's hex part, and whether it was input.
_ITEM_ID = re.compile(r"^[a-z]+_([0-9a-f]{24})_(in)?\d+$")
_ITEM_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}
# A response is stored once it ended with output; a failed one is not.
_FINAL = ("completed", "incomplete")
_INSERT = StoredResponse.__table__.insert()  # built once (extensions.core)


@dataclass(frozen=True)
class Turn:
    """A Responses request after resolution: the body to send on, and what to store after it."""

    body: JSON  # the input expanded (Claude models); previous_response_id resolved away
    raw: bytes  # its bytes (the client's own when nothing was resolved)
    input_items: list[JSON]  # what this turn added, references resolved (Claude models)
    previous_response_id: str | None
    store: bool


def resolve(body: JSON, raw: bytes, user_id: int, provider: str) -> Turn:
    """Resolve ``previous_response_id`` and ``item_reference`` items for a Claude model
    (400/404 as OpenAI answers for ids that are unknown or another user's); check them for a
    GPT model, whose body passes through to OpenAI as it is."""
    store = body.get("store")
    if store is not None and not isinstance(store, bool):
        raise InvalidRequest("'store' must be a boolean.", param="store")
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise InvalidRequest("'previous_response_id' must be a string.", param="previous_response_id")
    if provider == "openai":
        if previous is not None:
            row = db.session.get(StoredResponse, previous)
            if row is not None and (row.user_id != user_id or row.provider != "openai"):
                _previous_unusable(previous, row.user_id == user_id)
        return Turn(body, raw, [], previous, store is not False)
    items, referenced = _resolved_items(body.get("input"), user_id)
    if previous is None and not referenced:
        return Turn(body, raw, items, None, store is not False)
    history = _history(previous, user_id) if previous is not None else []
    expanded = {k: v for k, v in body.items() if k != "previous_response_id"}
    expanded["input"] = history + items
    return Turn(expanded, json.dumps(expanded, ensure_ascii=False, separators=(",", ":")).encode(),
                items, previous, store is not False)


def _previous_unusable(response_id: str, own: bool) -> None:
    if not own:
        raise PreviousResponseNotFound(f"Previous response with id '{response_id}' not found.",
                                       param="previous_response_id")
    raise InvalidRequest(f"Previous response '{response_id}' was made by a model of another provider; "
                         "continue it with a model of the same provider, or send the full input.",
                         param="previous_response_id")


def _resolved_items(value: object, user_id: int) -> tuple[list[JSON], bool]:
    """The input as a list of items (a string is one user message) with references resolved,
    and whether there were any."""
    if isinstance(value, str):
        text = {"type": "input_text", "text": value}
        return [{"type": "message", "role": "user", "content": [text]}], False
    if not isinstance(value, list):
        return [], False  # the translator answers the 400
    references = [isinstance(item, dict) and item.get("type") == "item_reference" for item in value]
    return [_referenced(item, user_id) if is_reference else item
            for item, is_reference in zip(value, references, strict=True)], any(references)


def _referenced(reference: JSON, user_id: int) -> JSON:
    """The stored item an ``item_reference`` names (404 if it is not one of the user's)."""
    item_id = reference.get("id")
    if not isinstance(item_id, str):
        raise InvalidRequest("An item_reference needs the 'id' of a stored item.", param="input")
    match = _ITEM_ID.match(item_id)
    row = db.session.get(StoredResponse, f"resp_{match.group(1)}") if match else None
    if row is not None and row.user_id == user_id and row.provider == "anthropic":
        items = row.input_items if match and match.group(2) else (row.response or {}).get("output")
        for item in items or ():
            if item.get("id") == item_id:
                return item
    raise NotFound(f"Item with id '{item_id}' not found.", param="input")


def _history(response_id: str, user_id: int) -> list[JSON]:
    """The inputs and outputs of the chain ending at ``response_id``, oldest first."""
    chain: list[StoredResponse] = []
    next_id: str | None = response_id
    while next_id is not None:
        row = db.session.get(StoredResponse, next_id)
        if row is None or row.user_id != user_id:
            if next_id == response_id:
                _previous_unusable(response_id, False)
            raise PreviousResponseNotFound(
                f"Previous response with id '{response_id}' cannot be continued: the earlier response "
                f"'{next_id}' in its conversation was deleted or expired.", param="previous_response_id")
        if row.provider != "anthropic":
            _previous_unusable(response_id, True)
        chain.append(row)
        next_id = row.previous_response_id
    return [item for row in reversed(chain)
            for item in [*(row.input_items or ()), *(row.response or {}).get("output", ())]]


class Keeper:
    """Stores one request's final response (a plain callable for the stream generator).

    ``upstream`` is set once an account answered. A failure to store is logged, never raised:
    the answer already went out and was charged.
    """

    def __init__(self, app: Flask, user_id: int, key_id: int, model: str, provider: str, turn: Turn) -> None:
        self.app = app
        self.user_id, self.key_id, self.model, self.provider = user_id, key_id, model, provider
        self.turn = turn
        self.upstream: str | None = None

    def __call__(self, response: JSON) -> None:
        """Keep ``response`` if it completed (or ended incomplete) and has an id."""
        response_id = response.get("id")
        if response.get("status") not in _FINAL or not isinstance(response_id, str):
            return
        try:
            with self.app.app_context():
                core(_INSERT, self._row(response_id, response))
                db.session.commit()
        except Exception:
            log.exception("could not store response %s", response_id)

    def _row(self, response_id: str, response: JSON) -> dict:
        row = {"id": response_id, "user_id": self.user_id, "api_key_id": self.key_id,
               "provider": self.provider, "model": self.model, "upstream": self.upstream,
               "previous_response_id": self.turn.previous_response_id}
        if self.provider == "anthropic":
            body = self.turn.body
            instructions = body.get("instructions")
            metadata = body.get("metadata")
            row["response"] = {**response, "previous_response_id": self.turn.previous_response_id,
                               "instructions": instructions if isinstance(instructions, str) else None,
                               "metadata": metadata if isinstance(metadata, dict) else {}, "store": True}
            row["input_items"] = with_item_ids(self.turn.input_items, response_id)
        return row


def keeper(app: Flask, user_id: int, key_id: int, model: str, provider: str, turn: Turn) -> Keeper | None:
    """The Keeper for a request that asked to be stored (``store`` unset or true), else None."""
    return Keeper(app, user_id, key_id, model, provider, turn) if turn.store else None


def with_item_ids(items: list[JSON], response_id: str) -> list[JSON]:
    """Input items as OpenAI lists them: an id each (their own, else one that names the response,
    ``msg_<hex>_in<n>``), and a message's text content as a list of text parts."""
    hex_part = response_id.removeprefix("resp_")
    out = []
    for index, item in enumerate(items):
        kind = item.get("type", "message")
        item = {"type": kind, **item}
        if not isinstance(item.get("id"), str):
            item["id"] = f"{_ITEM_PREFIX.get(kind, 'item')}_{hex_part}_in{index}"
        if kind == "message" and isinstance(item.get("content"), str):
            part = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": part, "text": item["content"]}] if item["content"] else []
        out.append(item)
    return out


def owned(response_id: str, user_id: int) -> StoredResponse | None:
    """The user's stored response ``response_id``, or None (unknown, expired or another user's)."""
    row = db.session.get(StoredResponse, response_id)
    return row if row is not None and row.user_id == user_id else None


def forget(row: StoredResponse) -> None:
    """Delete a stored response."""
    db.session.delete(row)
    db.session.commit()


def input_items_page(items: list[JSON], args: dict[str, str]) -> JSON:
    """One page of ``items`` as OpenAI's list object (``limit`` 1-100, default 20; ``order``
    desc by default; ``after``/``before`` item ids)."""
    limit_text = args.get("limit", "20")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
        raise InvalidRequest("'limit' must be an integer from 1 to 100.", param="limit")
    order = args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be asc or desc.", param="order")
    ordered = items if order == "asc" else items[::-1]
    ids = [item.get("id") for item in ordered]
    for name in ("after", "before"):
        if name in args and args[name] not in ids:
            raise InvalidRequest(f"'{name}': no input item with id '{args[name]}' in this response.",
                                 param=name)
    start = ids.index(args["after"]) + 1 if "after" in args else 0
    end = ids.index(args["before"]) if "before" in args else len(ordered)
    window = ordered[start:end]
    data = window[:int(limit_text)]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(window) > len(data)}


def prune(days: int | None = None, *, now: datetime | None = None) -> int:
    """Delete stored responses older than ``days`` (PAGEGRID_RESPONSES_RETENTION_DAYS); return how
    many, deleting in batches so a large first prune never holds the write lock for long."""
    days = days or current_app.config["PAGEGRID_RESPONSES_RETENTION_DAYS"]
    return prune_before(StoredResponse.__table__, (now or utcnow()) - timedelta(days=days), PRUNE_BATCH)
