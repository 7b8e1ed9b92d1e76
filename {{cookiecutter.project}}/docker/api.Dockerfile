# The recommendation API: gunicorn serving the model named by MODEL_URI (a mounted folder or a
# `models:/` URI). Build from the project root:  make image-api  (docker or buildah).
# Only the API package and core[registry] are installed: no scikit-learn, scipy, DVC or evidently.
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
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --no-install-workspace \
        --package {{ cookiecutter.project }}-api
COPY packages/core/src packages/core/src
COPY packages/api/src packages/api/src
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --package {{ cookiecutter.project }}-api
# Bytecode for what a worker imports (the app, gunicorn, the MLflow client for `models:/` URIs),
# written by importing it once: the venv is read-only at run time, and compiling everything
# (UV_COMPILE_BYTECODE) would add 80 MB for modules the API never loads.
RUN /app/.venv/bin/python -c "import {{ cookiecutter.package }}_api.app, {{ cookiecutter.package }}_api.gunicorn_conf, {{ cookiecutter.package }}_api.gunicorn_worker, {{ cookiecutter.package }}_core.model_source, gunicorn.app.wsgiapp, mlflow.artifacts, mlflow.tracking"

# --- runtime: the venv, a non-root user, nothing else ------------------------------------------
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG GIT_COMMIT=unknown
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="{{ cookiecutter.project }}-api" \
      org.opencontainers.image.description="Recommendation API (Flask under gunicorn)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.source="${SOURCE_URL}"
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --home-dir /home/app --create-home --shell /usr/sbin/nologin app
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app \
    HOST=0.0.0.0 \
    PORT=8000
WORKDIR /home/app
USER 10001:10001
EXPOSE 8000
# Liveness only (the process answers); readiness (/readyz: a model is loaded) is the orchestrator's.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', timeout=4)"]
CMD ["{{ cookiecutter.project }}-api", "serve"]
