"""Anthropic Messages stream events to OpenAI Responses API stream events (pure).

Each content block becomes one output item, opened when it has something to show (a text block with
no text makes none, as in ``anthropic_message_to_openai_response``):

    text              message: output_item.added, content_part.added, output_text.delta..., then at
                      content_block_stop output_text.done, content_part.done, output_item.done
    tool_use          function_call: output_item.added, function_call_arguments.delta...,
                      function_call_arguments.done, output_item.done
    thinking          reasoning: output_item.added, reasoning_summary_part.added,
                      reasoning_summary_text.delta..., reasoning_summary_text.done,
                      reasoning_summary_part.done, output_item.done (signed thinking in encrypted_content)
    redacted_thinking reasoning: output_item.added, output_item.done

A call of ``output_tool`` (the forced tool of a structured output, see ``structured``) is the
answer's text: a message item whose output_text deltas are its ``input_json_delta`` pieces.

The stream opens with response.created and response.in_progress and ends with exactly one of
response.completed, response.incomplete (stop_reason max_tokens, model_context_window_exceeded or
refusal) or response.failed (after an ``error`` event). The final response is built by
``anthropic_message_to_openai_response`` from what streamed, so both paths agree item for item.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any

from pagegrid.translate.responses_to_messages import anthropic_block_to_openai_item
from pagegrid.translate.responses_to_messages import anthropic_message_to_openai_response
from pagegrid.translate.responses_to_messages import openai_item_id
from pagegrid.translate.tools import compact_json

# ResponseError.code is a closed set in the openai SDK; everything else is a retryable server_error.
FAILED_CODES: dict[str | None, str] = {"rate_limit_error": "rate_limit_exceeded",
                                       "invalid_request_error": "invalid_prompt"}
CUT_SHORT = "The upstream stream ended before the response was complete."
_HANDLERS: dict[str | None, str] = {
    "message_start": "_message_start", "content_block_start": "_block_start",
    "content_block_delta": "_block_delta", "content_block_stop": "_block_stop",
    "message_delta": "_message_delta", "message_stop": "_message_stop", "error": "_error"}


@dataclass
class _Block:
    """One content block as it streams: what it has said so far, and the output item it became."""

    kind: str
    block: dict
    pieces: list[str] = field(default_factory=list)
    signature: list[str] = field(default_factory=list)
    output_index: int | None = None
    item_id: str = ""
    part_open: bool = False
    closed: bool = False
    answer: bool = False  # a call of the output tool, streamed as text


class AnthropicToOpenAIResponsesStream:
    """Feed it Messages API stream events; it returns the Responses API events to send."""

    def __init__(self, *, model: str, response_id: str, created_at: int,
                 output_tool: str | None = None) -> None:
        """Start a stream for the response ``response_id``."""
        self.model = model
        self.response_id = response_id
        self.created_at = created_at
        self.output_tool = output_tool
        # The next event's number; the caller numbers an error event it adds itself with it.
        self.sequence_number = 0
        self._blocks: dict[Any, _Block] = {}  # by the events' ``index``, as sent
        self._content: list[dict] = []
        self._usage: dict = {}
        self._stop_reason: str | None = None
        self._outputs = 0
        self._started = False
        self._over = False

    def feed(self, event: dict) -> list[dict]:
        """Translate one parsed Anthropic event (``ping`` and unknown events translate to nothing)."""
        handler = _HANDLERS.get(event.get("type"))
        if self._over or handler is None:
            return []
        return getattr(self, handler)(event)

    def finish(self) -> list[dict]:
        """What is still owed once the upstream stream has ended: a failure if it never finished."""
        if self._over:
            return []
        return self._fail("server_error", CUT_SHORT)

    def _emit(self, kind: str, **fields: object) -> dict:
        """One Responses API event, numbered."""
        event = {"type": kind, **fields, "sequence_number": self.sequence_number}
        self.sequence_number += 1
        return event

    def _response(self, **changes: object) -> dict:
        """The response object so far, with ``changes`` applied."""
        message = {"content": self._content, "stop_reason": self._stop_reason, "usage": self._usage}
        response = anthropic_message_to_openai_response(message, model=self.model,
                                                        response_id=self.response_id,
                                                        created_at=self.created_at)
        return {**response, **changes}

    def _start(self) -> list[dict]:
        """response.created and response.in_progress, once."""
        if self._started:
            return []
        self._started = True
        return [self._emit(kind, response=self._response(status="in_progress", usage=None))
                for kind in ("response.created", "response.in_progress")]

    def _message_start(self, event: dict) -> list[dict]:
        """Open the response and take the input usage."""
        if not self._started:
            self._usage = dict((event.get("message") or {}).get("usage") or {})
        return self._start()

    def _open(self, state: _Block, prefix: str, item: dict) -> dict:
        """Give a block its output index and item id, and announce its item."""
        state.output_index = self._outputs
        state.item_id = openai_item_id(prefix, self.response_id, self._outputs)
        self._outputs += 1
        return self._emit("response.output_item.added", output_index=state.output_index,
                          item={"id": state.item_id, **item})

    def _block_start(self, event: dict) -> list[dict]:
        """A content block begins: open its item unless it is text still without text."""
        out = self._start()
        block = event.get("content_block") or {}
        kind = block.get("type") or ""
        answer = kind == "tool_use" and block.get("name") == self.output_tool
        state = _Block("text", {"type": "text"}, answer=True) if answer else _Block(kind, dict(block))
        self._blocks[event.get("index", len(self._blocks))] = state
        if answer:
            out += self._text(state, compact_json(block["input"]) if block.get("input") else "")
        elif kind == "text":
            out += self._text(state, block.get("text"))
        elif kind == "tool_use":
            out.append(self._open(state, "fc", {"type": "function_call", "call_id": block.get("id"),
                                                "name": block.get("name"), "arguments": "",
                                                "status": "in_progress"}))
        elif kind in ("thinking", "redacted_thinking"):
            out.append(self._open(state, "rs", {"type": "reasoning", "summary": []}))
            out += self._thinking(state, block.get("thinking"))
            state.signature.append(block.get("signature") or "")
        return out

    def _block_delta(self, event: dict) -> list[dict]:
        """A piece of a content block, as the matching delta event."""
        state = self._blocks.get(event.get("index"))
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if state is None or state.closed:
            return []
        if kind == "text_delta" and state.kind == "text" and not state.answer:
            return self._text(state, delta.get("text"))
        if kind == "input_json_delta" and state.answer:
            return self._text(state, delta.get("partial_json"))
        if kind == "thinking_delta" and state.kind == "thinking":
            return self._thinking(state, delta.get("thinking"))
        if kind == "signature_delta" and state.kind == "thinking":
            state.signature.append(delta.get("signature") or "")
        elif kind == "input_json_delta" and state.kind == "tool_use" and delta.get("partial_json"):
            state.pieces.append(delta["partial_json"])
            return [self._emit("response.function_call_arguments.delta", item_id=state.item_id,
                               output_index=state.output_index, delta=delta["partial_json"])]
        return []

    def _text(self, state: _Block, text: object) -> list[dict]:
        """Text for a text block, opening its message item on the first non-empty piece."""
        if not isinstance(text, str) or not text:
            return []
        out = []
        if state.output_index is None:
            out.append(self._open(state, "msg", {"type": "message", "role": "assistant",
                                                 "status": "in_progress", "content": []}))
            out.append(self._emit("response.content_part.added", item_id=state.item_id,
                                  output_index=state.output_index, content_index=0,
                                  part={"type": "output_text", "text": "", "annotations": []}))
        state.pieces.append(text)
        out.append(self._emit("response.output_text.delta", item_id=state.item_id,
                              output_index=state.output_index, content_index=0, delta=text, logprobs=[]))
        return out

    def _thinking(self, state: _Block, text: object) -> list[dict]:
        """Thinking for a reasoning item, opening its summary part on the first non-empty piece."""
        if not isinstance(text, str) or not text:
            return []
        out = []
        if not state.part_open:
            state.part_open = True
            out.append(self._emit("response.reasoning_summary_part.added", item_id=state.item_id,
                                  output_index=state.output_index, summary_index=0,
                                  part={"type": "summary_text", "text": ""}))
        state.pieces.append(text)
        out.append(self._emit("response.reasoning_summary_text.delta", item_id=state.item_id,
                              output_index=state.output_index, summary_index=0, delta=text))
        return out

    def _block_stop(self, event: dict) -> list[dict]:
        """A content block ends."""
        state = self._blocks.get(event.get("index"))
        return self._close(state) if state is not None and not state.closed else []

    def _close(self, state: _Block) -> list[dict]:
        """Finish a block: its done events, and the block as it goes into the final response."""
        out = self._text(state, "{}") if state.answer and not state.pieces else []  # an answer with no fields
        state.closed = True
        text = "".join(state.pieces)
        where = {"item_id": state.item_id, "output_index": state.output_index}
        if state.kind == "text":
            state.block = {"type": "text", "text": text}
            if state.output_index is not None:
                part = {"type": "output_text", "text": text, "annotations": []}
                out.append(self._emit("response.output_text.done", **where, content_index=0, text=text,
                                      logprobs=[]))
                out.append(self._emit("response.content_part.done", **where, content_index=0, part=part))
        elif state.kind == "tool_use":
            if not text.strip():
                # A tool without parameters streams no JSON; "{}" keeps the deltas equal to the arguments.
                out.append(self._emit("response.function_call_arguments.delta", **where, delta="{}"))
                text += "{}"
            state.block = {"type": "tool_use", "id": state.block.get("id"), "name": state.block.get("name"),
                           "input": text}
            out.append(self._emit("response.function_call_arguments.done", **where, arguments=text))
        elif state.kind == "thinking":
            state.block = {"type": "thinking", "thinking": text, "signature": "".join(state.signature)}
            if state.part_open:
                out.append(self._emit("response.reasoning_summary_text.done", **where, summary_index=0,
                                      text=text))
                out.append(self._emit("response.reasoning_summary_part.done", **where, summary_index=0,
                                      part={"type": "summary_text", "text": text}))
        elif state.kind == "redacted_thinking":
            state.block = {"type": "redacted_thinking", "data": state.block.get("data") or ""}
        else:
            return []
        self._content.append(state.block)
        if state.output_index is not None:
            item = anthropic_block_to_openai_item(state.block, response_id=self.response_id,
                                                  output_index=state.output_index)
            out.append(self._emit("response.output_item.done", output_index=state.output_index, item=item))
        return out

    def _message_delta(self, event: dict) -> list[dict]:
        """Take the stop reason and the running usage totals."""
        self._stop_reason = (event.get("delta") or {}).get("stop_reason") or self._stop_reason
        # Anthropic's counts are running totals: a field the delta carries replaces the earlier one.
        self._usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
        return []

    def _message_stop(self, event: dict) -> list[dict]:
        """Finish open blocks, then response.completed or response.incomplete."""
        out = self._start()
        for index in sorted(self._blocks):
            if not self._blocks[index].closed:
                out += self._close(self._blocks[index])
        self._over = True
        response = self._response()
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return out + [self._emit(kind, response=response)]

    def _error(self, event: dict) -> list[dict]:
        """An upstream error event: an ``error`` event, then response.failed."""
        error = event.get("error") or {}
        code = FAILED_CODES.get(error.get("type"), "server_error")
        message = error.get("message") or "The upstream provider failed."
        out = self._start()
        return out + [self._emit("error", code=code, message=message, param=None)] + self._fail(code, message)

    def _fail(self, code: str, message: str) -> list[dict]:
        """End the stream with response.failed."""
        out = self._start()
        self._over = True
        return out + [self._emit("response.failed", response=self._response(
            status="failed", error={"code": code, "message": message}, incomplete_details=None))]
