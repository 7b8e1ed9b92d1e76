"""The WSGI entry point gunicorn imports in each worker: `<package>_api.wsgi:app`."""

from . import create_app

app = create_app()
