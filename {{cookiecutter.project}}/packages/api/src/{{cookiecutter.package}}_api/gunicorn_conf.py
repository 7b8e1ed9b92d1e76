"""gunicorn settings for the API, from the environment: `gunicorn --config python:<this module>`.

`make serve`, the systemd unit and the container all start gunicorn with this module.
"""

import os
import shutil
import tempfile

from {{ cookiecutter.package }}_core.shared import setting

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Serving is CPU work under one GIL per process: more threads only contend for it. Measured with
# `bench-serve` (2 workers, 2 cores): 4 threads 1,014 requests/s and p99 48 ms, 2 threads 1,229
# and 35 ms. The second thread keeps a worker answering while the other waits on an events-log
# fsync, a model download or a slow client. Scale with workers (processes), not threads.
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
worker_class = "gthread"
# Each worker builds its own app (and model store with its refresh thread) after the fork: a
# thread does not survive a fork, and a preloaded app would share one model store across workers.
preload_app = False
# Loading the model happens while a worker boots; leave room for a download.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# Under 30 s so that it fits in Kubernetes' default terminationGracePeriodSeconds with a preStop.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
# Heartbeat files in memory: works with a read-only root filesystem and avoids disk stalls.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# The app writes one JSON log line per request (with request id and model version).
accesslog = None
errorlog = "-"
loglevel = setting("LOG_LEVEL").lower()
proc_name = "{{ cookiecutter.project }}-api"
# No runtime control socket: it would be written under $HOME, which may be read-only.
control_socket_disable = True

_own_metrics_dir: str | None = None


def on_starting(server):
    """Metrics from every worker: prometheus-client multiprocess mode needs a shared folder."""
    global _own_metrics_dir
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        _own_metrics_dir = tempfile.mkdtemp(prefix="prometheus-", dir=base)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
