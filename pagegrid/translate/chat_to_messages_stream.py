"""Chat Completions chunks to Anthropic Messages stream events, for Messages clients on GPT (pure).

The request and the whole reply of this route are ``messages_to_chat``; the opposite stream is
``messages_to_chat_stream``. The caller parses each upstream SSE event, feeds its data in, and frames
what comes out (``event:``/``data:``). ``finish()`` runs once the upstream stream has ended; a stream
that ended without its finish reason gets an error event there, so the client never mistakes a
cut-off reply for a whole one.
"""

from __future__ import annotations

from pagegrid.json_types import JSON
from pagegrid.translate.messages_to_chat import FINISH_REASONS_TO_ANTHROPIC
from pagegrid.translate.messages_to_chat_stream import CUT_SHORT
from pagegrid.translate.usage import Usage
from pagegrid.translate.usage import usage_from_openai_chat
from pagegrid.translate.usage import usage_to_anthropic


class OpenAIChatToAnthropicStream:
    """Turns one Chat Completions chunk stream into Anthropic ``(event, data)`` pairs."""

    def __init__(self, *, model: str, message_id: str) -> None:
        self.model = model
        self.message_id = message_id
        self._started = False
        self._done = False
        self._open: tuple[str, int] | None = None  # kind and OpenAI tool index of the open block
        self._blocks = 0
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool call index -> Anthropic block index
        self._finish_reason: str | None = None
        self._usage: dict | None = None

    def _start(self) -> list[tuple[str, dict]]:
        if self._started:
            return []
        self._started = True
        message: JSON = {"id": self.message_id, "type": "message", "role": "assistant", "model": self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": usage_to_anthropic(Usage())}
        return [("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[tuple[str, dict]]:
        if self._open is None:
            return []
        self._open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self._blocks - 1})]

    def _open_block(self, kind: str, key: int, block: dict) -> list[tuple[str, dict]]:
        events = self._close()
        self._open = (kind, key)
        self._blocks += 1
        return events + [("content_block_start", {"type": "content_block_start", "index": self._blocks - 1,
                                                  "content_block": block})]

    @staticmethod
    def _delta(index: int, delta: dict) -> tuple[str, dict]:
        return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}

    @staticmethod
    def _error(error_type: str, message: str) -> tuple[str, dict]:
        return "error", {"type": "error", "error": {"type": error_type, "message": message}}

    def feed(self, chunk: dict) -> list[tuple[str, dict]]:
        """Take one parsed Chat Completions chunk; return the Anthropic events it produces."""
        if self._done:
            return []
        if "error" in chunk:
            self._done = True
            error = chunk["error"] if isinstance(chunk["error"], dict) else {}
            return [self._error(error.get("type") or "api_error", error.get("message") or "Upstream error")]
        events = self._start()
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            for text in (delta.get("content"), delta.get("refusal")):
                if isinstance(text, str) and text:
                    events += self._text(text)
            for call in delta.get("tool_calls") or []:
                events += self._tool_call(call)
            self._finish_reason = choice.get("finish_reason") or self._finish_reason
        return events

    def _text(self, text: str) -> list[tuple[str, dict]]:
        events = []
        if self._open != ("text", 0):
            events = self._open_block("text", 0, {"type": "text", "text": ""})
        return events + [self._delta(self._blocks - 1, {"type": "text_delta", "text": text})]

    def _tool_call(self, call: dict) -> list[tuple[str, dict]]:
        key = call.get("index", 0)
        function = call.get("function") or {}
        events = []
        if key not in self._tool_blocks:
            events = self._open_block("tool", key, {"type": "tool_use", "id": call.get("id") or f"call_{key}",
                                                    "name": function.get("name") or "", "input": {}})
            self._tool_blocks[key] = self._blocks - 1
        if function.get("arguments"):
            events.append(self._delta(self._tool_blocks[key],
                                      {"type": "input_json_delta", "partial_json": function["arguments"]}))
        return events

    def finish(self) -> list[tuple[str, dict]]:
        """Close the message once the upstream stream has ended."""
        if self._done:
            return []
        self._done = True
        events = self._start()
        if self._finish_reason is None:
            return events + [self._error("api_error", CUT_SHORT)]
        delta = {"stop_reason": FINISH_REASONS_TO_ANTHROPIC.get(self._finish_reason, "end_turn"),
                 "stop_sequence": None}
        usage = usage_to_anthropic(usage_from_openai_chat(self._usage))
        return [*events, *self._close(),
                ("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}),
                ("message_stop", {"type": "message_stop"})]
