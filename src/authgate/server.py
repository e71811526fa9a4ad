"""Run the WSGI app under gunicorn (production-grade, pre-forking)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from authgate import metrics


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def _child_exit(_server: Any, worker: Any) -> None:
    """Gunicorn hook in the parent: a worker died; forget its live metrics."""
    metrics.mark_worker_dead(worker.pid)


def run(app: Flask, host: str, port: int, workers: int, threads: int) -> None:
    """Serve ``app`` on ``host:port`` with ``workers`` processes of ``threads`` threads."""
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "accesslog": None,
        "graceful_timeout": 10,
        "timeout": 30,
        "control_socket_disable": True,
        # Forwarded headers are AuthGate's business (AUTHGATE_TRUSTED_PROXIES, through
        # ProxyFix); gunicorn would otherwise believe X-Forwarded-Proto from 127.0.0.1.
        "forwarded_allow_ips": "",
        "secure_scheme_headers": {},
        "child_exit": _child_exit,
    }
    _Gunicorn(app, options).run()
