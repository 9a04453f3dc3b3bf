"""``POST /v1/messages`` and ``/v1/messages/count_tokens`` (also under ``/v1/v1``).

Claude models pass through to Anthropic unchanged; GPT models are translated to Chat
Completions and back (dialects.py).
"""

from __future__ import annotations

from flask import Response

from pagegrid.api import bp
from pagegrid.api import pipeline


@bp.post("/messages")
@bp.post("/v1/messages")
def messages() -> Response:
    """Create a message, streaming or not, and charge the wallet for its usage."""
    return pipeline.handle(pipeline.MESSAGES)


@bp.post("/messages/count_tokens")
@bp.post("/v1/messages/count_tokens")
def count_tokens() -> Response:
    """Count a request's input tokens upstream; free, and outside the key's request budget."""
    return pipeline.count_tokens()
