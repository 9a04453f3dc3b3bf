"""The OpenAI API (Chat Completions and Responses) as a provider."""

from __future__ import annotations

from collections.abc import Mapping

from werkzeug.datastructures import Headers

from pagegrid.upstream.base import UpstreamReply
from pagegrid.upstream.base import UpstreamTarget
from pagegrid.upstream.http import fetch
from pagegrid.upstream.http import post


class OpenAIAdapter:
    """Sends OpenAI-dialect bodies to an OpenAI-compatible base URL."""

    def __init__(self, target: UpstreamTarget, connect_timeout: float, read_timeout: float) -> None:
        self.target = target
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

    def send(self, path: str, body: bytes, headers: Mapping[str, str] | Headers,
             stream: bool) -> UpstreamReply:
        """POST to the provider with our key; client headers are not forwarded."""
        out = {"content-type": "application/json",
               "accept": "text/event-stream" if stream else "application/json"}
        if stream:
            out["accept-encoding"] = "identity"
        if self.target.api_key:
            out["authorization"] = f"Bearer {self.target.api_key}"
        return post(self.target.base_url + path, body, out,
                    connect_timeout=self.connect_timeout, read_timeout=self.read_timeout)

    def fetch(self, method: str, path: str, params: Mapping[str, str]) -> tuple[int, bytes]:
        """GET or DELETE a stored object (``/v1/responses/{id}``) with our key: status and body."""
        out = {"accept": "application/json"}
        if self.target.api_key:
            out["authorization"] = f"Bearer {self.target.api_key}"
        return fetch(method, self.target.base_url + path, out, params,
                     connect_timeout=self.connect_timeout, read_timeout=self.read_timeout)
