"""The hold: an upper bound of what the provider can bill for one request (pure functions).

The bound is computed on the body the provider receives, in the provider's own dialect, so
passthrough and translated requests follow the same rules:

- **Input.** No tokenizer emits more than one token per byte of text, and JSON only adds bytes,
  so a request whose input is all in its body holds ``body bytes + OVERHEAD_TOKENS`` input
  tokens (the provider's own tool and system preamble), capped at the context window. Input the
  body does not contain — a stored conversation (``previous_response_id``, ``conversation``,
  stored prompts, ``item_reference`` items), documents and images by URL or file id, containers,
  MCP servers, anything a server-side tool fetches or searches — can be as large as the model's
  context window, so such a request holds the whole window. (A Claude model's stored
  conversation is resolved into the body before this, responses_store.py, so it counts by size.)
- **Output.** ``max_tokens`` (or the model's maximum when the request leaves it out), capped at
  the model's maximum, times the number of choices ``n``.
- **Every input token at the dearest input rate** (cache writes cost more than plain input),
  every output token at the output rate.
- **Server-side tools** bill per use: each holds its fee times its most uses. Where the request
  sets no limit, PageGrid sets one (``max_uses`` on Anthropic's tools, ``max_tool_calls`` on the
  Responses API) so that the bound is finite; see ``SERVER_TOOL_MAX_USES``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field

from pagegrid.catalog import ModelEntry
from pagegrid.catalog import tool_fee

# Tokens the provider may add around the body (tool-use system prompt, formatting).
OVERHEAD_TOKENS = 4096
# The most uses of a server tool PageGrid lets one request make when the request sets no limit.
SERVER_TOOL_MAX_USES = 10

# Anthropic tool types by the name they start with. Client tools run on the customer's side and
# cost only the tokens in the next request's body; server tools run at the provider.
ANTHROPIC_CLIENT_TOOLS = ("custom", "bash_", "text_editor_", "computer_", "memory_")
ANTHROPIC_SERVER_TOOLS = {"web_search_": "web_search", "web_fetch_": "web_fetch",
                          "code_execution_": "code_execution"}
# Server tools that only reorganise what the body holds (no fee, no outside input).
ANTHROPIC_LOCAL_SERVER_TOOLS = ("tool_search_tool_",)
ANTHROPIC_TOKEN_ONLY_TOOLS = ANTHROPIC_CLIENT_TOOLS + ANTHROPIC_LOCAL_SERVER_TOOLS
OPENAI_CLIENT_TOOLS = ("function", "custom", "local_shell", "shell", "apply_patch",
                       "computer_use_preview", "computer")
OPENAI_SERVER_TOOLS = {"web_search": "web_search", "web_search_preview": "web_search",
                       "file_search": "file_search", "code_interpreter": "code_interpreter"}


@dataclass
class Bound:
    """What a request can cost at most, in tokens and server tool uses."""

    input_tokens: int
    output_tokens: int
    tool_uses: dict[str, int] = field(default_factory=dict)
    unbounded: list[str] = field(default_factory=list)  # why the input is the whole window
    patched: bool = False  # a tool limit was set in the body, which must be sent re-encoded

    def nanos(self, model: ModelEntry) -> int:
        """The hold in nano-USD."""
        price = model.price
        dearest_input = max(price.input, price.cache_write, price.cache_write_1h)
        fees = sum(tool_fee(model.provider, tool) * uses for tool, uses in self.tool_uses.items())
        return self.input_tokens * dearest_input + self.output_tokens * price.output + fees


def _input(model: ModelEntry, body_bytes: int, unbounded: list[str]) -> int:
    if unbounded:
        return model.context_window
    return min(body_bytes + OVERHEAD_TOKENS, model.context_window)


def walk(value: object) -> Iterator[dict]:
    """Every JSON object inside ``value`` (iteratively: bodies may nest deeply)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _limit(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def anthropic_messages(body: dict, body_bytes: int, model: ModelEntry) -> Bound:
    """A Messages API body. Server tools without ``max_uses`` get one set (the body changes)."""
    unbounded: list[str] = []
    uses: dict[str, int] = {}
    patched = False
    for name in ("container", "mcp_servers"):
        if body.get(name):
            unbounded.append(name)
    for obj in walk(body.get("messages")):
        source = obj.get("source")
        if isinstance(source, dict) and source.get("type") in ("url", "file"):
            unbounded.append(f"a {source['type']} source")
            break
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict):
            continue
        kind = tool.get("type") or "custom"
        if not isinstance(kind, str) or kind.startswith(ANTHROPIC_TOKEN_ONLY_TOOLS):
            continue
        priced = next((name for prefix, name in ANTHROPIC_SERVER_TOOLS.items() if kind.startswith(prefix)),
                      None)
        unbounded.append(f"the {kind} tool")
        if priced == "code_execution":
            uses[priced] = uses.get(priced, 0) + 1  # billed per container, one per request
        elif priced is not None:
            limit = _limit(tool.get("max_uses"), 0)
            if not limit:
                tool["max_uses"] = limit = SERVER_TOOL_MAX_USES
                patched = True
            uses[priced] = uses.get(priced, 0) + limit
    output = min(_limit(body.get("max_tokens"), model.max_output), model.max_output)
    return Bound(_input(model, body_bytes, unbounded), output, uses, unbounded, patched)


