"""A userspace TCP proxy that adds latency, for ``remoteops lab up --latency MS``.

This kernel has no netem, so the lab simulates a slow network here: every byte
is delivered ``latency_ms / 2`` after it was read, in each direction, so a round
trip over an established connection takes at least ``latency_ms``. Order is
kept; bandwidth is not limited (``tc tbf`` does that).

Run as ``python -m remoteops.lab.proxy CONFIG.json`` where CONFIG holds
``{"latency_ms": N, "routes": [{"listen": [addr, port], "target": [addr, port]}]}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path

__all__ = ["main", "serve"]

_CHUNK = 256 * 1024
_MAX_BUFFERED = 64  # chunks in flight per direction before reading pauses


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=_MAX_BUFFERED)

    async def read_side() -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                await queue.put((time.monotonic() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((time.monotonic(), b""))

    async def write_side() -> None:
        try:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    reading = asyncio.ensure_future(read_side())
    try:
        await write_side()
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reading


async def _handle(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    target: tuple[str, int],
    delay: float,
) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            _pump(client_reader, server_writer, delay),
            _pump(server_reader, client_writer, delay),
        )
    finally:
        for w in (client_writer, server_writer):
            with contextlib.suppress(Exception):
                w.close()


async def serve(config: dict[str, object]) -> None:
    """Listen on every route of ``config`` until SIGTERM or SIGINT."""
    latency_ms = float(config["latency_ms"])  # type: ignore[arg-type]
    delay = latency_ms / 2000.0
    routes = config["routes"]
    assert isinstance(routes, list)
    servers = []
    for route in routes:
        listen_addr, listen_port = route["listen"]
        target = (str(route["target"][0]), int(route["target"][1]))

        async def handler(
            r: asyncio.StreamReader,
            w: asyncio.StreamWriter,
            target: tuple[str, int] = target,
        ) -> None:
            await _handle(r, w, target, delay)

        servers.append(
            await asyncio.start_server(handler, listen_addr, int(listen_port), backlog=512)
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m remoteops.lab.proxy CONFIG.json``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m remoteops.lab.proxy CONFIG.json", file=sys.stderr)
        return 2
    config = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
