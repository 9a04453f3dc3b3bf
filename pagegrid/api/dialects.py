"""What differs per endpoint: the table of client dialect × provider dialect.

Each entry of ``DIALECTS`` names the provider path and four pieces, all plain functions of one
``Call``: the request for the provider, the client's answer from the provider's body, the stream
plan that turns the provider's events into the client's, and the meter that reads the usage
from the provider's events. The pipeline (pipeline.py) looks the entry up once per request.

Same dialect on both sides is a passthrough: the client's bytes go out untouched unless the model
id must be rewritten (or, on Chat Completions, the final usage chunk requested).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Protocol

from pagegrid.api.streams import DONE
from pagegrid.api.streams import Passthrough
from pagegrid.api.streams import Translated
from pagegrid.api.streams import Watch
from pagegrid.api.streams import anthropic_error
from pagegrid.api.streams import chat_error
from pagegrid.api.streams import frame_chat
from pagegrid.api.streams import frame_named
from pagegrid.api.streams import frame_typed
from pagegrid.api.streams import responses_error
from pagegrid.catalog import ModelEntry
from pagegrid.errors import GatewayError
from pagegrid.json_types import JSON
from pagegrid.responses_store import Keeper
from pagegrid.sse import SSEEvent
from pagegrid.translate.chat_to_messages import anthropic_message_to_openai_chat
from pagegrid.translate.chat_to_messages import openai_chat_request_to_anthropic
from pagegrid.translate.chat_to_messages_stream import OpenAIChatToAnthropicStream
from pagegrid.translate.messages_to_chat import anthropic_request_to_openai_chat
from pagegrid.translate.messages_to_chat import openai_chat_to_anthropic_message
from pagegrid.translate.messages_to_chat_stream import AnthropicToOpenAIChatStream
from pagegrid.translate.messages_to_responses_stream import AnthropicToOpenAIResponsesStream
from pagegrid.translate.responses_to_messages import anthropic_message_to_openai_response
from pagegrid.translate.responses_to_messages import openai_responses_request_to_anthropic
from pagegrid.translate.structured import chat_output_tool
from pagegrid.translate.structured import responses_output_tool
from pagegrid.translate.usage import AnthropicUsageMeter
from pagegrid.translate.usage import OpenAIChatUsageMeter
from pagegrid.translate.usage import OpenAIResponsesUsageMeter
from pagegrid.translate.usage import Usage
from pagegrid.translate.usage import anthropic_message_usage
from pagegrid.translate.usage import openai_response_usage
from pagegrid.translate.usage import usage_from_openai_chat

log = logging.getLogger(__name__)

# The id prefix of an answer PageGrid writes itself (a translated one), per client dialect.
ANSWER_ID_PREFIX = {"messages": "msg_", "chat": "chatcmpl-", "responses": "resp_"}


class Meter(Protocol):
    """Follows a provider's stream and knows what to charge (see translate/usage.py)."""

    finished: bool
    errored: bool

    def feed(self, data: dict) -> None: ...

    def billable(self) -> Usage: ...


class StreamPlan(Protocol):
    """Turns the provider's events into the client's (see api/streams.py)."""

    def event(self, event: SSEEvent, data: dict | None) -> bytes: ...

    def end(self) -> bytes: ...

    def error(self, err: GatewayError) -> bytes: ...


@dataclass(frozen=True)
class Call:
    """One model call as the dialect functions see it (plain values, safe in a generator)."""

    dialect: str  # the client's: messages | chat | responses
    body: dict
    raw: bytes
    model: ModelEntry
    stream: bool
    request_id: str
    answer_id: str = ""  # the id of a translated answer, made once per request
    created: int = field(default_factory=lambda: int(time.time()))
    keep: Keeper | None = None  # stores the final Responses API response (store unset or true)

    @property
    def include_usage(self) -> bool:
        """A Chat Completions stream asked for its final usage chunk."""
        return bool((self.body.get("stream_options") or {}).get("include_usage"))

    @property
    def estimated_input(self) -> int:
        """A rough input size for a stream cut before the provider reported its usage."""
        return len(self.raw) // 4


