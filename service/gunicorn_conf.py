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


def on_starting(server):
    """Serve only a policy that loads and passes its fixtures; otherwise do not start."""
    from authz.assurance import assure
    from authz.config import Settings
    from authz.errors import PolicyLoadError

    settings = Settings.from_env()
    try:
        policy = assure(settings.policy_dir, settings.aspire_source)
    except PolicyLoadError as exc:
        server.log.error("refusing to start: %s", exc.detail)
        raise SystemExit(1) from None
    server.log.info("policy %s passed its fixtures", policy.version[:12])
    # Workers load the files again: they must find this very version.
    os.environ["AUTHZ_ASSURED_POLICY_VERSION"] = policy.version


def worker_exit(server, worker):
    """On a graceful stop, write the decision log's buffer before the worker goes."""
    app = getattr(worker, "wsgi", None)
    runtime = getattr(app, "extensions", {}).get("authz") if app is not None else None
    if runtime is not None:
        runtime.close()
