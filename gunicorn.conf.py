"""Gunicorn settings: gevent workers so one process holds thousands of open streams."""

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

from gunicorn import glogging

bind = os.environ.get("PAGEGRID_BIND", "127.0.0.1:8000")
worker_class = "gevent"
# Open connections (streams) per worker; each idle stream costs about 50 KB.
worker_connections = int(os.environ.get("PAGEGRID_WORKER_CONNECTIONS") or 4000)
preload_app = False
# Without Redis the limit counters live in process memory, so one worker keeps them exact.
# With PAGEGRID_REDIS_URL every worker shares them and we can use all cores.
workers = int(os.environ.get("PAGEGRID_WORKERS")
              or (multiprocessing.cpu_count() * 2 + 1 if os.environ.get("PAGEGRID_REDIS_URL") else 1))
if workers > 1 and not os.environ.get("PAGEGRID_REDIS_URL"):
    raise SystemExit("PAGEGRID_WORKERS > 1 needs PAGEGRID_REDIS_URL: per-process limit counters "
                     "would multiply every key's requests-per-minute by the number of workers")
# gevent workers heartbeat from their own loop, so this only catches a stuck worker;
# streams may run far longer than this.
timeout = 120
graceful_timeout = int(os.environ.get("PAGEGRID_GRACEFUL_TIMEOUT") or 60)
keepalive = 75
# On a graceful stop, streams get until shortly before graceful_timeout to finish; then each one
# still open ends with an SSE error event and is charged for what it delivered.
DRAIN_MARGIN = 10


def post_worker_init(worker):  # noqa: ANN001, ANN201 - gunicorn's hook
    import signal

    from pagegrid.settlement import settlements

    app = worker.wsgi
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):  # noqa: ANN001, ANN202
        settlements(app).drain(max(1, graceful_timeout - DRAIN_MARGIN))
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)


# /metrics adds up every worker: prometheus_client's multiprocess mode keeps each worker's
# counters in files here. A fresh directory per master, so a restart starts the counters at 0
# (Prometheus handles counter resets); set PROMETHEUS_MULTIPROC_DIR to choose the place.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _METRICS_DIR, _OWN_METRICS_DIR = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]), False
    _METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for _stale in _METRICS_DIR.glob("*.db"):
        _stale.unlink()
else:
    _METRICS_DIR, _OWN_METRICS_DIR = Path(tempfile.mkdtemp(prefix="pagegrid-metrics-")), True
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_METRICS_DIR)


def child_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn's hook
    # prometheus_client's mark_process_dead, without importing anything into the master
    # (the workers import after gevent has patched the stdlib): a dead worker's live gauges
    # go, its counters stay in the sums.
    for path in _METRICS_DIR.glob(f"gauge_live*_{worker.pid}.db"):
        path.unlink(missing_ok=True)


def on_exit(server):  # noqa: ANN001, ANN201 - gunicorn's hook
    if _OWN_METRICS_DIR:
        shutil.rmtree(_METRICS_DIR, ignore_errors=True)


accesslog = "-"
# No query strings or headers in the access log: never log keys.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'


class _AccessLog(glogging.Logger):
    """gunicorn's logger, without the access line of an API request: PageGrid logged that one
    itself (request id, key, model, tokens, cost; pagegrid/requestlog.py marks its environ)."""

    def access(self, resp, req, environ, request_time):  # noqa: ANN001, ANN201 - gunicorn's signature
        if not environ.get("pagegrid.request_logged"):
            super().access(resp, req, environ, request_time)


logger_class = _AccessLog
control_socket_disable = True  # no shared ~/.gunicorn socket between instances on one host
