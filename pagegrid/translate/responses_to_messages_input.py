"""Responses API input items as Messages API turns (pure): messages, function calls, outputs, reasoning."""

from __future__ import annotations

import base64
import json

from pagegrid.errors import InvalidRequest
from pagegrid.json_types import JSON
from pagegrid.json_types import JSONValue
from pagegrid.translate.images import openai_image_url_to_anthropic
from pagegrid.translate.turns import text_block

# Claude's signed thinking travels through the client inside a reasoning item's encrypted_content.
THINKING_PREFIX = "pagegrid-thinking-v1:"


def item_kind(value: object, default: str | None = None) -> str | None:
    """The ``type`` of a JSON object if it is a string (``default`` when absent), else None."""
    kind = value.get("type", default) if isinstance(value, dict) else None
    return kind if isinstance(kind, str) else None


def listed(value: object, param: str) -> list[tuple[str, JSONValue]]:
    """An array's entries with their parameter paths; anything but an array is a 400."""
    if not isinstance(value, list):
        raise InvalidRequest(f"'{param}' must be an array.", param=param)
    return [(f"{param}[{i}]", entry) for i, entry in enumerate(value)]


def openai_responses_input_to_anthropic(
        value: object) -> tuple[list[dict], list[tuple[str, dict]], list[tuple[str, object]]]:
    """System blocks, (role, block) entries in input order, and tools from additional_tools items."""
    if isinstance(value, str):
        return [], [("user", text_block(value))] if value else [], []
    if not isinstance(value, list):
        raise InvalidRequest("'input' must be a string or an array of items.", param="input")
    system: list[dict] = []
    entries: list[tuple[str, dict]] = []
    tools: list[tuple[str, object]] = []
    for at, item in listed(value, "input"):
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{at}' must be an object.", param=at)
        kind = item_kind(item, "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "developer", "system"):
                raise InvalidRequest(f"'{at}.role' must be user, assistant, developer or system.",
                                     param=f"{at}.role")
            blocks = _parts(item.get("content"), f"{at}.content", images=role == "user")
            if role in ("developer", "system"):
                system.extend(blocks)
            else:
                entries.extend((role, block) for block in blocks)
        elif kind == "function_call":
            entries.append(("assistant", _tool_use(item, at)))
        elif kind == "function_call_output":
            entries.append(("user", _tool_result(item, at)))
        elif kind == "reasoning":
            block = _unseal(item.get("encrypted_content"), f"{at}.encrypted_content")
            if block is not None:
                entries.append(("assistant", block))
        elif kind == "additional_tools":
            tools.extend(listed(item.get("tools"), f"{at}.tools"))
        else:
            raise InvalidRequest(f"Input item type '{kind}' is not supported for Claude models.",
                                 param=f"{at}.type")
    return system, entries, tools


def _parts(content: object, param: str, *, images: bool) -> list[dict]:
    """Message or tool-output content as text and image blocks, empty text left out."""
    if isinstance(content, str):
        return [text_block(content)] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"'{param}' must be a string or an array of content parts.", param=param)
    blocks = []
    for at, part in listed(content, param):
        kind = item_kind(part)
        if kind in ("input_text", "output_text", "refusal"):
            text = part.get("refusal" if kind == "refusal" else "text")
            if not isinstance(text, str):
                raise InvalidRequest(f"'{at}' needs its text as a string.", param=at)
            if text:
                blocks.append(text_block(text))
        elif kind == "input_image" and images:
            blocks.append(_image(part, at))
        elif kind == "input_image":
            raise InvalidRequest("Images are supported only in user messages and function_call_output.",
                                 param=at)
        else:
            raise InvalidRequest(f"Content part type '{kind}' is not supported for Claude models.", param=at)
    return blocks


def _image(part: dict, at: str) -> dict:
    """An input_image part as an image block (base64 from a data URL, or a URL source)."""
    if part.get("file_id") is not None:
        raise InvalidRequest("input_image with 'file_id' is not supported: PageGrid stores no files; send "
                             "'image_url' as a data: or https: URL.", param=f"{at}.file_id")
    return openai_image_url_to_anthropic(part.get("image_url"), f"{at}.image_url")


def required_str(item: dict, key: str, at: str) -> str:
    """``item[key]`` as a non-empty string, else a 400 naming it."""
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"'{at}.{key}' must be a non-empty string.", param=f"{at}.{key}")
    return value


def _tool_use(item: dict, at: str) -> dict:
    """A function_call item as a tool_use block."""
    call_id, name = required_str(item, "call_id", at), required_str(item, "name", at)
    arguments = item.get("arguments")
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidRequest(f"'{at}.arguments' must be a JSON object encoded as a string.",
                             param=f"{at}.arguments")
    return {"type": "tool_use", "id": call_id, "name": name, "input": parsed}


def _tool_result(item: dict, at: str) -> dict:
    """A function_call_output item as a tool_result block."""
    block: JSON = {"type": "tool_result", "tool_use_id": required_str(item, "call_id", at)}
    output = item.get("output")
    content: object = output if isinstance(output, str) else _parts(output, f"{at}.output", images=True)
    if content:
        block["content"] = content
    return block


def seal_thinking(block: dict) -> str:
    """A thinking or redacted_thinking block as a reasoning item's ``encrypted_content``."""
    sealed = {k: block[k] for k in ("type", "thinking", "signature", "data") if k in block}
    return THINKING_PREFIX + base64.urlsafe_b64encode(
        json.dumps(sealed, separators=(",", ":")).encode()).decode()


def _unseal(value: object, at: str) -> dict | None:
    """The thinking block PageGrid sealed into ``encrypted_content``; None if it is not ours."""
    if not isinstance(value, str) or not value.startswith(THINKING_PREFIX):
        return None
    try:
        block = json.loads(base64.urlsafe_b64decode(value[len(THINKING_PREFIX):]))
    except ValueError:
        block = None
    fields = {"thinking": ("type", "thinking", "signature"), "redacted_thinking": ("type", "data")}
    keys = fields.get(item_kind(block) or "")
    if keys is None or set(block) != set(keys) or not all(isinstance(block[k], str) for k in keys):
        raise InvalidRequest("This reasoning item's encrypted_content was altered; send it back as it was "
                             "received.", param=at)
    return block
