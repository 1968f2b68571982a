"""`python -m service.log_writer`: the decision log's writer as a process (`authz.log_writer`),
logging JSON lines on stderr as the workers do. The gunicorn master runs it.

SIGTERM and SIGINT ask it to store what is left and end. The master starts it with both
blocked, so that one sent while it imports (a second or two) waits for their handlers.
"""

from __future__ import annotations

import logging.config
import os
import signal
import threading

from authz import log_writer
from authz.config import Settings
from service import logs, metrics

SIGNALS = {signal.SIGTERM, signal.SIGINT}


def main() -> None:
    logging.config.dictConfig(logs.config(os.environ.get("AUTHZ_LOG_LEVEL", "info")))
    stop = threading.Event()
    for signum in SIGNALS:
        signal.signal(signum, lambda *_: stop.set())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    # Its failed writes count in the workers' metric (PROMETHEUS_MULTIPROC_DIR, set by the
    # master, is this process's too).
    log_writer.run(
        Settings.from_env(), log_writer.WriterSettings.from_env(), stop, metrics.LogMetrics()
    )


if __name__ == "__main__":
    main()
