"""OpenAI Responses API requests to Anthropic Messages requests, and Messages back to responses (pure).

``RESPONSES_FIELDS`` says what happens to every top-level request field; ``null`` counts as absent.
Input items:

    message user/assistant      a user/assistant turn: text (input_text, output_text, refusal) and
                                images (input_image, user turns only)
    message developer/system    system text blocks, in order, after ``instructions``
    function_call               an assistant ``tool_use`` block (id = call_id)
    function_call_output        a user ``tool_result`` block, placed before the turn's other blocks
    reasoning                   Claude thinking that PageGrid handed out in ``encrypted_content`` goes
                                back as its signed thinking block; any other reasoning is dropped
    additional_tools            its tools join ``tools``
    item_reference              resolved to the stored item it names before translation
                                (responses_store.py), as ``previous_response_id`` is to its conversation

Other item and content part types are rejected. Keys inside items and parts beyond the mapped ones
are bookkeeping and are ignored: ``id``, ``status``, ``phase``, ``namespace``, ``caller``, output
``annotations`` and ``logprobs``, image ``detail``, ``prompt_cache_breakpoint``, a reasoning item's
``summary`` and ``content``, and Codex's ``internal_chat_message_metadata_passthrough``.
"""

from __future__ import annotations

from pagegrid.errors import InvalidRequest
from pagegrid.json_types import JSONValue
from pagegrid.translate.fields import check_bool
from pagegrid.translate.fields import is_int
from pagegrid.translate.fields import positive_int
from pagegrid.translate.responses_to_messages_input import item_kind
from pagegrid.translate.responses_to_messages_input import listed
from pagegrid.translate.responses_to_messages_input import openai_responses_input_to_anthropic
from pagegrid.translate.responses_to_messages_input import required_str
from pagegrid.translate.responses_to_messages_input import seal_thinking
from pagegrid.translate.structured import answer_content
from pagegrid.translate.structured import apply_output_plan
from pagegrid.translate.structured import plan_output
from pagegrid.translate.structured import responses_output_format
from pagegrid.translate.thinking import NO_THINKING
from pagegrid.translate.thinking import THINKING_BUDGETS
from pagegrid.translate.thinking import check_thinking_compatible
from pagegrid.translate.thinking import enable_thinking
from pagegrid.translate.thinking import tool_turn_lacks_thinking
from pagegrid.translate.tools import OPENAI_TO_ANTHROPIC_TOOL_CHOICE
from pagegrid.translate.tools import anthropic_tool
from pagegrid.translate.tools import compact_json
from pagegrid.translate.tools import with_parallel
from pagegrid.translate.turns import anthropic_turns
from pagegrid.translate.turns import text_block
from pagegrid.translate.usage import usage_from_anthropic
from pagegrid.translate.usage import usage_to_openai_responses

