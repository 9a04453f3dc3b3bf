"""Chat Completions clients on Claude models: the request to Anthropic, the reply back (pure).

``CHAT_FIELDS`` says what happens to every top-level request field; a field not in it is refused
with a 400, so nothing a client sends is silently dropped. The reverse direction (Messages clients
on GPT models) is ``messages_to_chat``; this route's stream is ``messages_to_chat_stream``.

Temperature: OpenAI's range is 0–2 and Anthropic's is 0–1. Values from 0 to 1 pass unchanged and
values above 1 are refused with a 400. Rescaling (halving) would change the sampling of every client
that already uses the shared 0–1 range, and clamping would hide the difference; an error lets the
client choose.

Reasoning: ``reasoning_effort`` becomes a thinking budget. Anthropic refuses thinking when the request
answers tool calls of an assistant turn that has no thinking block, and Chat Completions history
cannot carry thinking blocks, so thinking is left off for those tool-result continuations.

Structured output: ``response_format`` json_schema and json_object go to Claude's structured outputs
or a forced tool (see ``structured``, whose ``chat_output_tool`` names that tool for the way back).
"""

from __future__ import annotations

import json
import re

from pagegrid.errors import InvalidRequest
from pagegrid.json_types import JSON
from pagegrid.json_types import JSONValue
from pagegrid.translate.fields import check_bool
from pagegrid.translate.fields import positive_int
from pagegrid.translate.fields import present_fields
from pagegrid.translate.fields import refusal
from pagegrid.translate.images import openai_image_url_to_anthropic
from pagegrid.translate.structured import answer_content
from pagegrid.translate.structured import answer_stop_reason
from pagegrid.translate.structured import apply_output_plan
from pagegrid.translate.structured import chat_output_format
from pagegrid.translate.structured import plan_output
from pagegrid.translate.thinking import CHAT_THINKING_BUDGETS
from pagegrid.translate.thinking import NO_THINKING
from pagegrid.translate.thinking import answers_tool_calls
from pagegrid.translate.thinking import check_thinking_compatible
from pagegrid.translate.thinking import enable_thinking
from pagegrid.translate.tools import OPENAI_TO_ANTHROPIC_TOOL_CHOICE
from pagegrid.translate.tools import anthropic_tool
from pagegrid.translate.tools import openai_tool_call
from pagegrid.translate.tools import with_parallel
from pagegrid.translate.turns import anthropic_turns
from pagegrid.translate.turns import text_block
from pagegrid.translate.usage import usage_from_anthropic
from pagegrid.translate.usage import usage_to_openai_chat

