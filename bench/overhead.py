"""How much latency does PageGrid add on top of the provider?

Starts the fake Anthropic upstream from ``tests/fake_upstream.py`` on loopback (instant answers),
sets up a throw-away SQLite database with the operator CLI (``init-db``, ``create-user``,
``credit``, ``create-key``) and serves the gateway exactly as production does
(``gunicorn -c gunicorn.conf.py wsgi:app``). Then it sends the same ``POST /v1/messages``
sequentially over one keep-alive client, alternating between the gateway and the fake
upstream directly, and reports p50/p90/p99 of:

* non-streaming: request -> full JSON response;
* streaming (``"stream": true``): request -> first complete SSE line (``event:``/``data:``),
  plus the p50 time until the stream is drained.

The gateway overhead is the difference of the p50s. Inherited ``PAGEGRID_*`` variables are
dropped so runs are comparable (one gunicorn worker, no Redis). Servers and client share this
machine, so absolute numbers depend on it: compare runs on the same box.

Run: ``make bench``, or ``.venv/bin/python bench/overhead.py [--requests N] [--warmup N] [--json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests import fake_upstream as fu  # noqa: E402  (the test suite's fake provider)

BIN = ROOT / ".venv" / "bin"
MODEL = "claude-haiku-4-5"
STREAM_CHUNKS = [fu.sse(e) for e in fu.stream_events(fu.message("word " * 20, model=MODEL))]
REPLY = json.dumps(fu.message(model=MODEL))


# The gunicorn master and the database behind each gateway URL running_gateway yielded.
MASTERS: dict[str, int] = {}
DATABASES: dict[str, str] = {}


def worker_cpu_seconds(gateway_url: str) -> float:
    """User + system CPU seconds used so far by the gunicorn workers serving ``gateway_url``."""
    master = MASTERS[gateway_url]
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in children:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


class BenchError(RuntimeError):
    """The setup or a measured request failed."""


def answer(req: Request) -> Response:
    """The fake's default: a JSON message, or an SSE stream (one write per event, no delays)."""
    try:
        body = json.loads(req.get_data() or b"{}")
    except ValueError:
        body = {}
    if isinstance(body, dict) and body.get("stream") is True:
        return Response(iter(STREAM_CHUNKS), mimetype="text/event-stream")
    return Response(REPLY, mimetype="application/json")


