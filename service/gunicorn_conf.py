"""gunicorn settings for the contract access service (`gunicorn -c service/gunicorn_conf.py`).

A policy goes into service only after it loads and its fixtures pass, at start and on
SIGHUP. The master checks it, then freezes a copy of the files that passed
(`authz.assurance.freeze`) and points new workers at that copy. On SIGHUP gunicorn starts
new workers and lets the old ones finish what is in flight, so no request is dropped; a
policy that fails is refused, logged and counted (`authz_policy_refusals_total`), and the
new workers load the last good copy again.
"""

import gc
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

# Every process writes its metric samples here; it must be set, and emptied of an earlier
# run's samples, before prometheus_client is imported anywhere (the import below does). This
# file is read again on SIGHUP: the directory of the first read stays.
if not os.environ.get("AUTHZ_METRICS_DIR_READY"):
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="authz-metrics-")
        os.environ["AUTHZ_OWN_METRICS_DIR"] = "1"
    for _name in os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"]):
        if _name.endswith(".db"):
            os.remove(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], _name))
    os.environ["AUTHZ_METRICS_DIR_READY"] = "1"

# Imported after PROMETHEUS_MULTIPROC_DIR is set: the service package imports prometheus_client.
from service import logs as _logs

bind = os.environ.get("AUTHZ_BIND", "127.0.0.1:8080")
# Decisions are short and CPU-bound, and wait on the store only for a round trip of tens of
# microseconds: one process per core. A third process on these 2 cores only took turns with
# the others (wrk, 8 connections, medians of three runs each, same minutes: on SQLite checks
# reached 0.59 of the empty endpoint's throughput with 3 workers, 0.69-0.73 with 2, at a
# lower p99 for both; on PostgreSQL 0.61 with 3, 0.60-0.63 with 2).
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "sync"
# A worker silent this long is killed and replaced: far above any answer (p99 is in ms).
timeout = 30
# On SIGTERM and SIGHUP, old workers finish what is in flight before stopping.
graceful_timeout = 30
keepalive = 5
loglevel = os.environ.get("AUTHZ_LOG_LEVEL", "info")
# JSON lines on stderr for gunicorn and the service alike; AUTHZ_ACCESS_LOG=1 adds one line
# per answer (method, route, status, duration, caller, request id).
logconfig_dict = _logs.config(loglevel, access_log=bool(os.environ.get("AUTHZ_ACCESS_LOG")))
logger_class = _logs.GunicornLogger


def on_starting(server):
    """Serve only a policy that loads and passes its fixtures; otherwise do not start."""
    os.environ["AUTHZ_POLICY_COPIES"] = tempfile.mkdtemp(prefix="authz-policies-")
    refusal = _put_policy_into_service(server)
    if refusal is not None:
        server.log.error("refusing to start: %s", refusal)
        raise SystemExit(1)
    from authz.config import Settings

    # With AUTHZ_LOG_WRITER=process the workers (forked later, with this environment) hand
    # their decision log's journal over to a log writer of their own (authz.handover), unless
    # the store is in memory (it has no journal). By default each worker's writer thread
    # writes its entries: under batches of 100 at 8 connections on PostgreSQL, one log
    # writer at nice 10 stored 31,000-33,000 decisions/s and the workers, waiting for it,
    # answered some batches 503 (README, "The decision log").
    writer = os.environ.get("AUTHZ_LOG_WRITER", "thread") == "process"
    if writer and Settings.from_env().journal() is not None:
        os.environ["AUTHZ_LOG_HANDOVER"] = "1"


def when_ready(server):
    """Start the log writer the workers hand their journal over to, and start it again
    whenever it ends (it ends by itself when this master does)."""
    if os.environ.get("AUTHZ_LOG_HANDOVER") == "1":
        _log_writer.start(server)


def on_reload(server):
    """SIGHUP: check the policy files again; keep the last good policy if they fail."""
    refusal = _put_policy_into_service(server)
    if refusal is not None:
        from service.metrics import POLICY_REFUSALS

        POLICY_REFUSALS.inc()
        serving = os.environ.get("AUTHZ_ASSURED_POLICY_VERSION", "")
        server.log.error("policy refused on reload, still serving %s: %s", serving[:12], refusal)


