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
from collections.abc import Iterator
from collections.abc import Mapping

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
        words, stop_reason = _reply_words(request)
        message = {"id": "msg_demo_" + secrets.token_hex(12), "type": "message", "role": "assistant",
                   "model": request.get("model"), "content": [], "stop_reason": None,
                   "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}
        output_tokens = sum(_tokens(w) for w in words)
        if not stream:
            message.update(content=[{"type": "text", "text": "".join(words)}], stop_reason=stop_reason)
            message["usage"]["output_tokens"] = output_tokens
            return _json_reply(message)
        return UpstreamReply(200, {"content-type": "text/event-stream"},
                             self._events(message, words, stop_reason, output_tokens))

    def _events(self, message: dict, words: list[str], stop_reason: str,
                output_tokens: int) -> Iterator[bytes]:
        yield encode({"type": "message_start", "message": message}, "message_start")
        yield encode({"type": "content_block_start", "index": 0,
                      "content_block": {"type": "text", "text": ""}}, "content_block_start")
        for word in words:
            time.sleep(self.delay)
            yield encode({"type": "content_block_delta", "index": 0,
                          "delta": {"type": "text_delta", "text": word}}, "content_block_delta")
        yield encode({"type": "content_block_stop", "index": 0}, "content_block_stop")
        yield encode({"type": "message_delta",
                      "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                      "usage": {"output_tokens": output_tokens}}, "message_delta")
        yield encode({"type": "message_stop"}, "message_stop")


def _json_reply(value: dict) -> UpstreamReply:
    return UpstreamReply(200, {"content-type": "application/json"}, iter([json.dumps(value).encode()]))
