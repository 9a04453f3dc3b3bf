"""Messages clients (Claude Code, the Anthropic SDK) on GPT models: the request out, the reply back (pure).

``ANTHROPIC_FIELDS`` says what happens to every top-level request field; a field not in it is refused
with a 400. Block-level details: ``cache_control`` is stripped everywhere (OpenAI caches prompt prefixes by
itself), ``thinking`` and ``redacted_thinking`` blocks are dropped (only Claude can read them back), a
tool result's ``is_error`` flag has no Chat Completions field and is left out (the result text stays), and
images inside tool results move to a user message right after the tool messages, because Chat Completions
tool messages hold text only. This route's stream is ``chat_to_messages_stream``.
"""

from __future__ import annotations

import json

from pagegrid.errors import InvalidRequest
from pagegrid.json_types import JSON
from pagegrid.json_types import JSONValue
from pagegrid.translate.fields import check_bool
from pagegrid.translate.fields import positive_int
from pagegrid.translate.fields import present_fields
from pagegrid.translate.fields import refusal
from pagegrid.translate.images import anthropic_image_url
from pagegrid.translate.thinking import effort_for_budget
from pagegrid.translate.tools import ANTHROPIC_TO_OPENAI_TOOL_CHOICE
from pagegrid.translate.tools import openai_tool_call
from pagegrid.translate.turns import group_turns
from pagegrid.translate.usage import usage_from_openai_chat
from pagegrid.translate.usage import usage_to_anthropic

ANTHROPIC_FIELDS: dict[str, str] = {
    "model": "mapped: replaced by the catalog's upstream model id",
    "messages": "mapped: user, assistant and system turns to Chat Completions messages",
    "system": "mapped: a leading system message",
    "max_tokens": "mapped: max_completion_tokens",
    "temperature": "passed",
    "top_p": "passed",
    "top_k": "rejected: OpenAI models have no top_k sampling",
    "stop_sequences": "mapped: stop",
    "stream": "mapped: stream, with stream_options.include_usage so the stream reports usage",
    "metadata": "mapped: metadata.user_id to user",
    "tools": "mapped: custom tools to function tools (input_schema becomes parameters); server tools "
             "rejected",
    "tool_choice": "mapped: auto, any (required), tool (named function), none; disable_parallel_tool_use "
                   "to parallel_tool_calls false",
    "thinking": "mapped: enabled budget_tokens to reasoning_effort (up to 2048 low, up to 8192 medium, "
                "else high); disabled, adaptive and between_tools send none",
    "context_management": "ignored: Claude-side clearing of old context; the history is sent as it is",
    "output_config": "ignored: effort is a Claude-only setting (format, structured output, is rejected)",
    "container": "ignored: Anthropic code-execution container, unused without server tools",
    "service_tier": "ignored: Anthropic capacity tier; PageGrid prices by model",
    "speed": "ignored: Anthropic fast mode",
    "cache_control": "ignored: automatic prompt-cache breakpoint; OpenAI caches prompt prefixes by itself",
    "diagnostics": "ignored: Anthropic prompt-cache diagnostics",
    "workspace_id": "ignored: Anthropic workspace selection",
    "user_profile_id": "ignored: Anthropic end-user attribution",
    "mcp_servers": "rejected when non-empty: remote MCP servers are run by Anthropic's API",
    "inference_geo": "rejected: the inference region cannot be chosen on OpenAI models",
}
# Anthropic-only fields (Claude Code sends several, some behind anthropic-beta) that mean nothing to GPT.
ANTHROPIC_IGNORED_FIELDS = tuple(name for name, what in ANTHROPIC_FIELDS.items()
                                 if what.startswith("ignored"))
TOOL_KEYS = {"name", "description", "input_schema", "type", "strict", "cache_control",
             "eager_input_streaming"}
FINISH_REASONS_TO_ANTHROPIC = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                               "function_call": "tool_use", "content_filter": "refusal"}


def _refuse(name: str) -> InvalidRequest:
    return refusal(ANTHROPIC_FIELDS, name)


