"""Tools between the OpenAI dialects and Messages: definitions, tool choice, calls (pure).

Both OpenAI dialects name tool choices the same way and Messages has its own names for them;
``OPENAI_TO_ANTHROPIC_TOOL_CHOICE`` is the one map, and Messages clients on GPT models use its inverse.
"""

from __future__ import annotations

import json

from pagegrid.json_types import JSON

# A function without parameters: Anthropic requires an input_schema object.
EMPTY_SCHEMA = {"type": "object", "properties": {}}
OPENAI_TO_ANTHROPIC_TOOL_CHOICE = {"auto": "auto", "none": "none", "required": "any"}
ANTHROPIC_TO_OPENAI_TOOL_CHOICE = {kind: name for name, kind in OPENAI_TO_ANTHROPIC_TOOL_CHOICE.items()}


def compact_json(value: object) -> str:
    """JSON without spaces, the way OpenAI writes tool call arguments."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def anthropic_tool(name: str, schema: dict | None, description: object, strict: bool | None) -> dict:
    """An Anthropic tool definition; a missing schema becomes an empty object schema."""
    tool: JSON = {"name": name, "input_schema": schema if schema is not None else dict(EMPTY_SCHEMA)}
    if description:
        tool["description"] = description
    if strict is not None:
        tool["strict"] = strict
    return tool


def with_parallel(choice: dict | None, parallel: object) -> dict | None:
    """Anthropic's tool_choice with ``parallel_tool_calls: false`` folded in (it means nothing with none)."""
    if parallel is False and (choice is None or choice["type"] != "none"):
        return {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    return choice


def openai_tool_call(call_id: str, name: str, arguments: object) -> dict:
    """A Chat Completions function tool call from a tool_use block's id, name and input."""
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": compact_json(arguments)}}
