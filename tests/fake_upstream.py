"""A scriptable fake provider on loopback: replies, SSE streams, errors, slow and cut streams.

Tests script it (``fake.reply(...)``, ``fake.stream(...)``, ``fake.error(...)``) and then look
at ``fake.requests`` to see exactly what the gateway sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from dataclasses import field

from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response


def message(text: str = "Hi there!", *, model: str = "claude-opus-4-8", input_tokens: int = 10,
            output_tokens: int = 5, cache_write: int = 0, cache_read: int = 0,
            stop_reason: str = "end_turn", content: list | None = None, **usage: int) -> dict:
    """An Anthropic message body with the given usage."""
    return {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
        "content": content if content is not None else [{"type": "text", "text": text}],
        "stop_reason": stop_reason, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                  "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read,
                  **usage},
    }


def stream_events(msg: dict) -> list[dict]:
    """The SSE events the Messages API sends for ``msg``."""
    usage = dict(msg["usage"])
    start_usage = {**usage, "output_tokens": 1}
    events = [{"type": "message_start",
               "message": {**msg, "content": [], "stop_reason": None, "usage": start_usage}}]
    for index, block in enumerate(msg["content"]):
        if block["type"] == "text":
            events.append({"type": "content_block_start", "index": index,
                           "content_block": {"type": "text", "text": ""}})
            words = block["text"].split(" ")
            for i, word in enumerate(words):
                piece = word if i == len(words) - 1 else word + " "
                events.append({"type": "content_block_delta", "index": index,
                               "delta": {"type": "text_delta", "text": piece}})
        elif block["type"] == "thinking":
            events.append({"type": "content_block_start", "index": index,
                           "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            events.append({"type": "content_block_delta", "index": index,
                           "delta": {"type": "thinking_delta", "thinking": block["thinking"]}})
            events.append({"type": "content_block_delta", "index": index,
                           "delta": {"type": "signature_delta", "signature": block["signature"]}})
        elif block["type"] == "tool_use":
            events.append({"type": "content_block_start", "index": index,
                           "content_block": {**block, "input": {}}})
            events.append({"type": "content_block_delta", "index": index,
                           "delta": {"type": "input_json_delta",
                                     "partial_json": json.dumps(block["input"])}})
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta",
                   "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                   "usage": {"output_tokens": usage["output_tokens"]}})
    events.append({"type": "message_stop"})
    return events


def _json_in_pieces(events: list[dict], size: int = 7) -> list[dict]:
    """``events`` with each ``input_json_delta`` cut into pieces of ``size`` characters, as Claude
    streams a tool's input."""
    out = []
    for event in events:
        delta = event.get("delta") or {}
        if delta.get("type") != "input_json_delta":
            out.append(event)
            continue
        text = delta["partial_json"]
        out += [{**event, "delta": {**delta, "partial_json": text[i:i + size]}}
                for i in range(0, len(text), size)]
    return out


def sse(event: dict) -> bytes:
    """One event in SSE framing."""
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    headers: dict
    raw: bytes
    body: dict | None = field(default=None)