def anthropic_request_to_openai_chat(body: dict, *, upstream_model: str) -> dict:
    """Translate a Messages request into a Chat Completions request for ``upstream_model``."""
    body = present_fields(body)
    for name in body:
        if name not in ANTHROPIC_FIELDS:
            raise InvalidRequest(f"Unsupported parameter: '{name}' is not supported for this model.",
                                 param=name)
    for name in ("top_k", "inference_geo"):
        if name in body:
            raise _refuse(name)
    if body.get("mcp_servers"):
        raise _refuse("mcp_servers")
    if isinstance(body.get("output_config"), dict) and body["output_config"].get("format") is not None:
        raise InvalidRequest("'output_config.format' (structured output) is not supported for this model.",
                             param="output_config.format")
    out: dict = {"model": upstream_model,
                 "messages": _messages(body.get("messages"))}
    if "system" in body:
        system = [(block, f"system[{j}]") for j, block in enumerate(_blocks(body["system"], "system"))]
        out["messages"] = _system_messages(system) + out["messages"]
    out["max_completion_tokens"] = positive_int(body.get("max_tokens"), "max_tokens")
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise InvalidRequest(f"'{name}' must be a number from 0 to 1.", param=name)
            out[name] = value
    stops = body.get("stop_sequences", [])
    if not isinstance(stops, list) or not all(isinstance(stop, str) for stop in stops):
        raise InvalidRequest("'stop_sequences' must be an array of strings.", param="stop_sequences")
    if stops:
        out["stop"] = stops
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict) or set(metadata) - {"user_id"}:
        raise InvalidRequest("'metadata' may only hold user_id.", param="metadata")
    if metadata.get("user_id") is not None and not isinstance(metadata["user_id"], str):
        raise InvalidRequest("'metadata.user_id' must be a string.", param="metadata.user_id")
    if metadata.get("user_id"):
        out["user"] = metadata["user_id"]
    tools = _tools(body.get("tools", []))
    if tools:
        out["tools"] = tools
    out.update(_tool_choice(body.get("tool_choice"), bool(tools)))
    effort = _reasoning_effort(body.get("thinking"))
    if effort:
        out["reasoning_effort"] = effort
    if "stream" in body:
        check_bool(body["stream"], "stream")
        out["stream"] = body["stream"]
        if body["stream"]:
            out["stream_options"] = {"include_usage": True}
    return out


def _reasoning_effort(thinking: JSONValue) -> str | None:
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind in ("disabled", "adaptive", "between_tools"):
        return None
    budget = thinking.get("budget_tokens") if kind == "enabled" else None
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise InvalidRequest("'thinking' must be disabled, adaptive, between_tools, or enabled with a "
                             "positive budget_tokens.", param="thinking")
    return effort_for_budget(budget)


def _blocks(content: object, param: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(block, dict) for block in content):
        raise InvalidRequest("Content must be a string or an array of content blocks.", param=param)
    return content


def _text_content(parts: list[dict]) -> str | list[dict] | None:
    # A single text part is sent as a plain string, the form every Chat Completions model accepts.
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts or None


def _text_part(block: dict, param: str) -> dict:
    if not isinstance(block.get("text"), str):
        raise InvalidRequest("A text block needs its text.", param=param)
    return {"type": "text", "text": block["text"]}


def _system_messages(blocks: list[tuple[dict, str]]) -> list[dict]:
    parts = []
    for block, param in blocks:
        if block.get("type") != "text":
            raise InvalidRequest("System content must be text blocks.", param=param)
        parts.append(_text_part(block, param))
    content = _text_content(parts)
    return [{"role": "system", "content": content}] if content else []


def _messages(messages: object) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    # Anthropic joins consecutive user or assistant turns into one; doing the same keeps every
    # assistant's tool calls directly before their answers, as Chat Completions requires.
    turns: list[tuple[str, list[tuple[dict, str]]]] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant", "system"):
            raise InvalidRequest(f"Unknown message role {role!r}.", param=f"{param}.role")
        if set(message) - {"role", "content"}:
            raise InvalidRequest("A message holds only role and content.", param=param)
        turns.append((role, [(block, f"{param}.content[{j}]")
                             for j, block in enumerate(_blocks(message.get("content"), f"{param}.content"))]))
    convert = {"system": _system_messages, "user": _user_messages, "assistant": _assistant_messages}
    return [message for role, blocks in group_turns(turns, apart=("system",))
            for message in convert[role](blocks)]


def _image_part(block: dict, param: str) -> dict:
    url = anthropic_image_url(block)
    if url is None:
        raise InvalidRequest("Images must be base64 or url sources for this model.", param=f"{param}.source")
    return {"type": "image_url", "image_url": {"url": url}}


