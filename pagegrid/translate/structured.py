"""Structured output for Claude models: OpenAI's ``response_format`` / ``text.format`` (pure).

Two ways to get an answer in a JSON format from Claude, chosen per request by ``plan_output``:

- **Native** (Anthropic's structured outputs, generally available: ``output_config: {"format":
  {"type": "json_schema", "schema": …}}``, no beta header; the beta's ``output_format`` and
  ``anthropic-beta: structured-outputs-2025-11-13`` are deprecated). Anthropic lists Claude Opus 4.6,
  Sonnet 4.6, Sonnet 4.5, Opus 4.5 and Haiku 4.5 and every later model
  (https://platform.claude.com/docs/en/build-with-claude/structured-outputs), so the rule is by
  model version: ``native_structured_outputs`` — 4.5 and later. The answer is a text block of JSON,
  which needs no translation back. The schema is adapted by ``json_schema.anthropic_output_schema``.
- **A forced tool** everywhere else: one tool named after the schema whose ``input_schema`` is the
  schema, and ``tool_choice: {"type": "tool"}``; its call is turned back into the assistant's text
  (``answer_content``; the streams turn its ``input_json_delta`` into text deltas). It serves
  models older than 4.5, ``json_object`` (a tool's input is always a JSON object, while a native
  schema must close every object), and a non-strict schema the native form cannot express (best
  effort, as OpenAI treats a non-strict schema). Claude refuses thinking with a forced tool, so
  thinking is left off on this path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pagegrid.errors import InvalidRequest
from pagegrid.translate.json_schema import UnsupportedSchema
from pagegrid.translate.json_schema import anthropic_output_schema
from pagegrid.translate.tools import compact_json

NATIVE_SINCE = (4, 5)
# claude-opus-4-6, claude-sonnet-4-5-20250929, claude-3-5-haiku-20241022, claude-3-haiku-20240307
_CLAUDE_ID = re.compile(r"claude-(?:[a-z]+-(?P<major>\d+)(?:-(?P<minor>\d{1,2}))?"
                        r"|(?P<old_major>\d+)(?:-(?P<old_minor>\d{1,2}))?-[a-z]+)(?![0-9])")
# OpenAI's rule for a response format's name, which also fits Anthropic's tool names.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
JSON_OBJECT_TOOL = "json_object"
TOOL_DESCRIPTION = "Give your answer by calling this tool: its input is your whole answer, as JSON."


@dataclass(frozen=True)
class OutputFormat:
    """The JSON format a client asked for, in either OpenAI dialect."""

    kind: str  # json_schema | json_object
    param: str  # the client's field, named in errors: response_format | text.format
    name: str
    schema: dict | None = None
    strict: bool = False
    description: str | None = None


@dataclass(frozen=True)
class OutputPlan:
    """How the request asks Claude for the format: ``output_config.format`` or a forced tool."""

    native: dict | None = None
    tool: dict | None = None

    @property
    def tool_name(self) -> str | None:
        """The forced tool's name, whose call is the answer; None on the native path."""
        return self.tool["name"] if self.tool is not None else None


def native_structured_outputs(upstream_model: str) -> bool:
    """Whether the model takes ``output_config.format``: Claude 4.5 and later (and ids of no known
    shape, which are taken to be current models)."""
    match = _CLAUDE_ID.search(upstream_model)
    if match is None:
        return True
    major, minor = (match["major"], match["minor"]) if match["major"] else (match["old_major"],
                                                                             match["old_minor"])
    return (int(major), int(minor or 0)) >= NATIVE_SINCE


def output_format(kind: object, spec: dict, param: str) -> OutputFormat | None:
    """The format of a ``response_format`` (``spec`` = its ``json_schema``) or a ``text.format``
    (``spec`` = the format itself); None for plain text."""
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputFormat("json_object", param, JSON_OBJECT_TOOL)
    if kind != "json_schema":
        raise InvalidRequest(f"'{param}.type' must be text, json_schema or json_object.", param=param)
    name, schema, strict = spec.get("name"), spec.get("schema"), spec.get("strict")
    description = spec.get("description")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(f"A json_schema format needs a 'name' of 1-64 letters, digits, _ or - "
                             f"(got {name!r}).", param=param)
    if schema is not None and not isinstance(schema, dict):
        raise InvalidRequest("The format's 'schema' must be a JSON Schema object.", param=param)
    if strict is not None and not isinstance(strict, bool):
        raise InvalidRequest("The format's 'strict' must be a boolean.", param=param)
    if description is not None and not isinstance(description, str):
        raise InvalidRequest("The format's 'description' must be a string.", param=param)
    if schema is None:  # no schema: any JSON object, as json_object
        return OutputFormat("json_object", param, name, description=description)
    return OutputFormat("json_schema", param, name, schema, bool(strict), description)


