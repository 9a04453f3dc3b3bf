"""HTTP to providers: urllib3 connection pools for the model calls, requests for the rest.

A model call goes straight to a urllib3 ``PoolManager`` (one per process, a keep-alive pool per
provider host): requests' Session layer around it (preparing the request, merging settings,
hooks, cookie jars on every answer) cost more CPU than the call itself on loopback, and a
model call needs none of it. ``get_json`` (model lists, not on the request path) uses requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from functools import lru_cache
from functools import partial

import requests
import urllib3

from pagegrid.errors import UpstreamError
from pagegrid.errors import UpstreamTimeout
from pagegrid.upstream.base import UpstreamReply

# No retries (the account pool decides what a failure means), no redirects, keep-alive pools
# large enough for one gevent worker's streams.
_pools = urllib3.PoolManager(num_pools=16, maxsize=256, block=False, retries=False)
_session = requests.Session()
# No proxy, netrc or CA-bundle lookups in the environment on every request: PageGrid talks to
# its providers directly.
_session.trust_env = False

READ_SIZE = 65536


@lru_cache(maxsize=64)
def _timeout(connect: float, read: float) -> urllib3.Timeout:
    return urllib3.Timeout(connect=connect, read=read)


def post(url: str, body: bytes, headers: Mapping[str, str], *, connect_timeout: float,
         read_timeout: float) -> UpstreamReply:
    """POST and return as soon as the status line and headers have arrived."""
    try:
        response = _pools.urlopen("POST", url, body=body, headers=headers, redirect=False,
                                  preload_content=False, timeout=_timeout(connect_timeout, read_timeout))
    except urllib3.exceptions.NewConnectionError:  # refused (urllib3 makes it a ConnectTimeoutError)
        raise UpstreamError("Could not reach the upstream provider.") from None
    except urllib3.exceptions.ConnectTimeoutError:
        raise UpstreamTimeout(
            f"The upstream provider did not accept a connection within {connect_timeout:g}s.") from None
    except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
        raise UpstreamTimeout(
            f"The upstream provider did not answer within {read_timeout:g}s.") from None
    except (urllib3.exceptions.HTTPError, OSError, ValueError):  # refused, reset, bad URL, ...
        raise UpstreamError("Could not reach the upstream provider.") from None
    return UpstreamReply(response.status, response.headers, _chunks(response), partial(_close, response))


def _close(response: urllib3.BaseHTTPResponse) -> None:
    # As requests does: a body read to its end leaves the connection to the pool; one cut short
    # (a client gone mid-stream) closes it, since unread bytes would poison the next request.
    if not response.closed:
        response.close()
    response.release_conn()


def _chunks(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    # read1 returns whatever has arrived (one chunk of a chunked body, or what the socket has)
    # instead of waiting to fill a buffer, so each event is relayed as soon as it lands.
    try:
        while True:
            data = response.read1(READ_SIZE, decode_content=True)
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
    try:
        response = _session.get(url, headers=dict(headers), params=dict(params or {}),
                                timeout=(connect_timeout, read_timeout))
    except requests.exceptions.Timeout:
        raise UpstreamTimeout("The upstream provider did not answer in time.") from None
    except requests.exceptions.RequestException:
        raise UpstreamError("Could not reach the upstream provider.") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body if isinstance(body, dict) else None