def _user_messages(blocks: list[tuple[dict, str]]) -> list[dict]:
    tool_messages: list[JSON] = []
    tool_images: list[JSON] = []
    parts: list[JSON] = []
    for block, block_param in blocks:
        kind = block.get("type")
        if kind == "text":
            parts.append(_text_part(block, block_param))
        elif kind == "image":
            parts.append(_image_part(block, block_param))
        elif kind == "tool_result":
            tool_messages.append(_tool_message(block, block_param, tool_images))
        else:
            raise InvalidRequest(f"Content block type {kind!r} is not supported for this model.",
                                 param=block_param)
    # Tool answers must directly follow the assistant's tool calls; the turn's own content comes after.
    user = _text_content(tool_images + parts)
    return tool_messages + ([{"role": "user", "content": user}] if user is not None else [])


def _tool_message(block: dict, param: str, images: list[dict]) -> dict:
    if not isinstance(block.get("tool_use_id"), str):
        raise InvalidRequest("A tool_result needs its tool_use_id.", param=f"{param}.tool_use_id")
    texts = []
    result = block.get("content")
    for k, item in enumerate(_blocks(result, f"{param}.content") if result is not None else []):
        if item.get("type") == "text":
            texts.append(_text_part(item, f"{param}.content[{k}]")["text"])
        elif item.get("type") == "image":
            images.append(_image_part(item, f"{param}.content[{k}]"))
        else:
            raise InvalidRequest(f"Tool result block type {item.get('type')!r} is not supported for this "
                                 "model.", param=f"{param}.content[{k}]")
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": "\n".join(texts)}


def _assistant_messages(blocks: list[tuple[dict, str]]) -> list[dict]:
    parts, calls = [], []
    for block, block_param in blocks:
        kind = block.get("type")
        if kind == "text":
            parts.append(_text_part(block, block_param))
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise InvalidRequest("A tool_use block needs its id and name.", param=block_param)
            calls.append(openai_tool_call(block["id"], block["name"], block.get("input") or {}))
        elif kind not in ("thinking", "redacted_thinking"):
            raise InvalidRequest(f"Content block type {kind!r} is not supported for this model.",
                                 param=block_param)
    if not parts and not calls:
        return []
    message: dict = {"role": "assistant", "content": _text_content(parts)}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _tools(tools: object) -> list[dict]:
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
            raise InvalidRequest("Only custom (client) tools are supported for this model; server tools "
                                 "such as web search are not.", param=param)
        for key in tool:
            if key not in TOOL_KEYS:
                raise InvalidRequest(f"Tool field '{key}' is not supported for this model.",
                                     param=f"{param}.{key}")
        if not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema"), dict):
            raise InvalidRequest("A tool needs a name and an input_schema object.", param=param)
        function = {"name": tool["name"], "parameters": tool["input_schema"]}
        if tool.get("description"):
            function["description"] = tool["description"]
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: JSONValue, has_tools: bool) -> dict:
    if choice is None:
        return {}
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool" and isinstance(choice.get("name"), str):
        mapped: str | dict = {"type": "function", "function": {"name": choice["name"]}}
    elif isinstance(kind, str) and kind in ANTHROPIC_TO_OPENAI_TOOL_CHOICE:
        mapped = ANTHROPIC_TO_OPENAI_TOOL_CHOICE[kind]
    else:
        raise InvalidRequest("'tool_choice' must be auto, any, none, or tool with a name.",
                             param="tool_choice")
    if not has_tools:
        # OpenAI refuses tool_choice without tools; auto and none mean the same as leaving it out.
        if kind in ("any", "tool"):
            raise InvalidRequest("'tool_choice' requires tools.", param="tool_choice")
        return {}
    out: dict = {"tool_choice": mapped}
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False
    return out


def openai_chat_to_anthropic_message(completion: dict, *, model: str) -> dict:
    """Translate a ``chat.completion`` object into a Messages response."""
    choices = completion.get("choices") or [{}]
    reply = choices[0].get("message") or {}
    content: list[dict] = []
    text = "".join(part for part in (reply.get("content"), reply.get("refusal")) if isinstance(part, str))
    if text:
        content.append({"type": "text", "text": text})
    for index, call in enumerate(reply.get("tool_calls") or []):
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = {}
        if not isinstance(arguments, dict):
            arguments = {}
        content.append({"type": "tool_use", "id": call.get("id") or f"call_{index}",
                        "name": function.get("name"), "input": arguments})
    usage = usage_to_anthropic(usage_from_openai_chat(completion.get("usage")))
    return {"id": f"msg_{completion.get('id', '')}", "type": "message", "role": "assistant", "model": model,
            "content": content,
            "stop_reason": FINISH_REASONS_TO_ANTHROPIC.get(choices[0].get("finish_reason"), "end_turn"),
            "stop_sequence": None, "usage": usage}