CHAT_FIELDS: dict[str, str] = {
    "model": "mapped: replaced by the catalog's upstream model id",
    "messages": "mapped: system/developer to the top-level system; user, assistant (tool_calls, "
                "function_call), tool and function messages to alternating user/assistant turns; text and "
                "image_url parts (other part types rejected); a message's name and annotations and an "
                "image's detail are ignored",
    "max_tokens": "mapped: max_tokens (the gateway default when neither limit is sent)",
    "max_completion_tokens": "mapped: max_tokens; wins over max_tokens when both are sent",
    "temperature": "passed from 0 to 1; rejected above 1: Claude's range is 0 to 1 (OpenAI's is 0 to 2)",
    "top_p": "passed; left out when temperature is also given: recent Claude models (Opus 4.1 and later) "
             "refuse temperature and top_p together, and chat front ends send both by default",
    "stop": "mapped: stop_sequences",
    "stream": "passed",
    "stream_options": "ignored: handled by the gateway (include_usage adds the final usage chunk)",
    "user": "mapped: metadata.user_id",
    "tools": "mapped: function tools to Claude tools (parameters become input_schema); custom tools rejected",
    "functions": "mapped: legacy functions to Claude tools",
    "tool_choice": "mapped: auto, none, required (any) and a named function (tool); allowed_tools rejected",
    "function_call": "mapped: legacy form of tool_choice",
    "parallel_tool_calls": "mapped: false sets tool_choice.disable_parallel_tool_use",
    "reasoning_effort": "mapped: low/medium/high/xhigh to thinking budgets of 1024/4096/16384/32768 tokens "
                        "(max_tokens raised above the budget); none/minimal to no thinking; max rejected; "
                        "left off when the request answers tool calls or response_format is answered "
                        "through a forced tool (Claude refuses thinking with a forced tool)",
    "n": "rejected above 1: Claude models return one choice per request",
    "response_format": "mapped: text adds nothing; json_schema becomes Claude's structured outputs "
                       "(output_config.format, generally available for Claude 4.5 and later models, "
                       "platform.claude.com/docs/en/build-with-claude/structured-outputs) with the schema "
                       "adapted as Anthropic's SDKs do (objects closed with additionalProperties false, "
                       "oneOf as anyOf, numeric/length constraints and other formats moved into the "
                       "description); a strict schema Claude cannot enforce (open objects, "
                       "patternProperties, not, if/then/else, recursive or external $ref, ...) is a 400 "
                       "naming the keyword; older Claude models, json_object and non-strict schemas the "
                       "native form cannot take are answered through one forced tool named after the "
                       "schema (input_schema = the schema, tool_choice tool) whose call comes back as "
                       "message.content JSON (strict is then best effort)",
    "logprobs": "rejected when true: Claude models do not return log probabilities",
    "top_logprobs": "rejected: Claude models do not return log probabilities",
    "logit_bias": "ignored: Claude models have no token biasing (harmless to leave out)",
    "presence_penalty": "ignored: Claude models have no presence penalty (harmless to leave out)",
    "frequency_penalty": "ignored: Claude models have no frequency penalty (harmless to leave out)",
    "audio": "rejected: Claude models do not produce audio",
    "modalities": "rejected unless [\"text\"]: Claude models produce text only",
    "prediction": "rejected: Claude models have no predicted outputs",
    "web_search_options": "rejected: web search is not available through Chat Completions for Claude models",
    "seed": "ignored: Claude models have no deterministic sampling seed (OpenAI's is best-effort too)",
    "moderation": "rejected: OpenAI moderation policies cannot be applied to Claude models",
    "verbosity": "rejected unless medium: Claude models have no verbosity setting",
    "store": "ignored: OpenAI-side storage for distillation and evals",
    "metadata": "ignored: OpenAI-side tags for stored completions",
    "service_tier": "ignored: OpenAI processing tier; PageGrid prices by model",
    "prompt_cache_key": "ignored: OpenAI cache routing hint",
    "prompt_cache_retention": "ignored: OpenAI cache lifetime hint",
    "prompt_cache_options": "ignored: OpenAI cache breakpoint settings",
    "safety_identifier": "ignored: OpenAI abuse-monitoring id",
}

STOP_REASONS_TO_OPENAI: dict[str | None, str] = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
    "max_tokens": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_calls", "refusal": "content_filter"}
# Per-message keys; "name" (a participant label) and "annotations" (citations echoed back from a
# reply) have no Messages equivalent and are ignored, anything else unknown is refused.
MESSAGE_KEYS = {"system": {"role", "content", "name"}, "developer": {"role", "content", "name"},
                "user": {"role", "content", "name"}, "tool": {"role", "content", "tool_call_id"},
                "function": {"role", "content", "name"},
                "assistant": {"role", "content", "name", "tool_calls", "function_call", "refusal", "audio",
                              "annotations"}}


def _refuse(name: str) -> InvalidRequest:
    return refusal(CHAT_FIELDS, name)


def _number(body: dict, name: str, high: int) -> int | float | None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
        raise InvalidRequest(f"'{name}' must be a number from 0 to {high}.", param=name)
    return value


def _text(text: str) -> list[dict]:
    # Anthropic refuses empty and whitespace-only text blocks.
    return [text_block(text)] if text.strip() else []


def _text_parts(content: object, param: str) -> list[str]:
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise InvalidRequest("Content must be a string or an array of text parts.", param=param)
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise InvalidRequest("Only text parts are allowed here.", param=f"{param}[{j}]")
    return [part["text"] for part in content]


