"""Token usage as the providers report it, and a meter that follows a stream (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

from pagegrid.json_types import as_object

# A token is about four characters of text; used only when a stream ends before the
# provider reports its final output count.
CHARS_PER_TOKEN = 4


@dataclass
class Usage:
    """The four billed token kinds; ``cache_creation_1h_input_tokens`` is part of the writes."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    # Uses of the provider's server-side tools, billed per use (``{"web_search": 2}``).
    server_tools: dict[str, int] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        """All tokens of the request (the monthly token limit counts these)."""
        return (self.input_tokens + self.output_tokens
                + self.cache_creation_input_tokens + self.cache_read_input_tokens)


def _int(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def usage_from_anthropic(usage: dict | None) -> Usage:
    """Read an Anthropic ``usage`` object, including the 5-minute/1-hour cache write split."""
    usage = usage or {}
    split = usage.get("cache_creation") or {}
    one_hour = _int(split.get("ephemeral_1h_input_tokens"))
    writes = usage.get("cache_creation_input_tokens")
    if writes is None:
        writes = _int(split.get("ephemeral_5m_input_tokens")) + one_hour
    server = as_object(usage.get("server_tool_use"))
    tools = {name: _int(server.get(f"{name}_requests")) for name in ("web_search", "web_fetch")}
    return Usage(
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        cache_creation_input_tokens=_int(writes),
        cache_creation_1h_input_tokens=min(one_hour, _int(writes)),
        cache_read_input_tokens=_int(usage.get("cache_read_input_tokens")),
        server_tools={name: n for name, n in tools.items() if n},
    )


# Anthropic's code execution tools, billed per container (one per request here).
CODE_EXECUTION_TOOLS = ("code_execution", "bash_code_execution", "text_editor_code_execution")


def anthropic_message_usage(message: dict) -> Usage:
    """A whole Messages API response's usage, code execution counted from its content."""
    usage = usage_from_anthropic(message.get("usage"))
    if any(isinstance(block, dict) and block.get("type") == "server_tool_use"
           and block.get("name") in CODE_EXECUTION_TOOLS for block in message.get("content") or ()):
        usage.server_tools["code_execution"] = 1
    return usage


OPENAI_TOOL_CALLS = {"web_search_call": "web_search", "file_search_call": "file_search"}


def openai_response_usage(response: dict) -> Usage:
    """A whole Responses API response's usage, built-in tool calls counted from its output."""
    usage = usage_from_openai_responses(response.get("usage"))
    containers = set()
    for item in response.get("output") or ():
        kind = item.get("type") if isinstance(item, dict) else None
        if kind in OPENAI_TOOL_CALLS:
            name = OPENAI_TOOL_CALLS[kind]
            usage.server_tools[name] = usage.server_tools.get(name, 0) + 1
        elif kind == "code_interpreter_call":
            containers.add(item.get("container_id"))
    if containers:
        usage.server_tools["code_interpreter"] = len(containers)
    return usage


def _details(usage: dict, field: str) -> dict:
    value = usage.get(field)
    return value if isinstance(value, dict) else {}


def _usage_from_openai(usage: dict | None, prompt_field: str, output_field: str) -> Usage:
    # OpenAI's prompt count includes the cached part, which is billed as cache reads.
    usage = usage or {}
    cached = _int(_details(usage, f"{prompt_field}_details").get("cached_tokens"))
    prompt = _int(usage.get(prompt_field))
    return Usage(input_tokens=max(0, prompt - cached), output_tokens=_int(usage.get(output_field)),
                 cache_read_input_tokens=min(cached, prompt))


def usage_from_openai_chat(usage: dict | None) -> Usage:
    """Read Chat Completions usage: ``prompt_tokens`` include the cached part, billed as reads."""
    return _usage_from_openai(usage, "prompt_tokens", "completion_tokens")


def usage_from_openai_responses(usage: dict | None) -> Usage:
    """Read Responses API usage: ``input_tokens`` include the cached part, billed as reads."""
    return _usage_from_openai(usage, "input_tokens", "output_tokens")


def usage_to_openai_chat(usage: Usage) -> dict:
    """Usage in Chat Completions terms: prompt tokens count cache writes and reads too."""
    prompt = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
    return {"prompt_tokens": prompt, "completion_tokens": usage.output_tokens,
            "total_tokens": prompt + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cache_read_input_tokens},
            "completion_tokens_details": {"reasoning_tokens": 0}}


