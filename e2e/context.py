"""What a scenario gets: the fake provider, the gateways, provisioning, scratch homes and logs."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import requests

from e2e.harness import Account
from e2e.harness import Bank
from e2e.harness import Gateway
from e2e.harness import Ran
from e2e.harness import Scratch
from e2e.harness import check
from e2e.harness import run_client
from e2e.provider import Call
from e2e.provider import Provider
from e2e.provider import Script

FUNDED = "e2e-funded@example.com"
BROKE = "e2e-broke@example.com"
KEY_PLACEHOLDER = "pg-your-key-here"


@dataclass
class Context:
    """Shared by every scenario of one run."""

    provider: Provider
    gateway: Gateway
    bank: Bank
    scratch: Scratch
    logs: Path
    fast_gateway: Gateway | None = None  # PAGEGRID_RPM_WINDOW_SECONDS=3, for the rpm=1 scenario
    notes: list[str] = field(default_factory=list)
    _docs: dict[str, str] = field(default_factory=dict)

    def account(self, name: str, *options: str, email: str = FUNDED) -> Account:
        """A new key (through the CLI) for one scenario, so its ledger rows are its own."""
        return self.bank.key(email, name, *options)

    def begin(self, text: str, **script: object) -> str:
        """Script the provider for a scenario; returns the marker text it will answer with."""
        marker = f"{text}-{secrets.token_hex(3)}"
        self.provider.begin(Script(marker, **script))  # type: ignore[arg-type]
        return marker

    def calls(self) -> list[Call]:
        """Model calls the provider answered in this scenario."""
        return self.provider.model_calls()

    def run(self, name: str, argv: list[str], env: dict[str, str], timeout: float = 120,
            home: Path | None = None, cwd: Path | None = None) -> Ran:
        """Run a client with a fresh scratch HOME; its transcript goes to ``logs/NAME.log``."""
        home = home or self.scratch.home(name)
        return run_client(argv, home, env, timeout=timeout, cwd=cwd, log=self.logs / f"{name}.log")

    def docs_snippets(self, page: str) -> dict[str, tuple[str, str]]:
        """``{id: (language, code)}`` of the ``<pre id=… data-lang=…>`` blocks on ``/docs/PAGE``,
        as this gateway renders them (its own URL, the key placeholder)."""
        if page not in self._docs:
            response = requests.get(f"{self.gateway.url}/docs/{page}", timeout=10)
            self._docs[page] = response.text if response.status_code == 200 else ""
        found = {}
        pattern = r'<pre id="([^"]+)" data-lang="([^"]+)"><code>(.*?)</code></pre>'
        for snippet_id, lang, code in re.findall(pattern, self._docs[page], re.S):
            found[snippet_id] = (lang, html.unescape(code))
        return found

    def snippet(self, page: str, snippet_id: str, key: str) -> str:
        """One docs snippet with the key placeholder replaced by ``key`` (fails if missing)."""
        snippets = self.docs_snippets(page)
        check(snippet_id in snippets, f"docs page /docs/{page} has no snippet #{snippet_id} "
                                      f"(found: {sorted(snippets)})")
        code = snippets[snippet_id][1]
        check(KEY_PLACEHOLDER in code or "PAGEGRID_API_KEY" in code or "ANTHROPIC" in code,
              f"snippet #{snippet_id} has no key placeholder")
        return code.replace(KEY_PLACEHOLDER, key)


Scenario = Callable[[Context], str]


@dataclass
class Entry:
    """A scenario in the report: client, name, function."""

    client: str
    name: str
    func: Scenario


REGISTRY: list[Entry] = []


def scenario(client: str, name: str) -> Callable[[Scenario], Scenario]:
    """Register a scenario (runs in registration order)."""
    def register(func: Scenario) -> Scenario:
        REGISTRY.append(Entry(client, name, func))
        return func
    return register