def _tool_id(value: object, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest("A tool call id must be a non-empty string.", param=param)
    # Anthropic ids allow only [A-Za-z0-9_-]; the same rewrite on both sides keeps calls and results paired.
    return re.sub(r"[^A-Za-z0-9_-]", "_", value)


def openai_chat_request_to_anthropic(body: dict, *, upstream_model: str, default_max_tokens: int) -> dict:
    """Translate a Chat Completions request into a Messages request for ``upstream_model``."""
    body = present_fields(body)
    for name in body:
        if name not in CHAT_FIELDS:
            raise InvalidRequest(f"Unsupported parameter: '{name}' is not supported for this model.",
                                 param=name)
    _refuse_chat_features(body)
    system, messages = _chat_messages_to_anthropic(body.get("messages"))
    out: dict = {"model": upstream_model, "messages": messages}
    if system:
        out["system"] = system
    out["max_tokens"] = default_max_tokens
    for name in ("max_tokens", "max_completion_tokens"):
        if name in body:
            out["max_tokens"] = positive_int(body[name], name)
    temperature = _number(body, "temperature", 2)
    if temperature is not None:
        if temperature > 1:
            raise InvalidRequest("'temperature' above 1 is not supported for Claude models: their range "
                                 "is 0 to 1 (OpenAI's is 0 to 2). Send a value from 0 to 1.",
                                 param="temperature")
        out["temperature"] = temperature
    top_p = _number(body, "top_p", 1)
    if top_p is not None:
        if top_p > 1:
            raise InvalidRequest("'top_p' must be a number from 0 to 1.", param="top_p")
        if temperature is None:  # recent Claude models take one of the two, not both
            out["top_p"] = top_p
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop
    if stop is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise InvalidRequest("'stop' must be a string or an array of strings.", param="stop")
    if stops and any(stops):
        out["stop_sequences"] = [s for s in stops if s]
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("'user' must be a string.", param="user")
    if user:
        out["metadata"] = {"user_id": user}
    tools = _chat_tools_to_anthropic(body)
    if tools:
        out["tools"] = tools
    choice = _chat_tool_choice_to_anthropic(body, bool(tools))
    if choice:
        out["tool_choice"] = choice
    form = chat_output_format(body)
    plan = plan_output(form, upstream_model) if form is not None else None
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in (*CHAT_THINKING_BUDGETS, *NO_THINKING):
        raise InvalidRequest("'reasoning_effort' must be none, minimal, low, medium, high or xhigh for "
                             "Claude models.", param="reasoning_effort")
    if effort in CHAT_THINKING_BUDGETS and (plan is None or plan.tool is None):
        check_thinking_compatible(out, "reasoning_effort")
        if not answers_tool_calls(messages):
            enable_thinking(out, CHAT_THINKING_BUDGETS[effort])
    if plan is not None:
        apply_output_plan(out, plan, "response_format")
    if "stream" in body:
        check_bool(body["stream"], "stream")
        out["stream"] = body["stream"]
    return out


def _refuse_chat_features(body: dict) -> None:
    if body.get("n", 1) != 1:
        raise _refuse("n")
    if body.get("logprobs"):
        raise _refuse("logprobs")
    for name in ("top_logprobs", "audio", "prediction", "web_search_options", "moderation"):
        if name in body:
            raise _refuse(name)
    if body.get("modalities", ["text"]) != ["text"]:
        raise _refuse("modalities")
    if body.get("verbosity", "medium") != "medium":
        raise _refuse("verbosity")


def _chat_messages_to_anthropic(messages: object) -> tuple[list[dict], list[dict]]:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    system: list[dict] = []
    entries: list[tuple[str, dict]] = []
    legacy_ids: dict[str, str] = {}
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or role not in MESSAGE_KEYS:
            raise InvalidRequest(f"Unknown message role {role!r}.", param=f"{param}.role")
        for key, value in message.items():
            if key not in MESSAGE_KEYS[role] and value is not None:
                raise InvalidRequest(f"Unsupported message field '{key}'.", param=f"{param}.{key}")
        if role in ("system", "developer"):
            for text in _text_parts(message.get("content"), f"{param}.content"):
                system += _text(text)
        elif role == "user":
            entries += [("user", block) for block in _user_blocks(message.get("content"), param)]
        elif role == "assistant":
            entries += [("assistant", block) for block in _assistant_blocks(message, i, legacy_ids)]
        else:
            entries.append(("user", _tool_result_block(message, param, legacy_ids)))
    if not entries:
        raise InvalidRequest("'messages' must contain a user or assistant message with content.",
                             param="messages")
    return system, anthropic_turns(entries)


def _user_blocks(content: object, param: str) -> list[dict]:
    if isinstance(content, str):
        return _text(content)
    if not isinstance(content, list):
        raise InvalidRequest("Content must be a string or an array of content parts.",
                             param=f"{param}.content")
    blocks: list[dict] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            blocks += _text(part["text"])
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), f"{param}.content[{j}].image_url"))
        else:
            raise InvalidRequest(f"Content part type {kind!r} is not supported for Claude models; send text "
                                 "or image_url parts.", param=f"{param}.content[{j}]")
    return blocks


