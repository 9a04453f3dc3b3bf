"""Claude's extended thinking as the OpenAI dialects ask for it: effort names, budgets and rules (pure).

OpenAI clients ask for reasoning by effort; Claude takes a token budget. One table turns efforts
into budgets for both OpenAI dialects, ``effort_for_budget`` goes the other way for Messages clients
on GPT models, and the rules Claude enforces with thinking on are checked here, before the upstream
call, so a client gets a 400 naming its own field rather than the upstream's.
"""

from __future__ import annotations

from pagegrid.errors import InvalidRequest

# Every effort fits the smallest output limit of a Claude thinking model (32000) with room to answer.
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 24576, "max": 30720}
# Chat Completions documents (CHAT_FIELDS) xhigh as 32768 and has no max: kept as documented.
CHAT_THINKING_BUDGETS = {**{effort: budget for effort, budget in THINKING_BUDGETS.items() if effort != "max"},
                         "xhigh": 32768}
NO_THINKING = ("none", "minimal")
# What max_tokens is raised to above a budget it does not exceed: room for the answer itself.
ANSWER_TOKENS = 1024


def effort_for_budget(budget: int) -> str:
    """The OpenAI effort for a Claude thinking budget: up to 2048 low, up to 8192 medium, else high."""
    return "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"


def enable_thinking(request: dict, budget: int) -> int | None:
    """Turn on thinking with ``budget``; return the old max_tokens if it had to be raised above the budget."""
    request["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if request["max_tokens"] > budget:
        return None
    raised_from = request["max_tokens"]
    request["max_tokens"] = budget + ANSWER_TOKENS
    return raised_from


def check_thinking_compatible(request: dict, knob: str) -> None:
    """Reject what Claude refuses with thinking on (``knob`` names the field that turned it on)."""
    if request.get("temperature", 1) != 1:
        raise InvalidRequest(f"'temperature' must be 1 (or absent) when '{knob}' turns on Claude's thinking: "
                             f"omit temperature or {knob}.", param="temperature")
    if not 0.95 <= request.get("top_p", 1) <= 1:
        raise InvalidRequest(f"'top_p' must be 0.95-1 (or absent) when '{knob}' turns on Claude's thinking.",
                             param="top_p")
    if (request.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise InvalidRequest(f"'tool_choice' cannot force a tool call when '{knob}' turns on Claude's "
                             f"thinking; use auto or none, or omit {knob}.", param="tool_choice")


def _has_tool_results(message: dict) -> bool:
    """Whether a Messages turn carries tool results."""
    return any(block["type"] == "tool_result" for block in message["content"])


def answers_tool_calls(messages: list[dict]) -> bool:
    """Whether the request ends with a user turn answering tool calls."""
    return bool(messages) and messages[-1]["role"] == "user" and _has_tool_results(messages[-1])


def tool_turn_lacks_thinking(messages: list[dict]) -> bool:
    """Whether a tool-use turn is under way whose first assistant message has no thinking block.

    Claude refuses such a request while thinking is on: the turn's thinking must come back signed.
    """
    if not answers_tool_calls(messages):
        return False
    start = next((i + 1 for i in range(len(messages) - 1, -1, -1)
                  if messages[i]["role"] == "user" and not _has_tool_results(messages[i])), 0)
    first = next((m for m in messages[start:] if m["role"] == "assistant"), None)
    return first is not None and first["content"][0]["type"] not in ("thinking", "redacted_thinking")