def _put_policy_into_service(server):
    """Check and freeze the policy for the workers to come; the refusal's text, or None."""
    from pathlib import Path

    from authz.assurance import assure, freeze
    from authz.config import Settings
    from authz.errors import PolicyLoadError

    settings = Settings.from_env()
    try:
        policy = assure(settings.policy_dir, settings.aspire_source)
    except PolicyLoadError as exc:
        return exc.detail
    copy = freeze(policy, Path(os.environ["AUTHZ_POLICY_COPIES"]))
    os.environ["AUTHZ_SERVING_POLICY_DIR"] = str(copy)
    os.environ["AUTHZ_ASSURED_POLICY_VERSION"] = policy.version
    server.log.info("policy %s passed its fixtures; new workers serve it", policy.version[:12])
    return None


def post_worker_init(worker):
    """The app is loaded: what it built to start (modules, the policy, schemas, engines)
    lives as long as the worker, so the cyclic garbage collector stops scanning it. Every
    full collection walked all of it again; a batch of 100 checks spent 15-25% of its CPU
    there (measured in-process, gc on against gc off or frozen)."""
    gc.collect()
    gc.freeze()
    # What a request allocates is almost all freed by reference counts as it ends; a batch
    # of 100 allocates thousands of containers, and collecting the youngest generation every
    # 700 allocations (the default) cost it 3.3% more instructions than every 20,000
    # (callgrind, in-process).
    gc.set_threshold(20_000, 20, 20)
    # The decision log's writer thread builds its rows in Python, and at the default 5 ms
    # switch interval a decision waiting for the GIL waited that long behind each slice of
    # it: 0.5 ms keeps that wait short (PostgreSQL, 8 connections paced at about 1,950
    # checks/s: p99 medians 8.5 and 9.0 ms at 5 ms, 6.0 and 7.3 at 0.5 ms, alternating).
    sys.setswitchinterval(0.0005)


def worker_exit(server, worker):
    """On a graceful stop, write the decision log's buffer before the worker goes."""
    app = getattr(worker, "wsgi", None)
    runtime = getattr(app, "extensions", {}).get("authz") if app is not None else None
    if runtime is not None:
        runtime.close()


def child_exit(server, worker):
    """A worker's live gauges (its decision log backlog) leave with it."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    _log_writer.stop()
    shutil.rmtree(os.environ.get("AUTHZ_POLICY_COPIES", ""), ignore_errors=True)
    if os.environ.get("AUTHZ_OWN_METRICS_DIR"):
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


class _LogWriter:
    """The log writer process (`python -m service.log_writer`): started by the master before
    its workers, watched by a thread of the master that starts it again when it ends.

    It is spawned with `os.posix_spawn`, not `subprocess`: a worker the master forks while
    `subprocess.Popen` runs would inherit the pipe Popen reads until the child has exec'd,
    and Popen would wait for that worker to end. The master reaps it, as it reaps any child
    (`Arbiter.reap_workers`), so the thread may find no status to wait for: it watches the
    pid instead."""

    def __init__(self):
        self._pid = None
        self._stopping = threading.Event()

    def start(self, server):
        self._spawn(server)
        threading.Thread(target=self._watch, args=(server,), name="log-writer", daemon=True).start()

    def _spawn(self, server):
        self._started = time.monotonic()
        self._pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-m", "service.log_writer"],
            dict(os.environ),
            setsigmask=[signal.SIGTERM, signal.SIGINT],  # until its handlers are set
        )
        server.log.info("log writer started (pid %d)", self._pid)

    def _watch(self, server):
        while not self._stopping.wait(0.5):
            if _alive(self._pid):
                continue
            server.log.error("log writer (pid %d) ended; starting it again", self._pid)
            # One that cannot start (the store unreachable, say) is not started in a loop.
            if self._stopping.wait(max(0.0, 1.0 - (time.monotonic() - self._started))):
                return
            self._spawn(server)

    def stop(self):
        """Ask it to store what is left and end; wait for it (at most graceful_timeout)."""
        self._stopping.set()
        if self._pid is None or not _alive(self._pid):
            return
        os.kill(self._pid, signal.SIGTERM)
        deadline = time.monotonic() + graceful_timeout
        while _alive(self._pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(self._pid):
            os.kill(self._pid, signal.SIGKILL)


def _alive(pid):
    """Whether the log writer `pid` still runs (reaping it if it has ended): a child of this
    process, and not a worker that was given its pid once it had ended and been reaped."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # reaped already (by the master's reap_workers)
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return done == 0 and b"service.log_writer" in f.read()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here
        return done == 0


_log_writer = _LogWriter()