def new_call(dialect: str, body: dict, raw: bytes, model: ModelEntry, stream: bool,
             request_id: str, keep: Keeper | None = None) -> Call:
    """The Call for one request, with its answer id."""
    return Call(dialect, body, raw, model, stream, request_id,
                ANSWER_ID_PREFIX[dialect] + secrets.token_hex(12), keep=keep)


def _finals(keep: Keeper | None) -> Watch | None:
    """A stream watch that hands the final response (completed or incomplete) to ``keep``."""
    if keep is None:
        return None

    def watch(event: JSON) -> None:
        if event.get("type") in ("response.completed", "response.incomplete") and \
                isinstance(event.get("response"), dict):
            keep(event["response"])
    return watch


@dataclass(frozen=True)
class Adaptor:
    """One entry of the table: where the request goes and how it travels."""

    path: str
    request: Callable[[Call], tuple[dict, bytes | None]]  # (body, the client's bytes if unchanged)
    response: Callable[[Call, bytes], tuple[bytes, Usage]]
    stream: Callable[[Call], StreamPlan]
    meter: Callable[[Call], Meter]


def dumps(value: dict) -> bytes:
    """Compact JSON bytes, non-ASCII kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# -- same dialect: passthrough --------------------------------------------------------------------

def passthrough(call: Call) -> tuple[dict, bytes | None]:
    """The client's body: its own bytes unless the model id must be rewritten."""
    if call.body["model"] == call.model.upstream_id:
        return call.body, call.raw
    return {**call.body, "model": call.model.upstream_id}, None


def chat_passthrough(call: Call) -> tuple[dict, bytes | None]:
    """A GPT model on Chat Completions: the client's body, with the final usage chunk requested
    on streams (hidden again from a client that did not ask) and ``max_completion_tokens`` for
    OpenAI's reasoning models, which refuse ``max_tokens``."""
    upstream, same = passthrough(call)
    body = call.body
    if call.stream and not call.include_usage:
        options = {**(body.get("stream_options") or {}), "include_usage": True}
        upstream = {**upstream, "stream_options": options}
        same = None
    if call.model.thinking and "max_tokens" in body and "max_completion_tokens" not in body:
        upstream = {k: v for k, v in upstream.items() if k != "max_tokens"}
        upstream["max_completion_tokens"] = body["max_tokens"]
        same = None
    return upstream, same


def messages_reply(call: Call, data: bytes) -> tuple[bytes, Usage]:
    return data, anthropic_message_usage(json.loads(data))


def chat_reply(call: Call, data: bytes) -> tuple[bytes, Usage]:
    return data, usage_from_openai_chat(json.loads(data).get("usage"))


def responses_reply(call: Call, data: bytes) -> tuple[bytes, Usage]:
    response = json.loads(data)
    if call.keep is not None and isinstance(response, dict):
        call.keep(response)
    return data, openai_response_usage(response)


def messages_relayed(call: Call) -> StreamPlan:
    return Passthrough(anthropic_error)


def _usage_only(chunk: dict) -> bool:
    return not chunk.get("choices") and isinstance(chunk.get("usage"), dict)


def chat_relayed(call: Call) -> StreamPlan:
    return Passthrough(chat_error, hide=None if call.include_usage else _usage_only)


def responses_relayed(call: Call) -> StreamPlan:
    return Passthrough(responses_error, watch=_finals(call.keep))


def anthropic_meter(call: Call) -> Meter:
    return AnthropicUsageMeter()


def chat_meter(call: Call) -> Meter:
    return OpenAIChatUsageMeter(call.estimated_input)


def responses_meter(call: Call) -> Meter:
    return OpenAIResponsesUsageMeter(call.estimated_input)


# -- Messages client, GPT model: through Chat Completions -----------------------------------------

