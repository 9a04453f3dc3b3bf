"""The fake provider for the end-to-end run: ``tests/fake_upstream.py`` with a per-scenario brain.

One :class:`Provider` serves Anthropic (``/v1/messages``, ``/v1/messages/count_tokens``) and OpenAI
(``/v1/chat/completions``, ``/v1/responses``) on loopback. Each scenario installs a :class:`Script`
that decides the answer from the request body (text, or a tool call until the tool result comes
back), so a client that sends extra background requests still gets sensible answers. Every model
call is recorded with the usage the fake reported, which is what the ledger must show afterwards.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from tests.fake_upstream import FakeUpstream
from tests.fake_upstream import Recorded
from tests.fake_upstream import chat_chunks
from tests.fake_upstream import chat_completion
from tests.fake_upstream import message
from tests.fake_upstream import serve
from tests.fake_upstream import sse
from tests.fake_upstream import stream_events

ANTHROPIC_KEY = "sk-ant-e2e-upstream-key"
OPENAI_KEY = "sk-openai-e2e-upstream-key"

Json = dict[str, Any]


@dataclass
class ToolCall:
    """A tool call the fake asks for: its name and input."""

    name: str
    arguments: Json


@dataclass
class Usage:
    """What the fake reports for one call, in billed terms (input excludes cached tokens)."""

    input_tokens: int
    output_tokens: int
    cache_write: int = 0  # all cache writes (Anthropic only) ...
    cache_write_1h: int = 0  # ... of which this many at the 1-hour rate
    cache_read: int = 0


@dataclass
class Call:
    """One model call the fake answered (what the ledger must charge)."""

    path: str
    model: str
    stream: bool
    usage: Usage
    body: Json
    cut: bool = False  # the fake broke the stream before its end

    @property
    def input_tokens(self) -> int:
        """Uncached input tokens (unique per call: the ledger rows are matched on them)."""
        return self.usage.input_tokens

    @property
    def output_tokens(self) -> int:
        """Output tokens reported at the end."""
        return self.usage.output_tokens


@dataclass
class Script:
    """What the fake answers in one scenario.

    ``text`` is the final answer. ``tool`` (optional) picks a tool call from the request's tool
    names; the fake asks for it until the request carries the tool's result, then answers ``text``
    with the result appended (``"<text> | tool said: <output>"``).
    """

    text: str
    tool: Callable[[list[str]], ToolCall | None] | None = None
    tool_results: list[str] = field(default_factory=list)
    cut_first_stream_after: int | None = None  # break the first streamed answer after N events:
    cut_cleanly: bool = False  # end the body properly (like a proxy that closes), or abort the connection
    cache: bool = True  # report prompt-cache writes and reads, as the real providers do
    # When a Messages request enables thinking, answer with a signed thinking block first.
    thinking_signature: str = "e2e-signature"


def _tool_names_anthropic(body: Json) -> list[str]:
    return [t.get("name", "") for t in body.get("tools") or [] if isinstance(t, dict)]


def _tool_names_openai(body: Json) -> list[str]:
    names = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            names.append(tool.get("name") or (tool.get("function") or {}).get("name") or "")
    return names


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text_of(part.get("text") if part.get("type") in ("text", "input_text",
                                                                          "output_text")
                                else part.get("content") if part.get("type") == "tool_result"
                                else "")
                       for part in content if isinstance(part, dict))
    return ""


def anthropic_tool_result(body: Json) -> str | None:
    """The text of the ``tool_result`` blocks anywhere in the conversation, if any.

    Anywhere, not only in the last user message: OpenClaw appends a context message after them.
    """
    results = []
    for msg in body.get("messages") or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        if msg.get("role") == "user" and isinstance(content, list):
            results += [_text_of(p.get("content")) for p in content
                        if isinstance(p, dict) and p.get("type") == "tool_result"]
    return "\n".join(results) if results else None


def chat_tool_result(body: Json) -> str | None:
    """The content of the ``role: tool`` messages in the conversation, if any."""
    results = [_text_of(msg.get("content")) for msg in body.get("messages") or []
               if isinstance(msg, dict) and msg.get("role") == "tool"]
    return "\n".join(results) if results else None


def responses_tool_result(body: Json) -> str | None:
    """The output of the ``function_call_output`` items in the input, if any."""
    items = body.get("input")
    if not isinstance(items, list):
        return None
    outputs = [item.get("output") for item in items
               if isinstance(item, dict) and item.get("type") == "function_call_output"]
    if not outputs:
        return None
    return "\n".join(o if isinstance(o, str) else json.dumps(o) for o in outputs)


def responses_events(response: Json) -> list[bytes]:
    """The SSE events of the Responses API for ``response`` (text messages and function calls)."""
    pending = {**response, "status": "in_progress", "output": [], "usage": None}
    events: list[Json] = [{"type": "response.created", "response": pending},
                          {"type": "response.in_progress", "response": pending}]
    for index, item in enumerate(response["output"]):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            events += [
                {"type": "response.output_item.added", "output_index": index,
                 "item": {**item, "status": "in_progress", "content": []}},
                {"type": "response.content_part.added", "item_id": item["id"], "output_index": index,
                 "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}},
                {"type": "response.output_text.delta", "item_id": item["id"], "output_index": index,
                 "content_index": 0, "delta": text, "logprobs": []},
                {"type": "response.output_text.done", "item_id": item["id"], "output_index": index,
                 "content_index": 0, "text": text, "logprobs": []},
                {"type": "response.content_part.done", "item_id": item["id"], "output_index": index,
                 "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": []}},
            ]
        else:  # function_call
            events += [
                {"type": "response.output_item.added", "output_index": index,
                 "item": {**item, "status": "in_progress", "arguments": ""}},
                {"type": "response.function_call_arguments.delta", "item_id": item["id"],
                 "output_index": index, "delta": item["arguments"]},
                {"type": "response.function_call_arguments.done", "item_id": item["id"],
                 "output_index": index, "arguments": item["arguments"]},
            ]
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append({"type": "response.completed", "response": response})
    return [f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': i})}\n\n".encode()
            for i, e in enumerate(events)]


def _sse_response(chunks: list[bytes], cut_after: int | None = None, cleanly: bool = False) -> Response:
    def body():  # noqa: ANN202 - a WSGI body
        for i, chunk in enumerate(chunks):
            if cut_after is not None and i >= cut_after:
                if cleanly:
                    return  # a well-formed end of the body, without the stream's own end event
                raise ConnectionAbortedError("e2e: scripted cut")  # werkzeug drops the connection
            yield chunk
    return Response(body(), mimetype="text/event-stream")


def anthropic_usage(usage: Usage) -> Json:
    """A Messages API ``usage`` object, with the 5-minute/1-hour split of the cache writes."""
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cache_creation_input_tokens": usage.cache_write,
            "cache_read_input_tokens": usage.cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": usage.cache_write - usage.cache_write_1h,
                               "ephemeral_1h_input_tokens": usage.cache_write_1h},
            "service_tier": "standard"}


def _json_response(body: Json, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


class Provider:
    """The fake Anthropic + OpenAI provider, served from a thread of the runner process."""

    def __init__(self) -> None:
        self.fake = FakeUpstream()
        self.server = serve(self.fake)
        self.url = self.fake.url
        self.fake.default = self._handle
        self.calls: list[Call] = []
        self.script = Script("pong")
        self._lock = threading.Lock()
        self._n = 0
        # What GET /v1/models lists to the Anthropic key (sync-models); empty: 404 as before.
        self.anthropic_models: list[str] = []

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()

    def begin(self, script: Script) -> None:
        """Start a scenario: forget what arrived before and answer with ``script``."""
        with self._lock:
            self.fake.reset()
            self.fake.default = self._handle
            self.calls = []
            self.script = script

    @property
    def requests(self) -> list[Recorded]:
        """Everything that arrived since :meth:`begin`."""
        return list(self.fake.requests)

    def model_calls(self) -> list[Call]:
        """The model calls answered since :meth:`begin`."""
        with self._lock:
            return list(self.calls)

    # answers -------------------------------------------------------------------------------
    def _usage(self, anthropic: bool) -> Usage:
        with self._lock:
            self._n += 1
            n = self._n
        # Distinct per call, so the ledger rows can be matched to the calls.
        usage = Usage(1000 + 37 * n, 20 + n)
        if self.script.cache:
            usage.cache_read = 3000 + n
            if anthropic:
                usage.cache_write, usage.cache_write_1h = 400 + n, 100
        return usage

    def _record(self, req: Request, body: Json, usage: Usage) -> bool:
        """Record the call; True if its stream is to be cut."""
        with self._lock:
            cut = (bool(body.get("stream")) and self.script.cut_first_stream_after is not None
                   and not any(c.cut for c in self.calls))
            self.calls.append(Call(req.path, str(body.get("model")), bool(body.get("stream")),
                                   usage, body, cut))
        return cut

    def _handle(self, req: Request) -> Response:
        try:
            body = json.loads(req.get_data() or b"null")
        except ValueError:
            body = None
        if req.method == "GET" and req.path == "/v1/models" and self.anthropic_models:
            return self._models(req)
        if req.method != "POST" or not isinstance(body, dict):
            return _json_response({"type": "error", "error": {"type": "not_found_error",
                                                              "message": f"fake: {req.method} {req.path}"}},
                                  404)
        if req.path == "/v1/messages/count_tokens":
            return _json_response({"input_tokens": 4242})
        if req.path == "/v1/messages":
            return self._anthropic(req, body)
        if req.path == "/v1/chat/completions":
            return self._chat(req, body)
        if req.path == "/v1/responses":
            return self._responses(req, body)
        return _json_response({"error": {"message": f"fake: no route {req.path}",
                                          "type": "invalid_request_error"}},
                              404)

    def _models(self, req: Request) -> Response:
        """Anthropic's model list for its key (one page); OpenAI's key gets an empty list."""
        if req.headers.get("x-api-key") != ANTHROPIC_KEY:
            return _json_response({"object": "list", "data": []})
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2026-12-01T00:00:00Z"}
                for m in self.anthropic_models]
        return _json_response({"data": data, "has_more": False, "first_id": data[0]["id"],
                               "last_id": data[-1]["id"]})

    def _decide(self, names: list[str], result: str | None) -> tuple[ToolCall | None, str]:
        script = self.script
        if result is not None:
            script.tool_results.append(result)
            return None, f"{script.text} | tool said: {result.strip()}"
        call = script.tool(names) if script.tool else None
        return call, script.text

    def _anthropic(self, req: Request, body: Json) -> Response:
        call, text = self._decide(_tool_names_anthropic(body), anthropic_tool_result(body))
        usage = self._usage(anthropic=True)
        cut = self._record(req, body, usage)
        if call is not None:
            content = [{"type": "text", "text": "Running the tool."},
                       {"type": "tool_use", "id": f"toolu_e2e{usage.input_tokens}", "name": call.name,
                        "input": call.arguments}]
            msg = message(model=str(body.get("model")), stop_reason="tool_use", content=content)
        else:
            msg = message(text, model=str(body.get("model")))
        if (body.get("thinking") or {}).get("type") in ("enabled", "adaptive"):
            msg["content"].insert(0, {"type": "thinking", "thinking": f"e2e thinking {usage.input_tokens}",
                                      "signature": f"{self.script.thinking_signature}-{usage.input_tokens}"})
        msg["usage"] = anthropic_usage(usage)
        if body.get("stream"):
            events = stream_events(msg)
            # Like the real API, message_delta repeats the cumulative usage, not only output_tokens.
            events[-2]["usage"] = {k: v for k, v in msg["usage"].items()
                                   if k not in ("cache_creation", "service_tier")}
            return _sse_response([sse(event) for event in events],
                                 self.script.cut_first_stream_after if cut else None,
                                 self.script.cut_cleanly)
        return _json_response(msg)

    def _chat(self, req: Request, body: Json) -> Response:
        call, text = self._decide(_tool_names_openai(body), chat_tool_result(body))
        usage = self._usage(anthropic=False)
        cut = self._record(req, body, usage)
        model = str(body.get("model"))
        # prompt_tokens include the cached ones.
        counts = {"prompt_tokens": usage.input_tokens + usage.cache_read,
                  "completion_tokens": usage.output_tokens,
                  "cached_tokens": usage.cache_read}
        if call is not None:
            calls = [{"id": f"call_e2e{usage.input_tokens}", "type": "function",
                      "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}]
            completion = chat_completion(None, model=model, tool_calls=calls, finish_reason="tool_calls",
                                         **counts)
        else:
            completion = chat_completion(text, model=model, **counts)
        if body.get("stream"):
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            return _sse_response(chat_chunks(completion, include_usage=include),
                                 self.script.cut_first_stream_after if cut else None,
                                 self.script.cut_cleanly)
        return _json_response(completion)

    def _responses(self, req: Request, body: Json) -> Response:
        call, text = self._decide(_tool_names_openai(body), responses_tool_result(body))
        usage = self._usage(anthropic=False)
        cut = self._record(req, body, usage)
        if call is not None:
            output: list[Json] = [{"type": "function_call", "id": f"fc_e2e{usage.input_tokens}",
                                   "status": "completed", "call_id": f"call_e2e{usage.input_tokens}",
                                   "name": call.name, "arguments": json.dumps(call.arguments)}]
        else:
            output = [{"type": "message", "id": f"msg_e2e{usage.input_tokens}", "status": "completed",
                       "role": "assistant",
                       "content": [{"type": "output_text", "text": text, "annotations": []}]}]
        response = {"id": f"resp_e2e{usage.input_tokens}", "object": "response", "created_at": 1700000000,
                    "status": "completed", "model": str(body.get("model")), "error": None,
                    "incomplete_details": None, "instructions": None, "metadata": {},
                    "parallel_tool_calls": True, "temperature": 1.0, "tool_choice": "auto", "tools": [],
                    "top_p": 1.0, "output": output,
                    "usage": {"input_tokens": usage.input_tokens + usage.cache_read,
                              "output_tokens": usage.output_tokens,
                              "total_tokens": usage.input_tokens + usage.cache_read + usage.output_tokens,
                              "input_tokens_details": {"cached_tokens": usage.cache_read},
                              "output_tokens_details": {"reasoning_tokens": 0}}}
        if body.get("stream"):
            return _sse_response(responses_events(response),
                                 self.script.cut_first_stream_after if cut else None,
                                 self.script.cut_cleanly)
        return _json_response(response)
