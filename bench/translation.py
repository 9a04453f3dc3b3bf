"""What does dialect translation cost a stream, compared with passing it through?

Reuses ``bench/overhead.py``'s setup (fake upstream in-process, throw-away SQLite database made
with the operator CLI, one gunicorn worker as in production, inherited ``PAGEGRID_*`` dropped),
with ``PAGEGRID_ANTHROPIC_URL`` and ``PAGEGRID_OPENAI_URL`` both on the fake, which answers by
path (Messages, Chat Completions or Responses; 20 words; SSE if ``"stream": true``). Each
iteration sends one streaming request per route below, sequentially over one keep-alive client;
reported: time to the first complete SSE line (``event:``/``data:``) and to the end of the stream.

A translated route is compared with the passthrough making the *same upstream call*, so the
difference is the translation (parse, convert, re-frame), not the upstream stream: Chat and
Responses on Claude against Messages passthrough, Messages on GPT against Chat passthrough
(where the gateway forces ``include_usage``).

Run: ``.venv/bin/python bench/translation.py [--requests N] [--warmup N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import httpx2 as httpx
import overhead as ob  # bench/overhead.py: bench/ is sys.path[0] when run as a script
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

fu = ob.fu
TEXT = "word " * 20
CLAUDE, GPT = "claude-haiku-4-5", "gpt-5.4"
# path -> (JSON reply, SSE chunks), built once so the fake does no work per request
REPLIES: dict[str, tuple[str, list[bytes]]] = {
    "/v1/messages": (json.dumps(fu.message(TEXT, model=CLAUDE)),
                     [fu.sse(e) for e in fu.stream_events(fu.message(TEXT, model=CLAUDE))]),
    "/v1/chat/completions": (json.dumps(fu.chat_completion(TEXT)), fu.chat_chunks(fu.chat_completion(TEXT))),
    "/v1/responses": (json.dumps(fu.openai_response(TEXT)),
                      fu.openai_response_events(fu.openai_response(TEXT))),
}
END = {"/v1/messages": b"event: message_stop", "/v1/chat/completions": b"data: [DONE]",
       "/v1/responses": b"event: response.completed"}
ANTHROPIC = {"model": CLAUDE, "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}
CHAT = {"model": GPT, "max_completion_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}
RESPONSES = {"model": CLAUDE, "max_output_tokens": 64, "input": "hello"}
# name -> (gateway?, path, body, passthrough it is compared with)
ROUTES: dict[str, tuple[bool, str, dict, str | None]] = {
    "direct: Anthropic stream": (False, "/v1/messages", ANTHROPIC, None),
    "direct: Chat stream": (False, "/v1/chat/completions", CHAT, None),
    "passthrough: Messages (claude)": (True, "/v1/messages", ANTHROPIC, None),
    "passthrough: Chat (gpt)": (True, "/v1/chat/completions", CHAT, None),
    "translated: Chat->Messages->Chat (claude)": (True, "/v1/chat/completions", {**CHAT, "model": CLAUDE},
                                                  "passthrough: Messages (claude)"),
    "translated: Responses->Messages->Responses (claude)": (True, "/v1/responses", RESPONSES,
                                                            "passthrough: Messages (claude)"),
    "translated: Messages->Chat->Messages (gpt)": (True, "/v1/messages", {**ANTHROPIC, "model": GPT},
                                                   "passthrough: Chat (gpt)"),
}


def answer(req: Request) -> Response:
    """The fake's default: the reply for the path, streamed (one write per event) if asked."""
    if req.method != "POST" or req.path not in REPLIES:
        return Response("not found", status=404)
    try:
        stream = json.loads(req.get_data() or b"{}").get("stream") is True
    except (ValueError, AttributeError):
        stream = False
    reply, chunks = REPLIES[req.path]
    if stream:
        return Response(iter(chunks), mimetype="text/event-stream")
    return Response(reply, mimetype="application/json")


def timed(client: httpx.Client, url: str, path: str, key: str, body: dict, where: str) -> tuple[float, float]:
    """(seconds to the first complete SSE line, seconds to the end of the stream)."""
    headers = {"content-type": "application/json", "x-api-key": key, "anthropic-version": "2023-06-01"}
    content, seen = json.dumps({**body, "stream": True}).encode(), b""
    first: float | None = None
    start = time.perf_counter()
    with client.stream("POST", url + path, content=content, headers=headers) as resp:
        for chunk in resp.iter_raw():
            seen += chunk
            if first is None and any(ln.startswith((b"event:", b"data:")) for ln in seen.split(b"\n")[:-1]):
                first = time.perf_counter() - start
    total = time.perf_counter() - start
    if resp.status_code != 200:
        raise ob.BenchError(f"{where} answered {resp.status_code}: {seen[:500]!r}")
    if first is None or END[path] not in seen:
        raise ob.BenchError(f"{where}: stream ended without {END[path]!r}: {seen[-300:]!r}")
    return first, total


def measure(fake: fu.FakeUpstream, gateway: str, key: str, n: int, warmup: int) -> dict:
    """Round-robin over all routes so drift (CPU, caches, SQLite growth) hits each alike."""
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in ROUTES}
    print(f"{warmup} warm-up + {n} measured streams per route, {len(ROUTES)} routes", file=sys.stderr)
    with httpx.Client(timeout=30.0) as client:
        for i in range(warmup + n):
            for name, (via_gateway, path, body, _) in ROUTES.items():
                sample = timed(client, gateway if via_gateway else fake.url, path, key, body, name)
                if i >= warmup:
                    got[name].append(sample)
            fake.requests.clear()  # FakeUpstream records every request: keep memory flat
    routes = {name: {"first_event": ob.ms([s[0] for s in runs]), "total": ob.ms([s[1] for s in runs])}
              for name, runs in got.items()}
    overhead = {name: {"vs": vs, **{m: round(routes[name][m]["p50"] - routes[vs][m]["p50"], 3)
                                    for m in ("first_event", "total")}}
                for name, (*_, vs) in ROUTES.items() if vs}
    return {"requests": n, "warmup": warmup, "routes": routes, "translation_overhead_p50": overhead}


def report(r: dict) -> str:
    out = ["| route | first event p50 | p90 | p99 | stream total p50 | p90 | p99 |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in r["routes"].items():
        cells = [f"{m[k][p]:.2f}" for k in ("first_event", "total") for p in ("p50", "p90", "p99")]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    parts = [f"{name.removeprefix('translated: ')} {o['first_event']:+.2f} ms first event, "
             f"{o['total']:+.2f} ms total (vs {o['vs'].removeprefix('passthrough: ')})"
             for name, o in r["translation_overhead_p50"].items()]
    out.append(f"\n(ms) translation overhead p50: {'; '.join(parts)}; "
               f"{r['requests']} streams per route after {r['warmup']} warm-up.")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="measured streams per route")
    parser.add_argument("--warmup", type=int, default=30, help="warm-up streams per route")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.requests < 2 or args.warmup < 0:
        parser.error("need --requests >= 2 and --warmup >= 0")

    fake = fu.FakeUpstream()
    fake.default = answer
    upstream = fu.serve(fake)
    try:
        with ob.running_gateway(fake.url) as (url, key):
            results = measure(fake, url, key, args.requests, args.warmup)
        print(json.dumps(results, indent=2) if args.json else report(results))
        return 0
    except (ob.BenchError, httpx.HTTPError, ValueError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        upstream.shutdown()


if __name__ == "__main__":
    sys.exit(main())