def usage_to_openai_responses(usage: Usage) -> dict:
    """Usage in Responses API terms."""
    prompt = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": usage.cache_read_input_tokens},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + usage.output_tokens}


def usage_to_anthropic(usage: Usage) -> dict:
    """Usage in Messages API terms."""
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens}


class _StreamMeter:
    """Shared part of the meters: how a stream ended, and output estimated if it was cut short."""

    def __init__(self, estimated_input_tokens: int = 0) -> None:
        self.usage = Usage()
        self.finished = False
        self.errored = False
        self._estimated_input = estimated_input_tokens
        self._delta_chars = 0

    def _seen(self, text: object) -> None:
        if isinstance(text, str):
            self._delta_chars += len(text)

    def billable(self) -> Usage:
        """Usage to charge: as reported, or estimated from what was seen if the stream was cut."""
        if self.finished:
            return self.usage
        seen = -(-self._delta_chars // CHARS_PER_TOKEN)
        u = self.usage
        return Usage(u.input_tokens or self._estimated_input, max(u.output_tokens, seen),
                     u.cache_creation_input_tokens, u.cache_creation_1h_input_tokens,
                     u.cache_read_input_tokens, dict(u.server_tools))


class OpenAIChatUsageMeter(_StreamMeter):
    """Follows Chat Completions chunks; the gateway always asks for the final usage chunk."""

    def feed(self, chunk: dict) -> None:
        """Take one parsed chunk."""
        if "error" in chunk:
            self.errored = True
            return
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            self._seen(delta.get("content"))
            for call in delta.get("tool_calls") or ():
                self._seen((call.get("function") or {}).get("arguments"))
        if isinstance(chunk.get("usage"), dict):
            self.usage = usage_from_openai_chat(chunk["usage"])
            self.finished = True


class OpenAIResponsesUsageMeter(_StreamMeter):
    """Follows Responses API events; usage arrives with the terminal event."""

    def feed(self, event: dict) -> None:
        """Take one parsed event."""
        kind = event.get("type")
        if kind in ("response.output_text.delta", "response.function_call_arguments.delta",
                    "response.reasoning_summary_text.delta"):
            self._seen(event.get("delta"))
        elif kind in ("response.completed", "response.incomplete"):
            self.usage = openai_response_usage(event.get("response") or {})
            self.finished = True
        elif kind in ("response.failed", "error"):
            response = event.get("response") or {}
            if response.get("usage"):
                self.usage = openai_response_usage(response)
            self.errored = True


class AnthropicUsageMeter(_StreamMeter):
    """Follows Messages API events: usage at message_start, cumulative counts in message_delta."""

    def feed(self, event: dict) -> None:
        """Take one parsed event."""
        kind = event.get("type")
        if kind == "message_start":
            self.usage = usage_from_anthropic((event.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            self._merge(event.get("usage") or {})
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "server_tool_use" and block.get("name") in CODE_EXECUTION_TOOLS:
                self._code_execution = True
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            for field in ("text", "partial_json", "thinking"):
                self._seen(delta.get(field))
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            self.errored = True

    _code_execution = False

    def billable(self) -> Usage:
        """As for every meter, plus a code execution container if the stream used one."""
        usage = super().billable()
        if self._code_execution:
            usage.server_tools["code_execution"] = 1
        return usage

    def _merge(self, reported: dict) -> None:
        # A field message_delta carries replaces the earlier count.
        u = self.usage
        self.usage = usage_from_anthropic({
            "server_tool_use": {f"{name}_requests": n for name, n in u.server_tools.items()},
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_creation_input_tokens": u.cache_creation_input_tokens,
            "cache_creation": {"ephemeral_1h_input_tokens": u.cache_creation_1h_input_tokens},
            "cache_read_input_tokens": u.cache_read_input_tokens,
            **{k: v for k, v in reported.items() if v is not None},
        })
