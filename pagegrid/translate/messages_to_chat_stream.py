"""Anthropic Messages stream events to Chat Completions chunks, for Chat clients on Claude (pure).

The request and the whole reply of this route are ``chat_to_messages``; the opposite stream is
``chat_to_messages_stream``. The caller parses each upstream SSE event, feeds its data in, and frames
what comes out (``data: ...`` plus the closing ``data: [DONE]``).
``finish()`` runs once the upstream stream has ended; a stream that ended without its closing event
gets an error event there, so the client never mistakes a cut-off reply for a whole one.
"""

from __future__ import annotations

from pagegrid.translate.chat_to_messages import STOP_REASONS_TO_OPENAI
from pagegrid.translate.tools import compact_json
from pagegrid.translate.usage import usage_from_anthropic
from pagegrid.translate.usage import usage_to_openai_chat

CUT_SHORT = "The upstream stream ended before the reply was complete."


def _openai_error(error_type: str, message: str) -> dict:
    return {"error": {"message": message, "type": error_type, "param": None, "code": None}}


class AnthropicToOpenAIChatStream:
    """Turns one Anthropic message stream into ``chat.completion.chunk`` objects.

    Usage goes on the finish chunk, as the PageGrid docs promise. With ``include_usage`` it goes on
    a separate last chunk with no choices instead, as OpenAI sends it, and not on both: clients that
    add up the usage of every chunk (LangChain does) would otherwise count it twice.

    A call of ``output_tool`` (the forced tool of a structured output, see ``structured``) streams
    as content: its ``input_json_delta`` pieces are the answer's JSON text.
    """

    def __init__(self, *, model: str, completion_id: str, created: int, include_usage: bool,
                 output_tool: str | None = None) -> None:
        self.model = model
        self.completion_id = completion_id
        self.created = created
        self.include_usage = include_usage
        self.output_tool = output_tool
        self._started = False
        self._done = False
        self._tool_calls: dict[int, int] = {}  # Anthropic block index -> OpenAI tool call index
        self._answers: dict[int, bool] = {}  # block index of an output_tool call -> whether it said anything
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
        if kind == "content_block_stop" and self._answers.get(event.get("index", -1)) is False:
            return self._out({"content": "{}"})  # an answer with no fields streams no JSON
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
        if block.get("name") == self.output_tool:
            self._answers[index] = bool(block.get("input"))
            return self._out({"content": compact_json(block["input"])} if block.get("input") else {})
        call = self._tool_calls[index] = len(self._tool_calls)
        # Streamed tool input arrives as input_json_delta; a start block only carries it when not streamed.
        arguments = compact_json(block["input"]) if block.get("input") else ""
        return self._out({"tool_calls": [{"index": call, "id": block.get("id"), "type": "function",
                                          "function": {"name": block.get("name"), "arguments": arguments}}]})

    def _block_delta(self, index: object, delta: dict) -> list[dict]:
        if delta.get("type") == "text_delta" and delta.get("text"):
            return self._out({"content": delta["text"]})
        fragment = delta.get("partial_json") if delta.get("type") == "input_json_delta" else None
        if fragment and index in self._answers:
            self._answers[index] = True
            return self._out({"content": fragment})
        if fragment and index in self._tool_calls:
            call = {"index": self._tool_calls[index], "function": {"arguments": fragment}}
            return self._out({"tool_calls": [call]})
        return []

    def _finish_chunks(self) -> list[dict]:
        chunks = self._out({})
        self._done = True
        usage = usage_to_openai_chat(usage_from_anthropic(self._usage))
        answered = self._stop_reason == "tool_use" and self._answers and not self._tool_calls
        reason = "end_turn" if answered else self._stop_reason
        final = self._chunk({}, STOP_REASONS_TO_OPENAI.get(reason, "stop"))
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
