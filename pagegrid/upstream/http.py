"""HTTP to providers with requests: one transport adapter per process, errors mapped.

A model call hands a ``PreparedRequest`` straight to requests' ``HTTPAdapter`` (a keep-alive
urllib3 pool per provider host) instead of going through ``Session.request``: the Session's
layer around the call (merging environment and session settings, hooks, redirects, cookie jars
filled from every answer) cost more CPU than the call itself on loopback, and a model call, to
a URL PageGrid built from an account's base URL, needs none of it. The adapter still maps every
failure to requests' exceptions. ``fetch`` (model lists, stored objects) uses a plain Session.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from collections.abc import Mapping
from functools import partial
from typing import Any
from typing import cast

import requests
import urllib3
from requests.structures import CaseInsensitiveDict

from pagegrid.errors import UpstreamError
from pagegrid.errors import UpstreamTimeout
from pagegrid.upstream.base import UpstreamReply


class _Transport(requests.adapters.HTTPAdapter):
    """requests' adapter answering with urllib3's response itself: a model call reads the status,
    the headers and the raw body, so the ``requests.Response`` around it (a cookie jar, the
    URL, the encoding) is not built."""

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> Any:  # noqa: ANN401 - urllib3's
        return resp


# No retries (the account pool decides what a failure means) and no redirects; keep-alive pools
# large enough for one gevent worker's streams.
_adapter = _Transport(pool_connections=16, pool_maxsize=256, max_retries=0)
_session = requests.Session()
# No proxy, netrc or CA-bundle lookups in the environment on every request: PageGrid talks to
# its providers directly.
_session.trust_env = False

READ_SIZE = 65536


def post(url: str, body: bytes, headers: Mapping[str, str], *, connect_timeout: float,
         read_timeout: float) -> UpstreamReply:
    """POST and return as soon as the status line and headers have arrived."""
    prepared = requests.PreparedRequest()
    prepared.method, prepared.url, prepared.body = "POST", url, body
    prepared.headers = CaseInsensitiveDict(headers)
    prepared.headers["Content-Length"] = str(len(body))
    try:
        # _Transport answers with urllib3's response (typeshed types send() as requests').
        response = cast("urllib3.BaseHTTPResponse",
                        _adapter.send(prepared, stream=True, timeout=(connect_timeout, read_timeout)))
    except requests.exceptions.ConnectTimeout:
        raise UpstreamTimeout(
            f"The upstream provider did not accept a connection within {connect_timeout:g}s.") from None
    except requests.exceptions.ReadTimeout:
        raise UpstreamTimeout(
            f"The upstream provider did not answer within {read_timeout:g}s.") from None
    except (requests.exceptions.RequestException, ValueError):  # refused, reset, a bad header value
        raise UpstreamError("Could not reach the upstream provider.") from None
    return UpstreamReply(response.status, response.headers, _chunks(response), partial(_close, response))


def _close(raw: urllib3.BaseHTTPResponse) -> None:
    # What requests.Response.close does for a body read from ``raw``: close, and give the
    # connection back to its pool.
    raw.close()
    raw.release_conn()


def _chunks(raw: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    # read1 returns whatever has arrived (one chunk of a chunked body, or what the socket has)
    # instead of waiting to fill a buffer, so each event is relayed as soon as it lands.
    try:
        while True:
            data = raw.read1(READ_SIZE, decode_content=True)
            if not data:
                return
            yield data
    except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
        raise UpstreamTimeout("The upstream provider stopped sending mid-answer.") from None
    except (urllib3.exceptions.HTTPError, OSError):
        raise UpstreamError("The connection to the upstream provider broke mid-answer.") from None


def get_json(url: str, headers: Mapping[str, str], params: Mapping[str, str] | None = None, *,
             connect_timeout: float, read_timeout: float) -> tuple[int, dict | None]:
    """GET a small JSON document (a model list): its status and body (None if not a JSON object)."""
    status, content = fetch("GET", url, headers, params, connect_timeout=connect_timeout,
                            read_timeout=read_timeout)
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    return status, body if isinstance(body, dict) else None


def fetch(method: str, url: str, headers: Mapping[str, str], params: Mapping[str, str] | None = None, *,
          connect_timeout: float, read_timeout: float) -> tuple[int, bytes]:
    """A small non-streaming request (GET or DELETE of a stored object): its status and body."""
    try:
        response = _session.request(method, url, headers=dict(headers), params=dict(params or {}),
                                    timeout=(connect_timeout, read_timeout))
    except requests.exceptions.Timeout:
        raise UpstreamTimeout("The upstream provider did not answer in time.") from None
    except requests.exceptions.RequestException:
        raise UpstreamError("Could not reach the upstream provider.") from None
    return response.status_code, response.content
