"""The built-in demo provider: answers like Anthropic, locally, when no provider key is set.

Replies are deterministic, streamed with a steady pace, and carry real-looking usage counts
(including prompt-cache writes and reads when the request uses ``cache_control``), so the
whole gateway, billing included, can be tried on a fresh machine.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from collections.abc import Mapping
from typing import TypeGuard

from werkzeug.datastructures import Headers

from pagegrid.json_types import JSON
from pagegrid.sse import encode
from pagegrid.upstream.base import UpstreamReply
from pagegrid.upstream.base import UpstreamTarget

CHARS_PER_TOKEN = 4
_seen_prefixes: dict[str, None] = {}
_seen_lock = threading.Lock()


def _tokens(text: str) -> int:
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def _last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
            if texts:
                return texts[-1]
    return ""


def _pieces(body: dict) -> list[str]:
    pieces = [json.dumps(body.get("tools", [])), json.dumps(body.get("system", ""))]
    return pieces + [json.dumps(m) for m in body.get("messages", [])]


def count_tokens(body: dict) -> int:
    """All input tokens of a request, as count_tokens reports them."""
    return sum(_tokens(p) for p in _pieces(body))


def count_input(body: dict) -> dict:
    """Usage for the request's input, splitting off the cached prefix like the real API."""
    pieces = _pieces(body)
    total = sum(_tokens(p) for p in pieces)
    cached_upto = max((i for i, p in enumerate(pieces) if '"cache_control"' in p), default=-1)
    usage: JSON = {"input_tokens": total, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                   "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}}
    if cached_upto < 0:
        return usage
    prefix = "".join(pieces[: cached_upto + 1])
    prefix_tokens = sum(_tokens(p) for p in pieces[: cached_upto + 1])
    digest = hashlib.sha256(prefix.encode()).hexdigest()
    with _seen_lock:
        hit = digest in _seen_prefixes
        _seen_prefixes[digest] = None
        if len(_seen_prefixes) > 10_000:
            _seen_prefixes.pop(next(iter(_seen_prefixes)))
    usage["input_tokens"] = total - prefix_tokens
    if hit:
        usage["cache_read_input_tokens"] = prefix_tokens
    else:
        ttl = "ephemeral_1h_input_tokens" if '"ttl": "1h"' in prefix else "ephemeral_5m_input_tokens"
        usage["cache_creation_input_tokens"] = prefix_tokens
        usage["cache_creation"][ttl] = prefix_tokens
    return usage


def _reply_words(body: dict) -> tuple[list[str], str]:
    said = " ".join(_last_user_text(body.get("messages", [])).split())[:200]
    text = ("Hello from PageGrid's built-in demo upstream. No provider key is configured, so this "
            f"answer was made up locally and the real model was not called. You said: \u201c{said}\u201d")
    words = [w + " " for w in text.split(" ")]
    words[-1] = words[-1].rstrip()
    limit = asked if isinstance(asked := body.get("max_tokens"), int) else 4096
    kept: list[str] = []
    used = 0
    for word in words:
        used += _tokens(word)
        if used > limit:
            return kept, "max_tokens"
        kept.append(word)
    return kept, "end_turn"


def _text_reply(body: dict) -> tuple[dict, list[str], str]:
    words, stop_reason = _reply_words(body)
    return {"type": "text", "text": "".join(words)}, words, stop_reason


_SAMPLE_STRINGS = {"date-time": "2026-01-01T00:00:00Z", "date": "2026-01-01", "time": "00:00:00",
                   "email": "demo@example.com", "uri": "https://example.com/", "uuid": str(uuid.UUID(int=0))}


def _sample(schema: object, root: dict, depth: int = 0) -> object:
    """A made-up value that fits ``schema`` (the demo's structured answer)."""
    if not isinstance(schema, dict) or depth > 12:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: object = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return _sample(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return _sample(schema[key][0], root, depth + 1)
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "null") if isinstance(kind, list) else kind
    if kind == "object":
        properties = _object(schema.get("properties"))
        return {name: _sample(sub, root, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        return [_sample(schema.get("items"), root, depth + 1)]
    if kind in ("integer", "number"):
        low, above = schema.get("minimum"), schema.get("exclusiveMinimum")
        return low if _number(low) else above + 1 if _number(above) else 0
    if kind == "string":
        return _SAMPLE_STRINGS.get(str(schema.get("format")), "demo")
    return False if kind == "boolean" else None


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _object(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _structured_reply(body: dict) -> tuple[dict, list[str], str] | None:
    """For a structured-output request (``output_config.format`` or a forced tool): made-up JSON
    that fits its schema, so the clients' parse() works against the demo too."""
    native = _object(_object(_object(body.get("output_config")).get("format")).get("schema"))
    if native:
        text = json.dumps(_sample(native, native))
        return {"type": "text", "text": text}, [text], "end_turn"
    choice, tools = _object(body.get("tool_choice")), body.get("tools")
    if choice.get("type") != "tool" or not isinstance(tools, list):
        return None
    tool = next((t for t in tools if isinstance(t, dict) and t.get("name") == choice.get("name")), None)
    if tool is None:
        return None
    schema = _object(tool.get("input_schema"))
    value = _sample(schema, schema)
    block = {"type": "tool_use", "id": "toolu_demo_" + secrets.token_hex(8), "name": tool["name"],
             "input": value if isinstance(value, dict) else {}}
    return block, [json.dumps(block["input"])], "tool_use"


class DemoAdapter:
    """Answers ``/v1/messages`` (both modes) and ``/v1/messages/count_tokens`` in-process."""

    def __init__(self, target: UpstreamTarget, delay: float) -> None:
        self.target = target
        self.delay = delay

    def send(self, path: str, body: bytes, headers: Mapping[str, str] | Headers,
             stream: bool) -> UpstreamReply:
        """Answer as the Anthropic API would."""
        request = json.loads(body)
        if path.endswith("/count_tokens"):
            return _json_reply({"input_tokens": count_tokens(request)})
        usage = count_input(request)
        block, pieces, stop_reason = _structured_reply(request) or _text_reply(request)
        message = {"id": "msg_demo_" + secrets.token_hex(12), "type": "message", "role": "assistant",
                   "model": request.get("model"), "content": [], "stop_reason": None,
                   "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}
        output_tokens = sum(_tokens(piece) for piece in pieces)
        if not stream:
            message.update(content=[block], stop_reason=stop_reason)
            message["usage"]["output_tokens"] = output_tokens
            return _json_reply(message)
        return UpstreamReply(200, {"content-type": "text/event-stream"},
                             self._events(message, block, pieces, stop_reason, output_tokens))

    def _events(self, message: dict, block: dict, pieces: list[str], stop_reason: str,
                output_tokens: int) -> Iterator[bytes]:
        yield encode({"type": "message_start", "message": message}, "message_start")
        tool = block["type"] == "tool_use"
        start = {**block, "input": {}} if tool else {"type": "text", "text": ""}
        yield encode({"type": "content_block_start", "index": 0, "content_block": start},
                     "content_block_start")
        for piece in pieces:
            time.sleep(self.delay)
            delta = {"type": "input_json_delta", "partial_json": piece} if tool else \
                {"type": "text_delta", "text": piece}
            yield encode({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")
        yield encode({"type": "content_block_stop", "index": 0}, "content_block_stop")
        yield encode({"type": "message_delta",
                      "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                      "usage": {"output_tokens": output_tokens}}, "message_delta")
        yield encode({"type": "message_stop"}, "message_stop")


def _json_reply(value: dict) -> UpstreamReply:
    return UpstreamReply(200, {"content-type": "application/json"}, iter([json.dumps(value).encode()]))
