"""Provider adapters: all I/O, no translation, no billing."""

from __future__ import annotations

from collections.abc import Callable

from pagegrid.upstream.anthropic import AnthropicAdapter
from pagegrid.upstream.base import Adapter
from pagegrid.upstream.base import UpstreamTarget
from pagegrid.upstream.demo import DemoAdapter
from pagegrid.upstream.openai import OpenAIAdapter


def get_adapter(target: UpstreamTarget, config: dict) -> Adapter:
    """The adapter for ``target.provider``, configured from the app config."""
    if target.provider == "demo":
        return DemoAdapter(target, config["PAGEGRID_DEMO_DELAY"])
    adapters: dict[str, Callable[[UpstreamTarget, float, float], Adapter]] = {
        "anthropic": AnthropicAdapter, "openai": OpenAIAdapter}
    if target.provider not in adapters:
        raise LookupError(f"no adapter for provider {target.provider!r}")
    return adapters[target.provider](target, config["PAGEGRID_UPSTREAM_CONNECT_TIMEOUT"],
                                     config["PAGEGRID_UPSTREAM_READ_TIMEOUT"])
