"""Running the simulator: `SimulatorServer` on a background thread with its own event loop
(tests, benchmarks), or `serve` in the foreground (the `payments simulator` command)."""

from __future__ import annotations

import asyncio
import logging
import threading
from types import TracebackType
from typing import Self

from aiohttp import web

from gateway.simulator.app import create_simulator_app
from gateway.simulator.config import SimulatorConfig
from gateway.simulator.state import STATE_KEY, SimState

log = logging.getLogger("gateway.simulator")

# How long stop() lets requests in flight finish before cancelling them. A "delay" fault can hold a
# request for minutes; aiohttp's default (60 s) would outlast stop()'s own wait for the thread.
SHUTDOWN_TIMEOUT_SECONDS = 1.0


class SimulatorServer:
    """Runs the simulator on a background thread with its own event loop."""

    def __init__(self, config: SimulatorConfig, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = create_simulator_app(config)
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None

    def __repr__(self) -> str:
        where = self.url if self._bound_port is not None else "not started"
        return f"SimulatorServer({where})"

    @property
    def state(self) -> SimState:
        """In-memory state; read it only while no request is running, or use the /sim API."""
        return self._app[STATE_KEY]

    @property
    def url(self) -> str:
        if self._bound_port is None:
            raise RuntimeError("simulator is not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._bound_port}"

    @property
    def api_url(self) -> str:
        return self.url + "/v1"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        async def boot() -> None:
            self._runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self._host, self._port)
            await site.start()
            self._bound_port = int(self._runner.addresses[0][1])

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(boot())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                if self._runner is not None:
                    loop.run_until_complete(self._runner.cleanup())
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                if self._runner is not None:
                    loop.run_until_complete(self._runner.cleanup())
                # What cleanup() cancelled (a request held by a "delay" fault) ends before the loop closes.
                leftover = asyncio.all_tasks(loop)
                for task in leftover:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="nowpayments-simulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=15):
            raise RuntimeError("simulator did not start within 15 s")
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"simulator failed to start: {failure[0]}") from failure[0]

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=15)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(config: SimulatorConfig, host: str, port: int) -> None:
    """Run the simulator in the foreground until SIGTERM/SIGINT (`payments simulator`)."""
    app = create_simulator_app(config)
    shown = f"[{host}]" if ":" in host else host
    log.info("NOWPayments simulator listening on http://%s:%d/v1 (control API under /sim)", shown, port)
    web.run_app(app, host=host, port=port, handle_signals=True, print=None, shutdown_timeout=5.0)
