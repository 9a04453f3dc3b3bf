"""What PageGrid costs on top of the provider: one table from one run (``make bench``).

A fake provider (``answer`` below: Anthropic Messages, Chat Completions and Responses, instant
answers) is served by a child process of its own (gevent, so its work never shares this
process's interpreter), a throw-away SQLite database is set up with the operator CLI
(``init-db``, ``create-user``, ``credit``, ``create-key``) and the gateway is served exactly as
``make run`` does (``gunicorn -c gunicorn.conf.py wsgi:app``: one gevent worker, no Redis).
Then, against the fake directly and through the gateway:

* **worker CPU per request**: utime+stime of the gunicorn worker from ``/proc/<pid>/stat``
  over sequential requests on one keep-alive client, for the passthrough path and each
  translated one (Chat -> Claude, Responses -> Claude, Messages -> GPT), non-streaming and
  streaming; ``--runs`` runs each, the median reported. /proc counts only the worker's own
  CPU, so other load on the machine disturbs it less than wall-clock timings;
* **added latency** p50/p99 at c=1 (direct and gateway requests alternating, so drift hits both
  alike) and at c=50 (50 clients at once, direct then gateway): gateway minus direct;
* **max requests/s** at c=100 for a few seconds;
* with ``--held N``: N streams opened over ``--held-seconds`` that the fake keeps open, how
  many complete, their time to first event and the worker's resident memory.

Servers and clients share the machine: compare runs on the same box. Inherited ``PAGEGRID_*``
variables are dropped so runs are comparable.

Run: ``make bench``, or ``.venv/bin/python bench/overhead.py [--runs N] [--held N] [--json]``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and "--fake-upstream" in sys.argv:  # the child serving the fake
    from gevent import monkey

    monkey.patch_all()

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
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
from tests.serving import Gunicorn  # noqa: E402
from tests.serving import clean_env  # noqa: E402
from tests.serving import free_port  # noqa: E402

BIN = ROOT / ".venv" / "bin"
MODEL, GPT = "claude-haiku-4-5", "gpt-5.4"
TEXT = "word " * 20
# path -> (JSON reply, SSE chunks), built once so the fake does no work per request
REPLIES: dict[str, tuple[str, list[bytes]]] = {
    "/v1/messages": (json.dumps(fu.message(TEXT, model=MODEL)),
                     [fu.sse(e) for e in fu.stream_events(fu.message(TEXT, model=MODEL))]),
    "/v1/chat/completions": (json.dumps(fu.chat_completion(TEXT)), fu.chat_chunks(fu.chat_completion(TEXT))),
    "/v1/responses": (json.dumps(fu.openai_response(TEXT)),
                      fu.openai_response_events(fu.openai_response(TEXT))),
}
END = {"/v1/messages": b"event: message_stop", "/v1/chat/completions": b"data: [DONE]",
       "/v1/responses": b"event: response.completed"}
HOLD_TAG = "bench-hold-"  # metadata.user_id "bench-hold-<seconds>": the fake holds the stream open

MESSAGES = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}
# The measured paths: name -> (client path, body); each runs non-streaming and streaming.
PATHS: dict[str, tuple[str, dict]] = {
    "Messages -> Claude (passthrough)": ("/v1/messages", MESSAGES),
    "Chat -> Claude": ("/v1/chat/completions", {"model": MODEL, "max_tokens": 64,
                                                "messages": [{"role": "user", "content": "hello"}]}),
    "Responses -> Claude": ("/v1/responses", {"model": MODEL, "max_output_tokens": 64, "input": "hello"}),
    # The same without keeping the response for previous_response_id (one write fewer).
    "Responses -> Claude, store: false": ("/v1/responses", {"model": MODEL, "max_output_tokens": 64,
                                                           "input": "hello", "store": False}),
    "Messages -> GPT": ("/v1/messages", {**MESSAGES, "model": GPT}),
}

# The gunicorn master and the database behind each gateway URL running_gateway yielded; the
# process serving each fake_upstream URL.
MASTERS: dict[str, int] = {}
FAKES: dict[str, int] = {}
DATABASES: dict[str, str] = {}


def worker_pids(gateway_url: str) -> list[int]:
    master = MASTERS[gateway_url]
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by the processes ``pids`` (from /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def worker_cpu_seconds(gateway_url: str) -> float:
    """User + system CPU seconds used so far by the gunicorn workers serving ``gateway_url``."""
    return cpu_seconds(worker_pids(gateway_url))


def worker_rss_mb(gateway_url: str) -> float:
    """Resident memory of the gateway's workers, MB."""
    total = 0
    for pid in worker_pids(gateway_url):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


