"""``POST /v1/responses`` (also under ``/v1/v1``): the API Codex CLI speaks.

GPT models pass through to OpenAI; Claude models are translated to the Messages API and back
(dialects.py). A WebSocket upgrade on ``GET`` answers 426 (see ``api.http_error``) so Codex
falls back to HTTP at once.
"""

from __future__ import annotations

from flask import Response

from pagegrid.api import bp
from pagegrid.api import pipeline


@bp.post("/responses")
@bp.post("/v1/responses")
def responses() -> Response:
    """Create a response, streaming or not, and charge the wallet for its usage."""
    return pipeline.handle(pipeline.RESPONSES)
