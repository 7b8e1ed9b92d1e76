"""gunicorn settings for the API, from the environment: `gunicorn --config python:<this module>`.

`make serve`, the systemd unit and the container all start gunicorn with this module.
"""

import importlib
import os
import shutil
import tempfile

from {{ cookiecutter.package }}_core.shared import configure_logging, setting

# Loopback unless HOST says otherwise: `make serve` on a laptop is not reachable from the network.
# The container image, the Kubernetes manifests and the systemd unit set HOST (0.0.0.0, or the
# address nginx proxies to) explicitly.
bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Serving is CPU work under one GIL per process: more threads only contend for it. Measured with
# `bench-serve` (2 workers, 2 cores): 4 threads 1,014 requests/s and p99 48 ms, 2 threads 1,229
# and 35 ms. The second thread keeps a worker answering while the other waits on an events-log
# fsync, a model download or a slow client. Scale with workers (processes), not threads.
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
# gthread, but a thread gets a connection only once its whole request has arrived; a request
# not complete GUNICORN_READ_TIMEOUT (10) s after its first byte gets 408. gunicorn 26 has no
# header or body read timeout for gthread, and its `timeout` never fires for a thread stuck
# reading a slow client: see the worker's docstring.
worker_class = "{{ cookiecutter.package }}_api.gunicorn_worker.BufferingThreadWorker"
# Each worker builds its own app (and model store with its refresh thread) after the fork: a
# thread does not survive a fork, and a preloaded app would share one model store across workers.
# The master only imports modules (`on_starting`): the app's, and the MLflow client for a
# models:/ MODEL_URI, so that the workers share them instead of each importing them at boot.
preload_app = False
# Loading the model happens while a worker boots; leave room for a download.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# Under 30 s so that it fits in Kubernetes' default terminationGracePeriodSeconds with a preStop.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
# gunicorn's parser limits, refused in JSON by the worker (431 headers, 400 request line). The
# request line gets gunicorn's maximum, 8190 bytes (default 4094), so that the query strings the
# app accepts (up to MAX_IDS_PER_REQUEST ids in `exclude`) reach the app, which answers its
# own limits in JSON; POST /v1/recommendations takes longer lists in a body.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# Heartbeat files in memory: works with a read-only root filesystem (gunicorn's default is the
# system temp folder) and avoids disk stalls. `--worker-tmp-dir DIR` on the command line or in
# GUNICORN_CMD_ARGS overrides it: gunicorn reads both after this file.
# (bandit B108 reads /dev/shm as a shared temp file; these are gunicorn's own heartbeats.)
SHM = "/dev/shm"  # nosec B108
worker_tmp_dir = SHM if os.path.isdir(SHM) else None
# The app writes one JSON log line per request (with request id and model version).
accesslog = None
errorlog = "-"
loglevel = setting("LOG_LEVEL").lower()
proc_name = "{{ cookiecutter.project }}-api"
# No runtime control socket: it would be written under $HOME, which may be read-only.
control_socket_disable = True

# Folders every worker of this server shares, made by the master unless the environment names
# one: prometheus-client's multiprocess mode (metrics from every worker) and the reload signal
# (POST /v1/admin/reload reaches every worker).
SHARED_DIRS = {"PROMETHEUS_MULTIPROC_DIR": "prometheus-", "RELOAD_SIGNAL_DIR": "reload-"}
_own_dirs: list[str] = []


def on_starting(server):
    base = SHM if os.path.isdir(SHM) else None
    for variable, prefix in SHARED_DIRS.items():
        if not os.environ.get(variable):
            os.environ[variable] = tempfile.mkdtemp(prefix=prefix, dir=base)
            _own_dirs.append(os.environ[variable])
    preimport()


def preimport():
    """Import, in the master, what every worker imports at boot: the app's modules (after the
    shared folders are set: prometheus-client reads its folder on import) and what loading
    MODEL_URI needs. No app, thread or connection is made here: each worker still creates its
    own app after the fork."""
    from {{ cookiecutter.package }}_core import model_source, shared

    configure_logging(model_source.__name__, loglevel)
    importlib.import_module("{{ cookiecutter.package }}_api.app")
    model_source.prepare(shared.model_uri(), shared.tracking_uri())


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    for directory in _own_dirs:
        shutil.rmtree(directory, ignore_errors=True)