class BenchError(RuntimeError):
    """The setup or a measured request failed."""


def answer(req: Request) -> Response:
    """The fake's default: the reply for the path, or its SSE stream (one write per event, no
    delays; held open after the first event when the body's metadata asks for it)."""
    if req.method != "POST" or req.path not in REPLIES:
        return Response("not found", status=404)
    try:
        body = json.loads(req.get_data() or b"{}")
    except ValueError:
        body = {}
    reply, chunks = REPLIES[req.path]
    if not (isinstance(body, dict) and body.get("stream") is True):
        return Response(reply, mimetype="application/json")
    tag = str((body.get("metadata") or {}).get("user_id") or "")
    if not tag.startswith(HOLD_TAG):
        return Response(iter(chunks), mimetype="text/event-stream")
    hold = float(tag.removeprefix(HOLD_TAG))

    def held() -> Iterator[bytes]:
        yield chunks[0]
        time.sleep(hold)  # gevent's sleep in the fake's process
        yield from chunks[1:]

    return Response(held(), mimetype="text/event-stream")


def serve_fake(port: int) -> None:
    """The child process: ``answer`` on 127.0.0.1:``port`` with gevent (after monkey.patch_all)."""
    import socket

    from gevent.pywsgi import WSGIHandler
    from gevent.pywsgi import WSGIServer

    class NoDelay(WSGIHandler):
        def handle(self) -> None:
            # headers and body go out as separate writes: without this, Nagle waits for the
            # client's delayed ACK (40 ms) before sending the body
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().handle()

    WSGIServer(("127.0.0.1", port), lambda environ, start: answer(Request(environ))(environ, start),
               handler_class=NoDelay, log=None, error_log=None).serve_forever()


