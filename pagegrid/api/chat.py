"""``POST /v1/chat/completions`` (also under ``/v1/v1``) for every model in the catalog.

GPT models pass through to OpenAI, with the final usage chunk always requested so every
stream is metered (and hidden again from a client that did not ask for it). Claude models are
translated to the Messages API and back (dialects.py).
"""

from __future__ import annotations

from flask import Response

from pagegrid.api import bp
from pagegrid.api import pipeline


@bp.post("/chat/completions")
@bp.post("/v1/chat/completions")
def chat_completions() -> Response:
    """Create a chat completion, streaming or not, and charge the wallet for its usage."""
    return pipeline.handle(pipeline.CHAT)
