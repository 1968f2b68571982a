"""gunicorn settings for the contract access service (`gunicorn -c service/gunicorn_conf.py`)."""

import multiprocessing
import os

bind = os.environ.get("AUTHZ_BIND", "127.0.0.1:8080")
# Decisions are short and CPU-bound (Polar); one process per core, plus one to cover I/O waits.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() + 1))
worker_class = "sync"
timeout = 30
# On SIGTERM, finish what is in flight before stopping.
graceful_timeout = 30
keepalive = 5
accesslog = os.environ.get("AUTHZ_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("AUTHZ_LOG_LEVEL", "info")


def worker_exit(server, worker):
    """On a graceful stop, write the decision log's buffer before the worker goes."""
    app = getattr(worker, "wsgi", None)
    runtime = getattr(app, "extensions", {}).get("authz") if app is not None else None
    if runtime is not None:
        runtime.close()