def flask_cli(env: dict[str, str], *args: str) -> str:
    """Run ``flask --app app ARGS`` as an operator would; return its stdout."""
    done = subprocess.run([str(BIN / "flask"), "--app", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise BenchError(f"flask {args[0]} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"gunicorn exited with {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.head(f"{url}/v1", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"gateway did not answer HEAD /v1 within {timeout:.0f}s")


def stop(proc: subprocess.Popen) -> None:
    """Terminate gunicorn (graceful); kill its whole process group if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def timed(client: httpx.Client, url: str, headers: dict[str, str], body: dict,
          where: str) -> tuple[float, float]:
    """(latency to the first SSE line, or to the whole JSON reply; latency to the end of the body)."""
    stream, content = body.get("stream", False), json.dumps(body).encode()
    first: float | None = None
    seen = b""
    start = time.perf_counter()
    with client.stream("POST", f"{url}/v1/messages", content=content, headers=headers) as resp:
        for chunk in resp.iter_raw():
            seen += chunk
            if stream and first is None and any(line.startswith((b"event:", b"data:"))
                                                for line in seen.split(b"\n")[:-1]):
                first = time.perf_counter() - start
    total = time.perf_counter() - start
    if resp.status_code != 200:
        raise BenchError(f"{where} answered {resp.status_code}: {seen[:500]!r}")
    if stream and (first is None or b"event: message_stop" not in seen):
        raise BenchError(f"{where} stream ended without message_stop: {seen[-300:]!r}")
    if not stream and json.loads(seen).get("type") != "message":
        raise BenchError(f"{where} answered 200 without a message: {seen[:300]!r}")
    return (first if stream else total), total


def ms(samples: list[float], percents: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {f"p{p}": round(q[p - 1] * 1000, 3) for p in percents}


def measure(fake: fu.FakeUpstream, gateway_url: str, key: str, n: int, warmup: int) -> dict:
    """Alternate direct/gateway requests so drift (CPU, caches, SQLite growth) hits both alike."""
    base = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    targets = {"direct": (fake.url, "fake upstream"), "gateway": (gateway_url, "gateway")}
    results: dict = {"requests": n, "warmup": warmup}
    with httpx.Client(timeout=30.0) as client:
        for label, body in (("non_streaming", base), ("streaming", {**base, "stream": True})):
            print(f"{label}: {warmup} warm-up + {n} measured requests per target", file=sys.stderr)
            got: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
            cpu_before = 0.0
            for i in range(warmup + n):
                if i == warmup:
                    fake.requests.clear()  # FakeUpstream records every request: keep memory flat
                    cpu_before = worker_cpu_seconds(gateway_url)
                for name, (url, where) in targets.items():
                    sample = timed(client, url, headers, body, where)
                    if i >= warmup:
                        got[name].append(sample)
            cpu = worker_cpu_seconds(gateway_url) - cpu_before
            fake.requests.clear()
            res: dict = {name: ms([s[0] for s in got[name]]) for name in targets}
            res["gateway_cpu_ms_per_request"] = round(cpu * 1000 / n, 2)
            res["overhead_p50"] = round(res["gateway"]["p50"] - res["direct"]["p50"], 3)
            if label == "streaming":
                for name in targets:
                    res[name]["total_p50"] = ms([s[1] for s in got[name]], (50,))["p50"]
                res["overhead_total_p50"] = round(res["gateway"]["total_p50"] - res["direct"]["total_p50"], 3)
            results[label] = res
    return results


def report(r: dict) -> str:
    ns, st = r["non_streaming"], r["streaming"]
    out = ["| measurement | target | p50 ms | p90 ms | p99 ms | stream total p50 ms |",
           "|---|---|---:|---:|---:|---:|"]
    for name, res in (("non-streaming, full response", ns), ("streaming, first event", st)):
        for target in ("direct", "gateway"):
            m = res[target]
            total = f"{m['total_p50']:.1f}" if "total_p50" in m else "-"
            out.append(f"| {name} | {target} | {m['p50']:.1f} | {m['p90']:.1f} | {m['p99']:.1f} | {total} |")
    out.append(f"\ngateway worker CPU per request: non-streaming {ns['gateway_cpu_ms_per_request']:.2f} ms, "
               f"streaming {st['gateway_cpu_ms_per_request']:.2f} ms (utime+stime from /proc)")
    out.append(f"overhead p50: non-streaming {ns['overhead_p50']:+.1f} ms, time-to-first-event "
               f"{st['overhead_p50']:+.1f} ms (stream total {st['overhead_total_p50']:+.1f} ms; "
               f"{r['requests']} requests each after {r['warmup']} warm-up)")
    return "\n".join(out)


@contextmanager
def running_gateway(fake_url: str, extra_env: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """A throw-away SQLite database set up with the operator CLI and gunicorn serving it, exactly as
    `make run` does, with both providers pointed at the fake: yields (gateway URL, API key)."""
    tmp = Path(tempfile.mkdtemp(prefix="pagegrid-bench-"))
    log_path, proc = tmp / "gunicorn.log", None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEGRID_")}
    env.update({"PAGEGRID_DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}", "PAGEGRID_SECRET_KEY": "bench",
                "PAGEGRID_ANTHROPIC_URL": fake_url, "PAGEGRID_ANTHROPIC_KEY": "sk-bench",
                "PAGEGRID_OPENAI_URL": fake_url, "PAGEGRID_OPENAI_KEY": "sk-bench-openai",
                **(extra_env or {})})
    try:
        flask_cli(env, "init-db")
        flask_cli(env, "create-user", "bench@example.com", "--password", "violet-kettle-harbor-52")
        flask_cli(env, "credit", "bench@example.com", "1000000")
        key = flask_cli(env, "create-key", "bench@example.com", "--rpm", "1000000").split()[-1]
        with socket.socket() as sock:  # a free port (tiny race window until gunicorn binds it)
            sock.bind(("127.0.0.1", 0))
            env["PAGEGRID_BIND"] = bind = f"127.0.0.1:{sock.getsockname()[1]}"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
                                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        wait_ready(proc, f"http://{bind}")
        MASTERS[f"http://{bind}"] = proc.pid
        DATABASES[f"http://{bind}"] = env["PAGEGRID_DATABASE_URL"]
        yield f"http://{bind}", key
    except Exception:
        if log_path.exists():
            print("gunicorn log (tail):", *log_path.read_text(errors="replace").splitlines()[-30:],
                  sep="\n", file=sys.stderr)
        raise
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="measured requests per target")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up requests per target")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.requests < 2 or args.warmup < 0:
        parser.error("need --requests >= 2 and --warmup >= 0")

    fake = fu.FakeUpstream()
    fake.default = answer
    upstream = fu.serve(fake)
    try:
        with running_gateway(fake.url) as (url, key):
            results = measure(fake, url, key, args.requests, args.warmup)
        print(json.dumps(results, indent=2) if args.json else report(results))
        return 0
    except (BenchError, httpx.HTTPError, ValueError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        upstream.shutdown()


if __name__ == "__main__":
    sys.exit(main())