class FakeUpstream:
    """The provider double: a WSGI app plus a queue of scripted answers."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: deque = deque()
        self.url = ""
        self.reset()

    def reset(self) -> None:
        """Forget scripts and recorded requests; answer unscripted requests with a plain message."""
        self.requests.clear()
        self._script.clear()
        self.default = lambda req: Response(json.dumps(message()), mimetype="application/json")

    # scripting --------------------------------------------------------------------------
    def reply(self, body: dict, status: int = 200, headers: dict | None = None) -> None:
        """Answer the next request with JSON."""
        self._script.append(lambda req: Response(json.dumps(body), status=status,
                                                 headers=headers, mimetype="application/json"))

    def error(self, status: int, error_type: str, text: str = "upstream says no",
              headers: dict | None = None) -> None:
        """Answer the next request with an Anthropic error body."""
        self.reply({"type": "error", "error": {"type": error_type, "message": text}}, status, headers)

    def stream(self, events: list[dict | bytes], *, delay: float = 0.0, fail_after: int | None = None,
               first_byte_delay: float = 0.0) -> None:
        """Answer the next request with SSE; ``fail_after=n`` drops the connection after n events."""

        def respond(req: Request) -> Response:
            def body():
                time.sleep(first_byte_delay)
                for i, event in enumerate(events):
                    if fail_after is not None and i >= fail_after:
                        raise ConnectionAbortedError("scripted cut")
                    yield event if isinstance(event, bytes) else sse(event)
                    time.sleep(delay)
            return Response(body(), mimetype="text/event-stream")

        self._script.append(respond)

    def structured(self, value: dict, **usage: int) -> None:
        """Answer the next request the way Claude answers a structured-output request: with ``value``
        as JSON text when it asks for ``output_config.format``, as the input of the forced tool's call
        when it forces one (``tool_choice`` tool, or ``any``: the last tool), streamed if it streams
        (the tool's JSON in several ``input_json_delta`` pieces)."""

        def respond(req: Request) -> Response:
            body = json.loads(req.get_data())
            choice = body.get("tool_choice") or {}
            if (body.get("output_config") or {}).get("format"):
                answer = message(json.dumps(value), model=body["model"], **usage)
            elif choice.get("type") in ("tool", "any"):
                name = choice.get("name") or body["tools"][-1]["name"]
                answer = message(model=body["model"], stop_reason="tool_use", **usage, content=[
                    {"type": "tool_use", "id": "toolu_answer", "name": name, "input": value}])
            else:
                raise AssertionError(f"not a structured-output request: {body}")
            if not body.get("stream"):
                return Response(json.dumps(answer), mimetype="application/json")
            return Response([sse(event) for event in _json_in_pieces(stream_events(answer))],
                            mimetype="text/event-stream")

        self._script.append(respond)

    def hang(self, seconds: float) -> None:
        """Answer the next request only after ``seconds`` (to trip read timeouts)."""
        def respond(req: Request) -> Response:
            time.sleep(seconds)
            return Response(json.dumps(message()), mimetype="application/json")
        self._script.append(respond)

    def respond_with(self, handler) -> None:
        """Answer the next request with ``handler(request) -> Response``."""
        self._script.append(handler)

    # WSGI ---------------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        req = Request(environ)
        raw = req.get_data()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        self.requests.append(Recorded(req.method, req.full_path.rstrip("?"), dict(req.headers), raw, parsed))
        handler = self._script.popleft() if self._script else self.default
        return handler(req)(environ, start_response)


class _Handler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked streaming, like the real provider

    def log_request(self, *args, **kwargs) -> None:
        pass


def serve(fake: FakeUpstream):
    """Serve ``fake`` on 127.0.0.1 from a daemon thread; return the server."""
    server = make_server("127.0.0.1", 0, fake, threaded=True, request_handler=_Handler)
    fake.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


# OpenAI shapes ------------------------------------------------------------------------------
def chat_completion(text: str | None = "Hello!", *, model: str = "gpt-5.4", prompt_tokens: int = 10,
                    completion_tokens: int = 5, cached_tokens: int = 0, tool_calls: list | None = None,
                    finish_reason: str = "stop") -> dict:
    """A Chat Completions response."""
    message = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": cached_tokens}}}


def chat_chunks(completion: dict, *, include_usage: bool = True) -> list[bytes]:
    """The ``data:`` lines OpenAI streams for ``completion``, ending with ``[DONE]``."""
    base = {"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"],
            "model": completion["model"]}
    message = completion["choices"][0]["message"]

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        body = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        if include_usage:
            body["usage"] = None
        return f"data: {json.dumps(body)}\n\n".encode()

    out = [chunk({"role": "assistant", "content": ""})]
    for word in (message.get("content") or "").split(" "):
        if word:
            out.append(chunk({"content": word + " "}))
    for i, call in enumerate(message.get("tool_calls") or []):
        out.append(chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                          "function": {"name": call["function"]["name"], "arguments": ""}}]}))
        args = call["function"]["arguments"]
        for part in (args[: len(args) // 2], args[len(args) // 2:]):
            out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]}))
    out.append(chunk({}, completion["choices"][0]["finish_reason"]))
    if include_usage:
        out.append(f"data: {json.dumps({**base, 'choices': [], 'usage': completion['usage']})}\n\n".encode())
    out.append(b"data: [DONE]\n\n")
    return out


def openai_response(text: str = "Hello!", *, model: str = "gpt-5.4", input_tokens: int = 10,
                    output_tokens: int = 5, cached_tokens: int = 0) -> dict:
    """A Responses API response object."""
    return {"id": "resp_fake", "object": "response", "created_at": 1700000000, "status": "completed",
            "model": model, "error": None, "incomplete_details": None, "instructions": None,
            "metadata": {}, "parallel_tool_calls": True, "temperature": 1.0, "tool_choice": "auto",
            "tools": [], "top_p": 1.0,
            "output": [{"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "total_tokens": input_tokens + output_tokens,
                      "input_tokens_details": {"cached_tokens": cached_tokens},
                      "output_tokens_details": {"reasoning_tokens": 0}}}


def openai_response_events(response: dict) -> list[bytes]:
    """The SSE events OpenAI streams for ``response``."""
    text = response["output"][0]["content"][0]["text"]
    pending = {**response, "status": "in_progress", "output": [], "usage": None}
    item = {"type": "message", "id": "msg_fake", "status": "in_progress", "role": "assistant", "content": []}
    events = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.content_part.added", "item_id": "msg_fake", "output_index": 0,
         "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}},
        {"type": "response.output_text.delta", "item_id": "msg_fake", "output_index": 0,
         "content_index": 0, "delta": text, "logprobs": []},
        {"type": "response.output_text.done", "item_id": "msg_fake", "output_index": 0,
         "content_index": 0, "text": text, "logprobs": []},
        {"type": "response.content_part.done", "item_id": "msg_fake", "output_index": 0,
         "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": []}},
        {"type": "response.output_item.done", "output_index": 0, "item": response["output"][0]},
        {"type": "response.completed", "response": response},
    ]
    return [f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': i})}\n\n".encode()
            for i, e in enumerate(events)]


def json_response(body: dict, status: int = 200) -> Response:
    """A JSON answer, for ``FakeUpstream.default`` handlers."""
    return Response(json.dumps(body), status=status, mimetype="application/json")


def sse_response(events: list[dict], delay: float = 0.0) -> Response:
    """An Anthropic SSE answer sent event by event, for ``FakeUpstream.default`` handlers."""
    def body():
        for event in events:
            time.sleep(delay)
            yield sse(event)
    return Response(body(), mimetype="text/event-stream")