RESPONSES_FIELDS: dict[str, str] = {
    "model": "mapped: replaced by the Claude model the catalog routes the request to",
    "input": "mapped: a string is one user message; items become system text, user/assistant turns, "
             "tool_use and tool_result blocks",
    "instructions": "mapped: the first system text block",
    "tools": "mapped: function tools become Anthropic tools (parameters -> input_schema, strict: true "
             "passed; defer_loading, allowed_callers and output_schema ignored); web_search, namespace, "
             "custom, mcp and the other OpenAI-hosted tool types are dropped with a note, because Claude "
             "cannot run them here",
    "tool_choice": "mapped: auto/none/required/{function} -> auto/none/any/{tool}; dropped when it names a "
                   "dropped tool or no tools remain; allowed_tools is rejected",
    "parallel_tool_calls": "mapped: false -> tool_choice.disable_parallel_tool_use",
    "max_output_tokens": "mapped: max_tokens (absent: the model's output limit in the catalog)",
    "temperature": "passed: 0-1; above 1 rejected, because OpenAI allows 0-2 but Claude only 0-1; "
                   "with reasoning only 1 (Claude's rule)",
    "top_p": "passed: 0-1; with reasoning only 0.95-1 (Claude's rule)",
    "reasoning": "mapped: effort low/medium/high/xhigh/max -> thinking budget 1024/4096/16384/24576/30720 "
                 "tokens, max_tokens raised to budget + 1024 if not above it; none/minimal/absent -> no "
                 "thinking; summary and context accepted (thinking is always returned as the summary)",
    "stream": "passed",
    "store": "mapped: unset or true keeps the completed response and its input items for "
             "previous_response_id, item_reference and GET /v1/responses/{id} "
             "(PAGEGRID_RESPONSES_RETENTION_DAYS); false stores nothing",
    "include": "ignored: reasoning items always carry encrypted_content (Claude's signed thinking, for "
               "the next request); logprobs and other extras are not available",
    "prompt_cache_key": "ignored: Anthropic caches at explicit breakpoints, not by key",
    "client_metadata": "ignored: client telemetry (Codex)",
    "metadata": "mapped: kept on the stored response (not sent to Claude)",
    "user": "ignored: an end-user id for OpenAI's abuse monitoring",
    "safety_identifier": "ignored: an end-user id for OpenAI's abuse monitoring",
    "service_tier": "ignored: Claude requests run on Anthropic's standard tier",
    "truncation": "ignored when \"disabled\" or \"auto\": input is never truncated; too long an input fails",
    "text": "mapped: format json_schema becomes Claude's structured outputs (output_config.format, "
            "generally available for Claude 4.5 and later, "
            "platform.claude.com/docs/en/build-with-claude/structured-outputs), the schema adapted as "
            "Anthropic's SDKs do, a strict schema Claude cannot enforce a 400 naming the keyword; older "
            "models, json_object and non-strict schemas the native form cannot take are answered through "
            "one forced tool named after the schema, whose call comes back as a message item's "
            "output_text (thinking is then left off); format text and verbosity are ignored",
    "background": "rejected when true: background responses are not available; false is ignored",
    "previous_response_id": "mapped: the stored conversation (each earlier turn's input and output, in "
                            "order) goes before the input; instructions and tools are not carried over",
    "conversation": "rejected: OpenAI's Conversations API is not available; use previous_response_id",
    "prompt": "rejected: stored prompt templates live at OpenAI",
    "top_logprobs": "rejected: Claude returns no log probabilities",
    "max_tool_calls": "rejected: it limits OpenAI's built-in tools, which Claude cannot run",
    "stream_options": "rejected: stream obfuscation is not available",
    "prompt_cache_retention": "rejected: Anthropic cache lifetimes differ",
    "prompt_cache_options": "rejected: Anthropic cache lifetimes differ",
    "context_management": "rejected: OpenAI's server-side compaction is not available",
    "moderation": "rejected: OpenAI moderation is not available",
    "image": "rejected: OpenAI image context compression is not available",
    "access_programs": "rejected: OpenAI access programs do not apply",
    "background_options": "rejected: background responses are not available",
}

DROPPED_TOOL_TYPES = frozenset({
    "web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11",
    "namespace", "file_search", "computer", "computer_use", "computer_use_preview", "local_shell", "shell",
    "code_interpreter", "image_generation", "mcp", "custom", "apply_patch", "tool_search",
    "programmatic_tool_calling",
})
_INCOMPLETE: dict[str | None, str] = {
    "max_tokens": "max_output_tokens", "model_context_window_exceeded": "max_output_tokens",
    "refusal": "content_filter"}