@contextmanager
def fake_upstream() -> Iterator[str]:
    """The fake provider in a child process; yields its URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--fake-upstream", str(port)], cwd=ROOT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    FAKES[url] = proc.pid
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.post(url + "/v1/messages", content=b"{}", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("the fake upstream did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def flask_cli(env: dict[str, str], *args: str) -> str:
    """Run ``flask --app app ARGS`` as an operator would; return its stdout."""
    done = subprocess.run([str(BIN / "flask"), "--app", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise BenchError(f"flask {args[0]} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def _headers(key: str) -> dict[str, str]:
    return {"x-api-key": key, "authorization": f"Bearer {key}", "anthropic-version": "2023-06-01",
            "content-type": "application/json"}


def _check(status: int, seen: bytes, path: str, stream: bool, where: str) -> None:
    if status != 200:
        raise BenchError(f"{where} answered {status}: {seen[:500]!r}")
    if stream and END[path] not in seen:
        raise BenchError(f"{where} stream ended without {END[path]!r}: {seen[-300:]!r}")
    if not stream and not seen.startswith(b"{"):
        raise BenchError(f"{where} answered 200 without a JSON body: {seen[:300]!r}")


def timed(client: httpx.Client, url: str, headers: dict[str, str], body: dict, where: str,
          path: str = "/v1/messages") -> tuple[float, float]:
    """(latency to the first SSE line, or to the whole JSON reply; latency to the end of the body)."""
    stream, content = body.get("stream", False), json.dumps(body).encode()
    first: float | None = None
    seen = b""
    start = time.perf_counter()
    with client.stream("POST", url + path, content=content, headers=headers) as resp:
        for chunk in resp.iter_raw():
            seen += chunk
            if stream and first is None and any(line.startswith((b"event:", b"data:"))
                                                for line in seen.split(b"\n")[:-1]):
                first = time.perf_counter() - start
    total = time.perf_counter() - start
    _check(resp.status_code, seen, path, stream, where)
    return (first if stream and first is not None else total), total


def ms(samples: list[float], percents: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {f"p{p}": round(q[p - 1] * 1000, 3) for p in percents}


def measure(fake_url: str, gateway_url: str, key: str, n: int, warmup: int) -> dict:
    """c=1, /v1/messages: alternate direct/gateway requests so drift (CPU, caches, SQLite growth)
    hits both alike; p50/p90/p99 of each and the p50 overhead."""
    headers = _headers(key)
    targets = {"direct": (fake_url, "fake upstream"), "gateway": (gateway_url, "gateway")}
    results: dict = {"requests": n, "warmup": warmup}
    with httpx.Client(timeout=30.0) as client:
        for label, body in (("non_streaming", MESSAGES), ("streaming", {**MESSAGES, "stream": True})):
            print(f"c=1 {label}: {warmup} warm-up + {n} measured requests per target", file=sys.stderr)
            got: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
            for i in range(warmup + n):
                for name, (url, where) in targets.items():
                    sample = timed(client, url, headers, body, where)
                    if i >= warmup:
                        got[name].append(sample)
            res: dict = {name: ms([s[0] for s in got[name]]) for name in targets}
            res["overhead_p50"] = round(res["gateway"]["p50"] - res["direct"]["p50"], 3)
            res["overhead_p99"] = round(res["gateway"]["p99"] - res["direct"]["p99"], 3)
            results[label] = res
    return results


def cpu_per_request(fake_url: str, gateway_url: str, key: str, n: int,
                    runs: int) -> dict[str, tuple[float, float]]:
    """Median over ``runs`` of the CPU ms per request of the fake (serving the gateway's calls)
    and of the gateway's worker, for each path and mode."""
    headers = _headers(key)
    out: dict[str, tuple[float, float]] = {}
    with httpx.Client(timeout=30.0) as client:
        for name, (path, body) in PATHS.items():
            for stream in (False, True):
                label = f"{name}, {'stream' if stream else 'non-stream'}"
                sent = {**body, "stream": stream}
                print(f"cpu {label}: {runs} runs of {n}", file=sys.stderr)
                for _ in range(max(5, n // 10)):  # warm-up: imports, caches, connections
                    timed(client, gateway_url, headers, sent, label, path)
                fake, worker = [], []
                for _ in range(runs):
                    fake_before, before = cpu_seconds([FAKES[fake_url]]), worker_cpu_seconds(gateway_url)
                    for _ in range(n):
                        timed(client, gateway_url, headers, sent, label, path)
                    worker.append((worker_cpu_seconds(gateway_url) - before) * 1000 / n)
                    fake.append((cpu_seconds([FAKES[fake_url]]) - fake_before) * 1000 / n)
                out[label] = (round(statistics.median(fake), 2), round(statistics.median(worker), 2))
    return out


async def _load(url: str, key: str, concurrency: int, *, per_client: int = 0,
                seconds: float = 0.0) -> tuple[list[float], float]:
    """``concurrency`` clients each sending non-streaming /v1/messages one after another,
    ``per_client`` requests each or for ``seconds``; (latencies, requests/s)."""
    headers, content = _headers(key), json.dumps(MESSAGES).encode()
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def one_client() -> None:
            sent = 0
            while (sent < per_client) if per_client else (time.perf_counter() < deadline):
                t0 = time.perf_counter()
                resp = await client.post(url + "/v1/messages", content=content, headers=headers)
                _check(resp.status_code, resp.content, "/v1/messages", False, url)
                latencies.append(time.perf_counter() - t0)
                sent += 1

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return latencies, len(latencies) / elapsed


def concurrent(fake_url: str, gateway_url: str, key: str, per_client: int, seconds: float) -> dict:
    """Added latency at c=50 and requests/s at c=100, direct and through the gateway."""
    out: dict = {}
    for name, url in (("direct", fake_url), ("gateway", gateway_url)):
        print(f"c=50 and c=100 against {name}", file=sys.stderr)
        asyncio.run(_load(url, key, 50, per_client=2))  # warm-up: 50 connections open
        latencies, _ = asyncio.run(_load(url, key, 50, per_client=per_client))
        _, rate = asyncio.run(_load(url, key, 100, seconds=seconds))
        out[name] = {"c50": ms(latencies, (50, 99)), "c100_rps": round(rate)}
    return out


async def _held(url: str, key: str, count: int, over: float, hold: float) -> dict:
    """Open ``count`` streams evenly over ``over`` seconds, each held open ``hold`` s by the fake.

    Each stream is one HTTP/1.1 request on a new connection, written and read with asyncio's
    streams rather than an HTTP client library: thousands of streams from one Python process
    would otherwise cost the client as much CPU as the gateway, on the same machine, and the
    client's own queueing would show up as time to first event."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    content = json.dumps({**MESSAGES, "stream": True, "metadata": {"user_id": f"{HOLD_TAG}{hold}"}}).encode()
    head = "".join(f"{name}: {value}\r\n" for name, value in _headers(key).items())
    wire = (f"POST /v1/messages HTTP/1.1\r\nHost: {host}:{port}\r\n{head}Content-Length: {len(content)}\r\n"
            "Connection: close\r\n\r\n").encode() + content
    first: list[float] = []
    failures: list[str] = []

    async def one(delay: float) -> None:
        await asyncio.sleep(delay)
        t0, seen = time.perf_counter(), b""
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                writer.write(wire)
                while chunk := await asyncio.wait_for(reader.read(65536), hold + 60):
                    if not seen:
                        first.append(time.perf_counter() - t0)
                    seen += chunk
            finally:
                writer.close()
            status_line, _, rest = seen.partition(b"\r\n")
            status = int(status_line.split()[1]) if status_line.startswith(b"HTTP/1.1 ") else 0
            _check(status, rest.partition(b"\r\n\r\n")[2], "/v1/messages", True, "held stream")
        except (BenchError, OSError, TimeoutError, ValueError) as exc:
            failures.append(str(exc)[:200])

    await asyncio.gather(*(one(i * over / count) for i in range(count)))
    return {"count": count, "completed": count - len(failures), "failures": failures[:3],
            "ttfe": ms(first, (50, 99)) if len(first) > 1 else {"p50": float("nan"), "p99": float("nan")}}


def held_streams(gateway_url: str, key: str, count: int, over: float, hold: float) -> dict:
    """The worker's resident memory before and at its peak while ``count`` streams are held."""
    print(f"held streams: {count} over {over:g} s, each held {hold:g} s", file=sys.stderr)
    rss_before, peak = worker_rss_mb(gateway_url), 0.0
    cpu_before, started = worker_cpu_seconds(gateway_url), time.monotonic()

    async def run() -> dict:
        nonlocal peak
        task = asyncio.ensure_future(_held(gateway_url, key, count, over, hold))
        while not task.done():
            peak = max(peak, worker_rss_mb(gateway_url))
            await asyncio.sleep(0.5)
        return task.result()

    result = asyncio.run(run())
    return {**result, "rss_before_mb": round(rss_before), "rss_peak_mb": round(peak),
            "workers": len(worker_pids(gateway_url)), "seconds": round(time.monotonic() - started, 1),
            "worker_cpu_seconds": round(worker_cpu_seconds(gateway_url) - cpu_before, 1)}


# Where a profile's samples are counted: the first frame of the stack inside one of these.
AREAS = ("sqlalchemy", "flask_limiter", "limits", "requests", "urllib3", "werkzeug", "flask",
         "gunicorn", "gevent", "prometheus_client", "json", "pagegrid", "logging")


def profile_summary(raw: Path, top: int = 15) -> str:
    """py-spy's collapsed stacks summarised: samples by library (inclusive: the outermost frame
    in it) and the functions with the most samples of their own."""
    own: dict[str, int] = {}
    areas: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count, frames = int(count_text), stack.split(";")
        total += count
        leaf = frames[-1]
        own[leaf] = own.get(leaf, 0) + count
        seen = set()
        for frame in frames:
            path = frame.partition("(")[2]
            area = next((a for a in AREAS if f"/{a}/" in path or path.startswith(f"{a}/")), None)
            if area and area not in seen:
                seen.add(area)
                areas[area] = areas.get(area, 0) + count
    if not total:
        return "(no samples)"
    lines = [f"{total} samples; by library (inclusive, a stack counts once per library):"]
    lines += [f"  {100 * n / total:5.1f} %  {a}" for a, n in sorted(areas.items(), key=lambda x: -x[1])]
    lines.append(f"top {top} functions by own samples:")
    lines += [f"  {100 * n / total:5.1f} %  {f}" for f, n in sorted(own.items(), key=lambda x: -x[1])[:top]]
    return "\n".join(lines)


@contextmanager
def profiled(gateway_url: str, out: Path | None) -> Iterator[None]:
    """Sample the gateway's worker with py-spy (``--profile``) while the block runs."""
    if out is None:
        yield
        return
    spy = subprocess.Popen([str(BIN / "py-spy"), "record", "--pid", str(worker_pids(gateway_url)[0]),
                            "--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        yield
    finally:
        spy.send_signal(2)  # py-spy writes its output on SIGINT
        _, err = spy.communicate(timeout=60)
        if not out.exists():
            raise BenchError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")


@contextmanager
def database(server_url: str | None, folder: Path) -> Iterator[str]:
    """A throw-away database: SQLite in ``folder``, or a new PostgreSQL database on the server
    at ``server_url`` (dropped afterwards)."""
    if server_url is None:
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    import psycopg  # only for --postgres

    name = f"pagegrid_bench_{os.getpid()}"
    plain = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield plain.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(plain, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def running_gateway(fake_url: str, extra_env: dict[str, str] | None = None,
                    postgres: str | None = None) -> Iterator[tuple[str, str]]:
    """A throw-away database (SQLite, or PostgreSQL with ``postgres``) set up with the operator
    CLI and gunicorn serving it, exactly as `make run` does, with both providers pointed at the
    fake: yields (gateway URL, API key)."""
    tmp = Path(tempfile.mkdtemp(prefix="pagegrid-bench-"))
    try:
        with database(postgres, tmp) as database_url:
            env = clean_env({"PAGEGRID_DATABASE_URL": database_url, "PAGEGRID_SECRET_KEY": "bench",
                             "PAGEGRID_ANTHROPIC_URL": fake_url, "PAGEGRID_ANTHROPIC_KEY": "sk-bench",
                             "PAGEGRID_OPENAI_URL": fake_url, "PAGEGRID_OPENAI_KEY": "sk-bench-openai",
                             **(extra_env or {})})
            server = Gunicorn(env, tmp / "gunicorn.log")
            try:
                flask_cli(env, "init-db")
                flask_cli(env, "create-user", "bench@example.com", "--password", "violet-kettle-harbor-52")
                flask_cli(env, "credit", "bench@example.com", "1000000")
                key = flask_cli(env, "create-key", "bench@example.com", "--rpm", "1000000",
                                "--concurrency", "100000").split()[-1]
                with server:
                    MASTERS[server.url] = server.proc.pid
                    DATABASES[server.url] = database_url
                    yield server.url, key
            except Exception:
                if server.log_path.exists():
                    print("gunicorn log (tail):", *server.log_text().splitlines()[-30:], sep="\n",
                          file=sys.stderr)
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def serving_env(args: argparse.Namespace) -> dict[str, str]:
    """The gateway's environment for ``--redis`` and ``--workers``."""
    env: dict[str, str] = {}
    if args.redis:
        tag = f"bench{os.getpid()}"
        env.update(PAGEGRID_REDIS_URL=args.redis, PAGEGRID_RATELIMIT_PREFIX=tag,
                   PAGEGRID_REDIS_PREFIX=f"{tag}:")
    if args.workers:
        env["PAGEGRID_WORKERS"] = str(args.workers)
    return env


def report(r: dict) -> str:
    c1, conc, cpu = r["c1"], r["concurrent"], r["cpu_ms"]
    d, g = conc["direct"], conc["gateway"]
    out = ["| measurement | direct | PageGrid | added |", "|---|---:|---:|---:|"]
    out += [f"| CPU ms/request: {label} | {fake:.2f} | {worker:.2f} | {worker:.2f} |"
            for label, (fake, worker) in cpu.items()]
    for label, res in (("non-stream", c1["non_streaming"]), ("stream, first event", c1["streaming"])):
        for p in ("p50", "p99"):
            out.append(f"| latency {p} ms, c=1, {label} | {res['direct'][p]:.1f} | {res['gateway'][p]:.1f} "
                       f"| {res['gateway'][p] - res['direct'][p]:+.1f} |")
    for p in ("p50", "p99"):
        out.append(f"| latency {p} ms, c=50, non-stream | {d['c50'][p]:.1f} | {g['c50'][p]:.1f} "
                   f"| {g['c50'][p] - d['c50'][p]:+.1f} |")
    out.append(f"| max requests/s, c=100, non-stream | {d['c100_rps']} | {g['c100_rps']} | - |")
    if "held" in r:
        h = r["held"]
        out.append(f"| held streams: completed of opened | - | {h['completed']} of {h['count']} | - |")
        out.append(f"| held streams: first event p50 / p99 ms | - | {h['ttfe']['p50']:.0f} / "
                   f"{h['ttfe']['p99']:.0f} | - |")
        out.append(f"| held streams: worker RSS MB, before / peak | - | {h['rss_before_mb']} / "
                   f"{h['rss_peak_mb']} | - |")
    out.append(f"\nCPU: median of {r['runs']} runs of {r['cpu_requests']} sequential requests per path, "
               f"utime+stime (/proc) of the fake's process and of the gunicorn worker; "
               f"c=1: {c1['requests']} requests per target; c=50: "
               f"{r['per_client']} requests per client; c=100: {r['seconds']:g} s; "
               f"{os.cpu_count()} CPUs, load average {r['load']} at the start.")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="CPU: runs per path (the median is reported)")
    parser.add_argument("--cpu-requests", type=int, default=100, help="CPU: sequential requests per run")
    parser.add_argument("--requests", type=int, default=200, help="c=1: measured requests per target")
    parser.add_argument("--warmup", type=int, default=20, help="c=1: warm-up requests per target")
    parser.add_argument("--per-client", type=int, default=20, help="c=50: requests per client")
    parser.add_argument("--seconds", type=float, default=5.0, help="c=100: seconds of load")
    parser.add_argument("--held", type=int, default=0, help="held streams to open (0: skip)")
    parser.add_argument("--held-seconds", type=float, default=10.0, help="held streams: opened over this")
    parser.add_argument("--hold", type=float, default=5.0, help="held streams: each held open this long")
    parser.add_argument("--only-cpu", action="store_true", help="only the CPU rows (quick before/after)")
    parser.add_argument("--only-held", action="store_true", help="only the held streams (--held N)")
    parser.add_argument("--postgres", metavar="URL", help="serve from a new database on this PostgreSQL "
                        "server (dropped afterwards) instead of SQLite")
    parser.add_argument("--redis", metavar="URL", help="limits in this Redis (own key prefixes), which "
                        "lets gunicorn run several workers")
    parser.add_argument("--workers", type=int, help="gunicorn workers (more than 1 needs --redis)")
    parser.add_argument("--profile", type=Path, help="also sample the worker with py-spy over one more "
                        "CPU run (collapsed stacks written here) and print its top entries")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--fake-upstream", type=int, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.fake_upstream:
        serve_fake(args.fake_upstream)
        return 0
    if min(args.runs, args.cpu_requests, args.requests, args.per_client) < 2 or args.warmup < 0:
        parser.error("need --runs, --cpu-requests, --requests, --per-client >= 2 and --warmup >= 0")

    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    try:
        with fake_upstream() as fake_url, \
                running_gateway(fake_url, serving_env(args), args.postgres) as (url, key):
            if args.only_held:
                print(json.dumps(held_streams(url, key, args.held, args.held_seconds, args.hold), indent=2))
                return 0
            results: dict = {"runs": args.runs, "cpu_requests": args.cpu_requests, "load": load,
                             "per_client": args.per_client, "seconds": args.seconds,
                             "cpu_ms": cpu_per_request(fake_url, url, key, args.cpu_requests, args.runs)}
            if args.profile:  # a run of its own, so the sampler's cost stays out of the numbers
                with profiled(url, args.profile):
                    cpu_per_request(fake_url, url, key, args.cpu_requests, 1)
                results["profile"] = profile_summary(args.profile)
            if args.only_cpu:
                print(json.dumps(results["cpu_ms"], indent=2))
                print(results.get("profile", ""))
                return 0
            results["c1"] = measure(fake_url, url, key, args.requests, args.warmup)
            results["concurrent"] = concurrent(fake_url, url, key, args.per_client, args.seconds)
            if args.held:
                results["held"] = held_streams(url, key, args.held, args.held_seconds, args.hold)
        print(json.dumps(results, indent=2) if args.json else report(results))
        if "profile" in results and not args.json:
            print(f"\nprofile of the worker over one CPU run (py-spy, {args.profile}):\n{results['profile']}")
        return 0
    except (BenchError, httpx.HTTPError, ValueError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
