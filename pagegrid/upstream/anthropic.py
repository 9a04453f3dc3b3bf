"""The Anthropic Messages API as a provider."""

from __future__ import annotations

from collections.abc import Mapping

from werkzeug.datastructures import Headers

from pagegrid.upstream.base import UpstreamReply
from pagegrid.upstream.base import UpstreamTarget
from pagegrid.upstream.http import post

DEFAULT_VERSION = "2023-06-01"
# Client headers that describe the request to Anthropic and must reach it unchanged.
FORWARDED = ("anthropic-version", "anthropic-beta")


class AnthropicAdapter:
    """Sends Anthropic-dialect bodies to an Anthropic-compatible base URL."""

    def __init__(self, target: UpstreamTarget, connect_timeout: float, read_timeout: float) -> None:
        self.target = target
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

    def send(self, path: str, body: bytes, headers: Mapping[str, str] | Headers,
             stream: bool) -> UpstreamReply:
        """POST to the provider with our key and the client's version and beta headers."""
        out = {name: headers[name] for name in FORWARDED if headers.get(name)}
        out.setdefault("anthropic-version", DEFAULT_VERSION)
        out["content-type"] = "application/json"
        out["accept"] = "text/event-stream" if stream else "application/json"
        if stream:
            out["accept-encoding"] = "identity"
        if self.target.api_key:
            out["x-api-key"] = self.target.api_key
        return post(self.target.base_url + path, body, out,
                    connect_timeout=self.connect_timeout, read_timeout=self.read_timeout)
