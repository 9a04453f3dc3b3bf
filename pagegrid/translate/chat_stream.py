"""Streams between Anthropic Messages events and Chat Completions chunks (pure).

The caller parses each upstream SSE event, feeds its data in, and frames what comes out
(``data: ...`` plus the closing ``data: [DONE]`` for Chat Completions, ``event:``/``data:`` for Messages).
``finish()`` runs once the upstream stream has ended; a stream that ended without its closing event
gets an error event there, so the client never mistakes a cut-off reply for a whole one.
"""

from __future__ import annotations

from pagegrid.translate.chat import FINISH_REASONS_TO_ANTHROPIC
from pagegrid.translate.chat import STOP_REASONS_TO_OPENAI
from pagegrid.translate.chat import compact_json
from pagegrid.translate.usage import Usage
from pagegrid.translate.usage import usage_from_anthropic
from pagegrid.translate.usage import usage_from_openai_chat
from pagegrid.translate.usage import usage_to_anthropic
from pagegrid.translate.usage import usage_to_openai_chat

CUT_SHORT = "The upstream stream ended before the reply was complete."


def _openai_error(error_type: str, message: str) -> dict:
    return {"error": {"message": message, "type": error_type, "param": None, "code": None}}


class AnthropicToOpenAIChatStream:
    """Turns one Anthropic message stream into ``chat.completion.chunk`` objects.

    Usage goes on the finish chunk, as the PageGrid docs promise. With ``include_usage`` it goes on
    a separate last chunk with no choices instead, as OpenAI sends it, and not on both: clients that
    add up the usage of every chunk (LangChain does) would otherwise count it twice.
    """

    def __init__(self, *, model: str, completion_id: str, created: int, include_usage: bool) -> None:
        self.model = model
        self.completion_id = completion_id
        self.created = created
        self.include_usage = include_usage
        self._started = False
        self._done = False
        self._tool_calls: dict[int, int] = {}  # Anthropic block index -> OpenAI tool call index
        self._usage: dict = {}
        self._stop_reason: str | None = None

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        return {"id": self.completion_id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}

    def _out(self, delta: dict) -> list[dict]:
        chunks = [] if self._started else [self._chunk({"role": "assistant", "content": ""})]
        self._started = True
        return chunks + ([self._chunk(delta)] if delta else [])

    def feed(self, event: dict) -> list[dict]:
        """Take one parsed Anthropic event; return the chunks it produces."""
        if self._done:
            return []
        kind = event.get("type")
        if kind == "message_start":
            self._usage = dict((event.get("message") or {}).get("usage") or {})
            return self._out({})
        if kind == "content_block_start":
            return self._block_start(event.get("index"), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(event.get("index"), event.get("delta") or {})
        if kind == "message_delta":
            self._stop_reason = (event.get("delta") or {}).get("stop_reason") or self._stop_reason
            # message_delta counts are cumulative: a field it carries replaces the earlier one.
            self._usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            return self._finish_chunks()
        elif kind == "error":
            self._done = True
            error = event.get("error") or {}
            return [_openai_error(error.get("type") or "api_error", error.get("message") or "Upstream error")]
        return []

    def _block_start(self, index: object, block: dict) -> list[dict]:
        if block.get("type") == "text" and block.get("text"):
            return self._out({"content": block["text"]})
        if block.get("type") != "tool_use" or not isinstance(index, int):
            return []
        call = self._tool_calls[index] = len(self._tool_calls)
        # Streamed tool input arrives as input_json_delta; a start block only carries it when not streamed.
        arguments = compact_json(block["input"]) if block.get("input") else ""
        return self._out({"tool_calls": [{"index": call, "id": block.get("id"), "type": "function",
                                          "function": {"name": block.get("name"), "arguments": arguments}}]})

    def _block_delta(self, index: object, delta: dict) -> list[dict]:
        if delta.get("type") == "text_delta" and delta.get("text"):
            return self._out({"content": delta["text"]})
        fragment = delta.get("partial_json") if delta.get("type") == "input_json_delta" else None
        if fragment and index in self._tool_calls:
            call = {"index": self._tool_calls[index], "function": {"arguments": fragment}}
            return self._out({"tool_calls": [call]})
        return []

    def _finish_chunks(self) -> list[dict]:
        chunks = self._out({})
        self._done = True
        usage = usage_to_openai_chat(usage_from_anthropic(self._usage))
        final = self._chunk({}, STOP_REASONS_TO_OPENAI.get(self._stop_reason, "stop"))
        if not self.include_usage:
            return [*chunks, {**final, "usage": usage}]
        return [*chunks, final, {**self._chunk({}), "choices": [], "usage": usage}]

    def finish(self) -> list[dict]:
        """Return what is still owed once the upstream stream has ended."""
        if self._done:
            return []
        if self._stop_reason is not None:
            return self._finish_chunks()
        self._done = True
        return [_openai_error("api_error", CUT_SHORT)]


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
        message = {"id": self.message_id, "type": "message", "role": "assistant", "model": self.model,
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
