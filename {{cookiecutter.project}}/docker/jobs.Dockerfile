# The jobs image: the pipeline (`-train pipeline`, `retrain`), the registry actions, the batch
# export, the drift job, the load test (locust) and the MLflow tracking server
# (`mlflow server --app-name basic-auth`, PostgreSQL). The DVC project (dvc.yaml, params.yaml,
# .dvc/, loadtest/) is in /app/project; jobs copy it to a writable workspace and run there.
# Build from the project root:  make image-jobs  (docker or buildah).
# checkov:skip=CKV_DOCKER_2:no HEALTHCHECK: the jobs exit when done, and the MLflow server this image also runs is probed by its orchestrator on /health
# checkov:skip=CKV_DOCKER_7:every FROM is this BASE_IMAGE argument, a pinned python:X.Y-slim tag; checkov does not resolve build arguments
ARG BASE_IMAGE=python:{{ cookiecutter.python_version }}-slim

# --- build: uv installs the locked dependencies into /app/.venv ---------------------------------
FROM ${BASE_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# uv lives in the build stage only (the version the Makefile pins).
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src
# The lock and every workspace member's metadata first: this layer holds the third-party
# dependencies and is rebuilt only when they change, not on every code change.
COPY pyproject.toml uv.lock ./
COPY packages/api/pyproject.toml packages/api/
COPY packages/batch/pyproject.toml packages/batch/
COPY packages/core/pyproject.toml packages/core/
COPY packages/registry/pyproject.toml packages/registry/
COPY packages/training/pyproject.toml packages/training/
COPY monitoring/pyproject.toml monitoring/
# The deployables the jobs run, the MLflow server extra of training, then locust (the root's
# `loadtest` group, added to the same environment).
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --no-install-workspace --extra server \
        --package {{ cookiecutter.project }}-training \
        --package {{ cookiecutter.project }}-registry \
        --package {{ cookiecutter.project }}-batch \
        --package {{ cookiecutter.project }}-monitoring \
    && /opt/uv/bin/uv sync --frozen --inexact --only-group loadtest
COPY packages/core/src packages/core/src
COPY packages/training/src packages/training/src
COPY packages/registry/src packages/registry/src
COPY packages/batch/src packages/batch/src
COPY monitoring/src monitoring/src
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --inexact --extra server \
        --package {{ cookiecutter.project }}-training \
        --package {{ cookiecutter.project }}-registry \
        --package {{ cookiecutter.project }}-batch \
        --package {{ cookiecutter.project }}-monitoring
# Bytecode for what the jobs import, written by importing it once: the venv is read-only at run
# time, and compiling everything (UV_COMPILE_BYTECODE) would add 335 MB, mostly for modules no
# job loads. locust last, alone: importing it monkey-patches the interpreter (gevent).
RUN /app/.venv/bin/python -c "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]" \
        {{ cookiecutter.package }}_training.cli {{ cookiecutter.package }}_training.data_stages \
        {{ cookiecutter.package }}_training.model_stages {{ cookiecutter.package }}_training.register \
        {{ cookiecutter.package }}_training.gate {{ cookiecutter.package }}_training.synthetic \
        {{ cookiecutter.package }}_training.pipeline {{ cookiecutter.package }}_training.retrain \
        {{ cookiecutter.package }}_training.pyfunc {{ cookiecutter.package }}_registry.cli \
        {{ cookiecutter.package }}_registry.actions {{ cookiecutter.package }}_registry.audit \
        {{ cookiecutter.package }}_batch.cli {{ cookiecutter.package }}_batch.export \
        {{ cookiecutter.package }}_monitoring.cli {{ cookiecutter.package }}_monitoring.drift \
        evidently evidently.presets dvc.cli dvc.repo mlflow mlflow.pyfunc mlflow.server \
        mlflow.server.auth psycopg2 \
    && /app/.venv/bin/python -c "import locust.main"
# The DVC project without git (`dvc init --no-scm`): an image has no .git; lineage reads the
# commit from GIT_COMMIT instead.
WORKDIR /app/project
COPY dvc.yaml params.yaml params.tuned.yaml .dvcignore ./
COPY .dvc/config .dvc/config
COPY loadtest loadtest
RUN /app/.venv/bin/dvc config --project core.no_scm true

# --- runtime: the venv, the DVC project, a non-root user --------------------------------------
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG GIT_COMMIT=unknown
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="{{ cookiecutter.project }}-jobs" \
      org.opencontainers.image.description="Pipeline, retrain, batch export, drift, load test and MLflow server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.source="${SOURCE_URL}"
# libgomp1: implicit's ALS (the `als` candidate) links the system's OpenMP runtime, which slim
# images lack (scikit-learn bundles its own copy under another name).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --home-dir /home/app --create-home --shell /usr/sbin/nologin app
COPY --from=build /app/.venv /app/.venv
COPY --from=build /app/project /app/project
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app \
    DVC_NO_ANALYTICS=1 \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false \
    GIT_COMMIT=${GIT_COMMIT}
WORKDIR /app/project
USER 10001:10001
CMD ["{{ cookiecutter.project }}-train", "--help"]
