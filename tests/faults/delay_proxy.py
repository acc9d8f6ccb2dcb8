"""A TCP forwarder that adds a fixed delay in each direction: latency without the kernel's netem.

Every chunk read from one side is written to the other `delay` seconds after it
arrived, in order, so the link keeps its bandwidth and only gains latency (a
request/answer round trip through it costs 2 × delay more). One asyncio loop,
run as its own process so the test's own threads add no jitter:

    python -m tests.faults.delay_proxy --listen 10.77.0.1:6000 --target 10.77.0.1:5432 --delay 0.02

It prints "ready <host>:<port>" on stdout once it listens (port 0 picks one).
Closing either side closes the other after the data in flight was delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

CHUNK = 65536  # bytes read at a time


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader -> writer, each chunk `delay` seconds after it was read."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    sender = asyncio.ensure_future(deliver())
    try:
        while True:
            data = await reader.read(CHUNK)
            queue.put_nowait((time.monotonic() + delay, data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()
    finally:
        writer.close()


def serve(listen: tuple[str, int], target: tuple[str, int], delay: float):
    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, server_writer, delay),
                             _pipe(server_reader, client_writer, delay), return_exceptions=True)

    async def main():
        server = await asyncio.start_server(handle, *listen)
        host, port = server.sockets[0].getsockname()[:2]
        print(f"ready {host}:{port}", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=_address, required=True)
    parser.add_argument("--target", type=_address, required=True)
    parser.add_argument("--delay", type=float, required=True, help="seconds added in each direction")
    args = parser.parse_args()
    try:
        serve(args.listen, args.target, args.delay)
    except KeyboardInterrupt:
        sys.exit(0)