def openai_responses_request_to_anthropic(body: dict, *, upstream_model: str,
                                          default_max_tokens: int) -> tuple[dict, list[str]]:
    """A Responses API request body as a Messages API request body, plus notes for the log."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    fields = {name: value for name, value in body.items() if value is not None}
    for name in fields:
        verdict = RESPONSES_FIELDS.get(name)
        if verdict is None:
            raise InvalidRequest(f"Unsupported parameter: '{name}'.", param=name)
        if verdict.startswith("rejected:"):
            raise InvalidRequest(f"Unsupported parameter: '{name}': {verdict[10:]}.", param=name)
    _check_options(fields)
    if "input" not in fields:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    notes: list[str] = []
    system, entries, extra_tools = openai_responses_input_to_anthropic(fields["input"])
    instructions = fields.get("instructions", "")
    if not isinstance(instructions, str):
        raise InvalidRequest("'instructions' must be a string.", param="instructions")
    if instructions:
        system.insert(0, text_block(instructions))
    tools, dropped = _tools(listed(fields.get("tools", []), "tools") + extra_tools, notes)
    tool_choice = _tool_choice(fields.get("tool_choice"), tools, dropped, fields.get("parallel_tool_calls"),
                               notes)
    form = responses_output_format(fields.get("text"))
    plan = plan_output(form, upstream_model) if form is not None else None
    budget = _thinking_budget(fields.get("reasoning"))
    if budget and plan is not None and plan.tool is not None:
        budget = None
        notes.append(f"thinking disabled: the answer comes through the forced tool {plan.tool_name}, and "
                     "Claude refuses thinking with a forced tool")
    messages = anthropic_turns(entries)
    if budget and tool_turn_lacks_thinking(messages):
        budget = None
        notes.append("thinking disabled: the tool-use turn in progress has no Claude thinking block to "
                     "send back (its reasoning items did not come from PageGrid)")
    if not budget:
        entries = [(role, b) for role, b in entries if b["type"] not in ("thinking", "redacted_thinking")]
        messages = anthropic_turns(entries)
    if not messages:
        raise InvalidRequest("'input' has no user or assistant content.", param="input")
    max_tokens = positive_int(fields.get("max_output_tokens", default_max_tokens), "max_output_tokens")
    request: dict = {"model": upstream_model, "max_tokens": max_tokens, "messages": messages}
    if system:
        request["system"] = system
    if tools:
        request["tools"] = tools
    if tool_choice:
        request["tool_choice"] = tool_choice
    if plan is not None:
        apply_output_plan(request, plan, "text.format")
    for name in ("temperature", "top_p", "stream"):
        if name in fields:
            request[name] = fields[name]
    if budget:
        check_thinking_compatible(request, "reasoning.effort")
        if enable_thinking(request, budget) is not None:
            notes.append(f"max_tokens raised from {max_tokens} to {request['max_tokens']} for a thinking "
                         f"budget of {budget} tokens")
    return request, notes


def anthropic_message_to_openai_response(message: dict, *, model: str, response_id: str, created_at: int,
                                         output_tool: str | None = None) -> dict:
    """A Messages API message as a Responses API ``response`` object (``output_tool``: the forced
    tool whose call is the answer's text).

    A ``tool_use`` block's ``input`` may also be the JSON text as it streamed, which is kept verbatim.
    """
    output: list[dict] = []
    for block in answer_content(list(message.get("content") or ()), output_tool):
        item = anthropic_block_to_openai_item(block, response_id=response_id, output_index=len(output))
        if item is not None:
            output.append(item)
    reason = _INCOMPLETE.get(message.get("stop_reason"))
    return {
        "id": response_id, "object": "response", "created_at": created_at, "model": model,
        "status": "incomplete" if reason else "completed", "error": None,
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": None, "metadata": {}, "output": output, "parallel_tool_calls": True,
        "temperature": None, "tool_choice": "auto", "tools": [], "top_p": None,
        "usage": anthropic_usage_to_openai_responses(message.get("usage")),
    }


def anthropic_block_to_openai_item(block: dict, *, response_id: str, output_index: int) -> dict | None:
    """One finished content block as a Responses output item; None for empty text and unknown types."""
    kind = block.get("type")
    if kind == "text" and block.get("text"):
        return {"id": openai_item_id("msg", response_id, output_index), "type": "message",
                "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": block["text"], "annotations": []}]}
    if kind == "tool_use":
        return {"id": openai_item_id("fc", response_id, output_index), "type": "function_call",
                "call_id": block.get("id"), "name": block.get("name"),
                "arguments": _arguments(block.get("input")), "status": "completed"}
    if kind in ("thinking", "redacted_thinking"):
        text = block.get("thinking") or ""
        item: dict = {"id": openai_item_id("rs", response_id, output_index), "type": "reasoning",
                      "summary": [{"type": "summary_text", "text": text}] if text else []}
        if block.get("signature") or block.get("data"):
            item["encrypted_content"] = seal_thinking(block)
        return item
    return None


def openai_item_id(prefix: str, response_id: str, output_index: int) -> str:
    """The id of the output item at ``output_index``: the same in a stream and in the final response."""
    return f"{prefix}_{response_id.removeprefix('resp_')}_{output_index}"


def anthropic_usage_to_openai_responses(usage: dict | None) -> dict:
    """Messages API usage in Responses API terms, with the fields the openai SDK requires."""
    counted = usage_from_anthropic(usage)
    result = usage_to_openai_responses(counted)
    result["input_tokens_details"].setdefault("cache_write_tokens", counted.cache_creation_input_tokens)
    thinking = ((usage or {}).get("output_tokens_details") or {}).get("thinking_tokens")
    if is_int(thinking) and thinking > 0:
        result["output_tokens_details"]["reasoning_tokens"] = min(thinking, result["output_tokens"])
    return result


def _arguments(value: object) -> str:
    """Function-call arguments as JSON text: streamed text verbatim, a parsed input compactly."""
    if isinstance(value, str):
        return value if value.strip() else "{}"
    return compact_json(value if value is not None else {})


def _check_options(fields: dict) -> None:
    """Check the scalar options: their types, their ranges, and values Claude has no equivalent for."""
    if fields.get("background") not in (None, False):
        raise InvalidRequest("'background' responses are not supported for Claude models.",
                             param="background")
    if fields.get("truncation") not in (None, "disabled", "auto"):
        raise InvalidRequest("'truncation' must be \"disabled\" or \"auto\".", param="truncation")
    for name, why in (("temperature", ": Claude models accept 0-1, not OpenAI's 0-2"), ("top_p", "")):
        value = fields.get(name, 0)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise InvalidRequest(f"'{name}' must be a number from 0 to 1{why}.", param=name)
    for name in ("stream", "parallel_tool_calls"):
        check_bool(fields.get(name, False), name)
    text = fields.get("text", {})
    if not isinstance(text, dict) or set(text) - {"format", "verbosity"}:
        raise InvalidRequest("'text' supports only 'format' and 'verbosity'.", param="text")
    if text.get("verbosity") not in (None, "low", "medium", "high"):
        raise InvalidRequest("'text.verbosity' must be low, medium or high.", param="text.verbosity")


def _thinking_budget(reasoning: object) -> int | None:
    """The thinking budget ``reasoning`` asks for, or None for no thinking."""
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict) or set(reasoning) - {"effort", "summary", "generate_summary",
                                                            "context", "mode"}:
        raise InvalidRequest("'reasoning' supports effort, summary and context.", param="reasoning")
    allowed = {"summary": (None, "auto", "concise", "detailed"),
               "generate_summary": (None, "auto", "concise", "detailed"),
               "context": (None, "auto", "current_turn", "all_turns"), "mode": (None, "standard")}
    for key, values in allowed.items():
        if reasoning.get(key) not in values:
            raise InvalidRequest(f"'reasoning.{key}' must be one of {', '.join(map(str, values[1:]))}.",
                                 param=f"reasoning.{key}")
    effort = reasoning.get("effort")
    if effort is None or effort in NO_THINKING:
        return None
    if not isinstance(effort, str) or effort not in THINKING_BUDGETS:
        raise InvalidRequest("'reasoning.effort' must be none, minimal, low, medium, high, xhigh or max.",
                             param="reasoning.effort")
    return THINKING_BUDGETS[effort]


def _tools(tools: list[tuple[str, JSONValue]], notes: list[str]) -> tuple[list[dict], set[str]]:
    """Anthropic tools, and the names of the tools dropped because Claude cannot run them here."""
    result: list[dict] = []
    dropped: set[str] = set()
    for at, tool in tools:
        kind = item_kind(tool)
        if kind in DROPPED_TOOL_TYPES:
            name = tool.get("name") or tool.get("server_label")
            name = name if isinstance(name, str) else ""
            dropped.add(name or kind)
            dropped.update(inner["name"] for inner in tool.get("tools") or ()
                           if isinstance(inner, dict) and isinstance(inner.get("name"), str))
            notes.append(f"dropped tool {kind}{' ' + name if name else ''}: Claude cannot run it here")
            continue
        if kind != "function":
            raise InvalidRequest(f"Tool type '{kind}' is not supported for Claude models.",
                                 param=f"{at}.type")
        name = required_str(tool, "name", at)
        if any(existing["name"] == name for existing in result):
            raise InvalidRequest(f"Tool name '{name}' is used twice.", param=f"{at}.name")
        schema = tool.get("parameters")
        if schema is not None and not isinstance(schema, dict):
            raise InvalidRequest(f"'{at}.parameters' must be a JSON Schema object.", param=f"{at}.parameters")
        description = tool.get("description")
        result.append(anthropic_tool(name, schema, description if isinstance(description, str) else None,
                                     True if tool.get("strict") is True else None))
    return result, dropped


def _tool_choice(choice: JSONValue, tools: list[dict], dropped: set[str], parallel: object,
                 notes: list[str]) -> dict | None:
    """``tool_choice`` and ``parallel_tool_calls`` as Anthropic's tool_choice, or None."""
    mapped: dict | None
    if choice is None:
        mapped = None
    elif isinstance(choice, str) and choice in OPENAI_TO_ANTHROPIC_TOOL_CHOICE:
        mapped = {"type": OPENAI_TO_ANTHROPIC_TOOL_CHOICE[choice]}
    elif item_kind(choice) == "function":
        name = choice.get("name")
        if any(tool["name"] == name for tool in tools):
            mapped = {"type": "tool", "name": name}
        elif isinstance(name, str) and name in dropped:
            notes.append(f"dropped tool_choice: it names {name}, a tool Claude cannot run here")
            mapped = None
        else:
            raise InvalidRequest(f"'tool_choice' names '{name}', which is not a function in 'tools'.",
                                 param="tool_choice")
    elif item_kind(choice) in DROPPED_TOOL_TYPES:
        notes.append(f"dropped tool_choice: it names {choice['type']}, a tool Claude cannot run here")
        mapped = None
    else:
        raise InvalidRequest("'tool_choice' must be auto, none, required or a function; allowed_tools is "
                             "not supported for Claude models.", param="tool_choice")
    if not tools:
        if mapped and mapped["type"] in ("any", "tool"):
            notes.append("dropped tool_choice: no tools Claude can run remain")
        return None
    return with_parallel(mapped, parallel)