def chat_output_format(body: dict) -> OutputFormat | None:
    """The JSON format ``response_format`` asks for; None for text or none."""
    value = body.get("response_format")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("'response_format' must be an object.", param="response_format")
    spec = value.get("json_schema")
    if value.get("type") == "json_schema" and not isinstance(spec, dict):
        raise InvalidRequest("'response_format.json_schema' must be an object with a name and a schema.",
                             param="response_format")
    return output_format(value.get("type"), spec or {}, "response_format")


def responses_output_format(text: object) -> OutputFormat | None:
    """The JSON format a Responses request's ``text.format`` asks for; None for text or none."""
    form = text.get("format") if isinstance(text, dict) else None
    if form is None:
        return None
    if not isinstance(form, dict):
        raise InvalidRequest("'text.format' must be an object.", param="text.format")
    return output_format(form.get("type"), form, "text.format")


def chat_output_tool(body: dict, upstream_model: str) -> str | None:
    """The forced tool whose call answers this (already translated) Chat Completions request, if any."""
    form = chat_output_format(body)
    return plan_output(form, upstream_model).tool_name if form is not None else None


def responses_output_tool(body: dict, upstream_model: str) -> str | None:
    """The forced tool whose call answers this (already translated) Responses request, if any."""
    form = responses_output_format(body.get("text"))
    return plan_output(form, upstream_model).tool_name if form is not None else None


def plan_output(form: OutputFormat, upstream_model: str) -> OutputPlan:
    """Native structured output where the model and the schema allow it, else a forced tool; a
    strict schema that Claude cannot enforce is a 400 naming the keyword."""
    schema = form.schema
    if form.kind == "json_schema" and schema is not None and native_structured_outputs(upstream_model):
        try:
            native = anthropic_output_schema(schema)
        except UnsupportedSchema as err:
            if form.strict:
                raise InvalidRequest(f"Unsupported JSON Schema for Claude structured output: {err}. "
                                     "Change the schema, or send strict: false for a best-effort answer.",
                                     param=form.param) from None
        else:
            if form.description and "description" not in native:
                native["description"] = form.description
            return OutputPlan(native={"type": "json_schema", "schema": native})
    input_schema = schema if schema is not None else {"type": "object"}
    if input_schema.get("type") != "object":
        raise InvalidRequest("The format's schema must describe a JSON object (\"type\": \"object\") for "
                             "this Claude model.", param=form.param)
    description = f"{TOOL_DESCRIPTION} {form.description}" if form.description else TOOL_DESCRIPTION
    return OutputPlan(tool={"name": form.name, "description": description, "input_schema": input_schema})


def apply_output_plan(request: dict, plan: OutputPlan, param: str) -> None:
    """Put the plan into a Messages request whose tools and tool_choice are already translated.

    The forced tool joins the client's tools. Without client tools (or with ``none``) the answer
    tool is forced; with them, ``any`` makes Claude call a client tool or answer through this one;
    a client's named function stays forced.
    """
    if plan.native is not None:
        request["output_config"] = {"format": plan.native}
        return
    assert plan.tool is not None
    tools = request.get("tools", [])
    name = plan.tool["name"]
    if any(tool.get("name") == name for tool in tools):
        raise InvalidRequest(f"The format's name '{name}' is also the name of a tool; rename one of them.",
                             param=param)
    choice = request.get("tool_choice") or {}
    request["tools"] = [*tools, plan.tool]
    if choice.get("type") == "tool":
        return
    if tools and choice.get("type") != "none":
        request["tool_choice"] = {**choice, "type": "any"}
    else:
        request["tool_choice"] = {"type": "tool", "name": name, "disable_parallel_tool_use": True}


def answer_content(content: list[dict], tool_name: str | None) -> list[dict]:
    """A reply's content blocks with the forced tool's call as the JSON text it stands for."""
    if tool_name is None:
        return content
    return [{"type": "text", "text": compact_json(block.get("input") or {})}
            if block.get("type") == "tool_use" and block.get("name") == tool_name else block
            for block in content]


def answer_stop_reason(message: dict, tool_name: str | None) -> str | None:
    """The stop reason, ``end_turn`` when the only tool called was the forced answer tool."""
    reason = message.get("stop_reason")
    if tool_name is None or reason != "tool_use":
        return reason
    called = [block for block in message.get("content") or () if block.get("type") == "tool_use"]
    return "end_turn" if all(block.get("name") == tool_name for block in called) else reason