def _image_block(image_url: object, param: str) -> dict:
    url = image_url.get("url") if isinstance(image_url, dict) else None
    if not isinstance(url, str):
        raise InvalidRequest("'image_url.url' must be a string.", param=f"{param}.url")
    return openai_image_url_to_anthropic(url, f"{param}.url")


def _assistant_blocks(message: dict, index: int, legacy_ids: dict[str, str]) -> list[dict]:
    param, content = f"messages[{index}]", message.get("content")
    blocks: list[dict] = []
    if isinstance(content, str):
        blocks += _text(content)
    elif isinstance(content, list):
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in ("text", "refusal") or not isinstance(part.get(kind), str):
                raise InvalidRequest("Assistant content parts must be text or refusal parts.",
                                     param=f"{param}.content[{j}]")
            blocks += _text(part[kind])
    elif content is not None:
        raise InvalidRequest("Content must be a string or an array of text parts.", param=f"{param}.content")
    if isinstance(message.get("refusal"), str):
        blocks += _text(message["refusal"])
    if message.get("audio") is not None:
        raise InvalidRequest("Earlier audio replies cannot be sent to Claude models.", param=f"{param}.audio")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise InvalidRequest("'tool_calls' must be an array.", param=f"{param}.tool_calls")
    for k, call in enumerate(calls):
        call_param = f"{param}.tool_calls[{k}]"
        if not isinstance(call, dict) or call.get("type", "function") != "function":
            raise InvalidRequest("Only function tool calls are supported for Claude models.",
                                 param=call_param)
        blocks.append(_tool_use_block(_tool_id(call.get("id"), f"{call_param}.id"), call.get("function"),
                                      f"{call_param}.function"))
    if message.get("function_call") is not None:
        # Legacy calls carry no id; the function message that answers one finds it again by name.
        block = _tool_use_block(f"call_{index}", message["function_call"], f"{param}.function_call")
        legacy_ids[block["name"]] = block["id"]
        blocks.append(block)
    return blocks


def _tool_use_block(tool_id: str, function: JSONValue, param: str) -> dict:
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidRequest("A function call needs a name.", param=f"{param}.name")
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise InvalidRequest("Function call arguments are not valid JSON.",
                                 param=f"{param}.arguments") from None
    if not isinstance(arguments, dict):
        raise InvalidRequest("Function call arguments must be a JSON object.", param=f"{param}.arguments")
    return {"type": "tool_use", "id": tool_id, "name": name, "input": arguments}