def _remote_url(value: object) -> bool:
    url = value.get("url") if isinstance(value, dict) else value
    return isinstance(url, str) and not url.startswith("data:")


def openai_chat(body: dict, body_bytes: int, model: ModelEntry) -> Bound:
    """A Chat Completions body: ``n`` choices, remote images and files, web search."""
    unbounded: list[str] = []
    uses: dict[str, int] = {}
    for obj in walk(body.get("messages")):
        kind = obj.get("type")
        if kind == "image_url" and _remote_url(obj.get("image_url")):
            unbounded.append("an image by URL")
        elif kind == "file" and isinstance(obj.get("file"), dict) and obj["file"].get("file_id"):
            unbounded.append("a file_id")
    if body.get("web_search_options") is not None:
        unbounded.append("web_search_options")
        uses["web_search"] = 1
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    output = min(_limit(limit, model.max_output), model.max_output) * _limit(body.get("n"), 1)
    return Bound(_input(model, body_bytes, unbounded), output, uses, unbounded)


def openai_responses(body: dict, body_bytes: int, model: ModelEntry) -> Bound:
    """A Responses API body. Built-in tools without ``max_tool_calls`` get it set (the body changes)."""
    unbounded = [name for name in ("previous_response_id", "conversation", "prompt") if body.get(name)]
    uses: dict[str, int] = {}
    for obj in walk(body.get("input")):
        kind = obj.get("type")
        if kind == "item_reference":
            unbounded.append("an item_reference")
        elif kind == "input_image" and (obj.get("file_id") or _remote_url(obj.get("image_url"))):
            unbounded.append("an image by URL or file id")
        elif kind == "input_file" and (obj.get("file_id") or obj.get("file_url")):
            unbounded.append("a file by URL or id")
    tools = body.get("tools")
    priced = []
    for tool in tools if isinstance(tools, list) else ():
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(kind, str) or kind in OPENAI_CLIENT_TOOLS:
            continue
        unbounded.append(f"the {kind} tool")
        if kind in OPENAI_SERVER_TOOLS:
            priced.append(OPENAI_SERVER_TOOLS[kind])
    patched = False
    if priced:
        calls = _limit(body.get("max_tool_calls"), 0)
        if not calls:
            body["max_tool_calls"] = calls = SERVER_TOOL_MAX_USES
            patched = True
        for name in priced:
            # Every call could be of any of the tools; code interpreter bills per container.
            uses[name] = 1 if name == "code_interpreter" else calls
    output = min(_limit(body.get("max_output_tokens"), model.max_output), model.max_output)
    return Bound(_input(model, body_bytes, unbounded), output, uses, unbounded, patched)


BY_PATH = {"/v1/messages": anthropic_messages, "/v1/chat/completions": openai_chat,
           "/v1/responses": openai_responses}
