"""``GET /v1/requests/{request_id}``: one of the key's user's requests, its cost and how it went.

Any key of the same user may read it (a request made with a key since revoked or rotated too);
another user's request id is 404, exactly like an unknown one.
"""

from __future__ import annotations

from flask import Response
from flask import jsonify
from flask import request

from pagegrid import request_detail
from pagegrid.api import bp
from pagegrid.errors import NotFound
from pagegrid.keys import authenticate


@bp.get("/requests/<path:request_id>")
@bp.get("/v1/requests/<path:request_id>")
def get_request(request_id: str) -> Response:
    """The request's model, status, tokens by kind, rates, cost, timings and key."""
    key = authenticate(request.headers)
    record = request_detail.find(request_id, user_id=key.user_id)
    if record is None:
        raise NotFound(f"No request {request_id[:64]} was found for this API key's account.")
    return jsonify(request_detail.public(record))
