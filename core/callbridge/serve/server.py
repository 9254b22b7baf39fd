"""``callbridge serve``: settings, engine, app and uvicorn in one process."""

from __future__ import annotations

import logging
import signal
import socket
from pathlib import Path

from pydantic import BaseModel

from callbridge.errors import ConfigError
from callbridge.runtime import config_path, load
from callbridge.settings_source import Refreshed, SettingsSource

log = logging.getLogger("callbridge.serve")


class LastGoodSettings(SettingsSource):
    """The settings, re-read when they change by :meth:`refresh` (the server calls it off
    its event loop; only changed tenant files are read); a change that does not read is
    logged and the last good settings stay in use (``error`` says why until it reads)."""

    def __init__(self, path: Path | None, *, plugin_models: dict[str, type[BaseModel] | None]) -> None:
        self.error: str | None = None
        self._loaded = False  # the first read is a load, not a reload
        super().__init__(path, plugin_models=plugin_models, watch=False)

    def refresh(self) -> Refreshed:
        if self.path is None:
            return Refreshed()
        try:
            done = super().refresh()
        except (ConfigError, OSError) as exc:
            message = str(exc) if isinstance(exc, ConfigError) else "the settings file cannot be read"
            if message != self.error:
                log.error("settings not reloaded, the last good ones stay in use: %s", message)
            self.error = message
            return Refreshed()
        first = self._loaded is False
        self._loaded = True
        if not first and (self.error is not None or done.whole or done.tenants):
            log.warning("settings reloaded (%s)", "all" if done.whole
                        else f"{len(done.tenants)} tenant(s)")
        self.error = None
        return done


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one the system picks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(config: Path | None, *, host: str | None, port: int | None, worker: bool) -> int:
    """Serve until SIGTERM or SIGINT; the exit code. Raises ConfigError for bad settings."""
    import uvicorn

    from callbridge.serve.app import build_app, make_state

    rt = load(config_path(config))
    rt.settings = LastGoodSettings(rt.settings.path, plugin_models=rt.settings.plugin_models)
    serve = rt.settings.current().serve
    host = host or serve.host
    sock = bind(host, serve.port if port is None else port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    state = make_state(rt, base_url=f"http://{shown}:{bound}", worker=worker)
    from callbridge.serve.health import unready_sources

    for problem in unready_sources(rt.settings.current()):
        log.warning("source %s: its requests will be refused (503)", problem)
    app = build_app(state)
    print(f"callbridge serving on http://{shown}:{bound} "
          f"({'intake, worker and scheduler' if worker else 'intake only'})", flush=True)
    server = uvicorn.Server(uvicorn.Config(
        app, lifespan="on", log_level="warning", access_log=False, server_header=False,
        timeout_graceful_shutdown=int(serve.shutdown_grace_seconds) or None))
    # uvicorn stops gracefully on SIGTERM and SIGINT, then raises the signal again with
    # the handler it found: this one, so a graceful stop exits with code 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
    from callbridge.process import tune_gc

    tune_gc()  # start-up done: the collector's time goes to requests and events from here
    server.run(sockets=[sock])
    print("callbridge serve stopped", flush=True)
    return 0 if server.started else 1

