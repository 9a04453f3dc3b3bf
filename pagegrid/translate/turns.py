"""Conversation turns: consecutive messages of one role merged into one turn, as Messages wants (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from pagegrid.json_types import JSON

T = TypeVar("T")


def text_block(text: str) -> dict:
    """A Messages API text block."""
    return {"type": "text", "text": text}


def group_turns(messages: Iterable[tuple[str, list[T]]], *,
                apart: tuple[str, ...] = ()) -> list[tuple[str, list[T]]]:
    """Consecutive messages of one role as one turn; roles in ``apart`` are never merged."""
    turns: list[tuple[str, list[T]]] = []
    for role, items in messages:
        if turns and turns[-1][0] == role and role not in apart:
            turns[-1][1].extend(items)
        else:
            turns.append((role, list(items)))
    return turns


def anthropic_turns(entries: Iterable[tuple[str, dict]]) -> list[dict]:
    """(role, block) entries as alternating Messages turns; a user turn starts with its tool results.

    Anthropic wants a turn's tool results before its other content; the sort keeps each group's order.
    """
    turns: list[JSON] = [{"role": role, "content": blocks}
                         for role, blocks in group_turns((role, [block]) for role, block in entries)]
    for turn in turns:
        if turn["role"] == "user":
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return turns