def messages_to_chat(call: Call) -> tuple[dict, bytes | None]:
    return anthropic_request_to_openai_chat(call.body, upstream_model=call.model.upstream_id), None


def chat_reply_as_message(call: Call, data: bytes) -> tuple[bytes, Usage]:
    completion = json.loads(data)
    message = openai_chat_to_anthropic_message(completion, model=call.model.id)
    return dumps(message), usage_from_openai_chat(completion.get("usage"))


def chat_stream_as_messages(call: Call) -> StreamPlan:
    return Translated(OpenAIChatToAnthropicStream(model=call.model.id, message_id=call.answer_id),
                      frame_named, anthropic_error)


# -- Chat client, Claude model: through Messages --------------------------------------------------

def chat_to_messages(call: Call) -> tuple[dict, bytes | None]:
    return openai_chat_request_to_anthropic(call.body, upstream_model=call.model.upstream_id,
                                            default_max_tokens=call.model.max_output), None


def message_reply_as_chat(call: Call, data: bytes) -> tuple[bytes, Usage]:
    message = json.loads(data)
    tool = chat_output_tool(call.body, call.model.upstream_id)
    completion = anthropic_message_to_openai_chat(message, model=call.model.id, completion_id=call.answer_id,
                                                  created=call.created, output_tool=tool)
    return dumps(completion), anthropic_message_usage(message)


def messages_stream_as_chat(call: Call) -> StreamPlan:
    tool = chat_output_tool(call.body, call.model.upstream_id)
    return Translated(AnthropicToOpenAIChatStream(model=call.model.id, completion_id=call.answer_id,
                                                  created=call.created, include_usage=call.include_usage,
                                                  output_tool=tool),
                      frame_chat, chat_error, done=DONE)


# -- Responses client, Claude model: through Messages ---------------------------------------------

def responses_to_messages(call: Call) -> tuple[dict, bytes | None]:
    request, notes = openai_responses_request_to_anthropic(
        call.body, upstream_model=call.model.upstream_id, default_max_tokens=call.model.max_output)
    for note in notes:
        log.info("request %s: %s", call.request_id, note)
    return request, None


def message_reply_as_response(call: Call, data: bytes) -> tuple[bytes, Usage]:
    message = json.loads(data)
    response = anthropic_message_to_openai_response(
        message, model=call.model.id, response_id=call.answer_id, created_at=call.created,
        output_tool=responses_output_tool(call.body, call.model.upstream_id))
    if call.keep is not None:
        call.keep(response)
    return dumps(response), anthropic_message_usage(message)


def messages_stream_as_responses(call: Call) -> StreamPlan:
    return Translated(AnthropicToOpenAIResponsesStream(
        model=call.model.id, response_id=call.answer_id, created_at=call.created,
        output_tool=responses_output_tool(call.body, call.model.upstream_id)),
        frame_typed, responses_error, watch=_finals(call.keep))


# (client dialect, provider dialect) -> how the request travels.
DIALECTS: dict[tuple[str, str], Adaptor] = {
    ("messages", "anthropic"): Adaptor("/v1/messages", passthrough, messages_reply,
                                       messages_relayed, anthropic_meter),
    ("messages", "openai"): Adaptor("/v1/chat/completions", messages_to_chat, chat_reply_as_message,
                                    chat_stream_as_messages, chat_meter),
    ("chat", "openai"): Adaptor("/v1/chat/completions", chat_passthrough, chat_reply,
                                chat_relayed, chat_meter),
    ("chat", "anthropic"): Adaptor("/v1/messages", chat_to_messages, message_reply_as_chat,
                                   messages_stream_as_chat, anthropic_meter),
    ("responses", "openai"): Adaptor("/v1/responses", passthrough, responses_reply,
                                     responses_relayed, responses_meter),
    ("responses", "anthropic"): Adaptor("/v1/messages", responses_to_messages, message_reply_as_response,
                                        messages_stream_as_responses, anthropic_meter),
}