def _tool_result_block(message: dict, param: str, legacy_ids: dict[str, str]) -> dict:
    if message["role"] == "tool":
        tool_id = _tool_id(message.get("tool_call_id"), f"{param}.tool_call_id")
    elif isinstance(message.get("name"), str) and message["name"] in legacy_ids:
        tool_id = legacy_ids[message["name"]]
    else:
        raise InvalidRequest("A function message must answer an earlier assistant function_call of that "
                             "name.", param=f"{param}.name")
    block: JSON = {"type": "tool_result", "tool_use_id": tool_id}
    content = message.get("content")
    if isinstance(content, str) or (content is None and message["role"] == "function"):
        if content and content.strip():
            block["content"] = content
    else:
        texts = [text for text in _text_parts(content, f"{param}.content") if text.strip()]
        if texts:
            block["content"] = [{"type": "text", "text": text} for text in texts]
    return block


def _chat_tools_to_anthropic(body: dict) -> list[dict]:
    tools, functions = body.get("tools", []), body.get("functions", [])
    for name, value in (("tools", tools), ("functions", functions)):
        if not isinstance(value, list):
            raise InvalidRequest(f"'{name}' must be an array.", param=name)
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise InvalidRequest("Only function tools are supported for Claude models.", param=f"tools[{i}]")
        out.append(_function_to_tool(tool.get("function"), f"tools[{i}].function"))
    out += [_function_to_tool(function, f"functions[{i}]") for i, function in enumerate(functions)]
    return out


def _function_to_tool(function: JSONValue, param: str) -> dict:
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidRequest("A function needs a name.", param=f"{param}.name")
    schema = function.get("parameters")
    if schema is not None and not isinstance(schema, dict):
        raise InvalidRequest("'parameters' must be a JSON Schema object.", param=f"{param}.parameters")
    strict = function.get("strict")
    return anthropic_tool(name, schema or None, function.get("description"),
                          strict if isinstance(strict, bool) else None)


def _chat_tool_choice_to_anthropic(body: dict, has_tools: bool) -> dict | None:
    param = "tool_choice" if "tool_choice" in body else "function_call"
    choice = body.get(param)
    result: JSON | None
    if choice is None:
        result = None
    elif isinstance(choice, str) and choice in OPENAI_TO_ANTHROPIC_TOOL_CHOICE and (
            choice != "required" or param == "tool_choice"):
        result = {"type": OPENAI_TO_ANTHROPIC_TOOL_CHOICE[choice]}
    elif isinstance(choice, dict) and param == "tool_choice" and choice.get("type") == "function":
        function = choice.get("function")
        result = {"type": "tool", "name": function.get("name") if isinstance(function, dict) else None}
    elif isinstance(choice, dict) and param == "function_call":
        result = {"type": "tool", "name": choice.get("name")}
    else:
        raise InvalidRequest(f"Unsupported '{param}' for Claude models: use auto, none, required or a named "
                             "function.", param=param)
    if result and result["type"] == "tool" and not isinstance(result["name"], str):
        raise InvalidRequest("A named tool_choice needs the function name.", param=param)
    parallel = body.get("parallel_tool_calls", True)
    check_bool(parallel, "parallel_tool_calls")
    if not has_tools:
        if result and result["type"] in ("any", "tool"):
            raise InvalidRequest(f"'{param}' requires tools.", param=param)
        return None
    return with_parallel(result, parallel)


def anthropic_message_to_openai_chat(message: dict, *, model: str, completion_id: str, created: int,
                                     output_tool: str | None = None) -> dict:
    """Translate a Messages response into a ``chat.completion`` object (``output_tool``: the forced
    tool whose call is the answer's text)."""
    texts, calls = [], []
    for block in answer_content(message.get("content") or [], output_tool):
        if block.get("type") == "text":
            texts.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            calls.append(openai_tool_call(block["id"], block["name"], block.get("input") or {}))
    reply: dict = {"role": "assistant", "content": "".join(texts) or None, "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    return {"id": completion_id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": reply, "logprobs": None,
                         "finish_reason": STOP_REASONS_TO_OPENAI.get(answer_stop_reason(message, output_tool),
                                                                     "stop")}],
            "usage": usage_to_openai_chat(usage_from_anthropic(message.get("usage")))}
