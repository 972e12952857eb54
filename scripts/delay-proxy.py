"""A TCP proxy on loopback that delays what it forwards, each way, by half
of a round trip: S3 on loopback (moto_server) answers in a few
milliseconds, S3 itself in tens, and a benchmark of reads in turn against
reads in flight needs the latter. Connections are independent, so calls in
flight overlap as they would against S3.

Usage: delay-proxy.py UPSTREAM_PORT ROUND_TRIP_MS ADDR_FILE
Listens on a free port of 127.0.0.1 and writes it to ADDR_FILE once
listening (the benchmark polls for the file)."""

import asyncio
import os
import sys


async def pipe(reader, writer, delay):
    """Forwards each chunk `delay` seconds after it arrived: a latency, not
    a slower link (a body of many chunks is not delayed once per chunk)."""
    loop = asyncio.get_running_loop()
    chunks = asyncio.Queue()

    async def receive():
        try:
            while chunk := await reader.read(65536):
                await chunks.put((loop.time() + delay, chunk))
        except ConnectionError:
            pass
        await chunks.put((loop.time() + delay, b""))

    receiving = asyncio.create_task(receive())
    try:
        while True:
            due, chunk = await chunks.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        receiving.cancel()
        writer.close()


async def main():
    upstream, round_trip_ms, addr_file = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    delay = round_trip_ms / 2000.0

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", upstream)
        except ConnectionError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, server_writer, delay),
            pipe(server_reader, client_writer, delay),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with open(addr_file + ".tmp", "w") as f:
        f.write(str(port))
    # Renamed into place, so a reader never sees half a port.
    os.replace(addr_file + ".tmp", addr_file)
    async with server:
        await server.serve_forever()


asyncio.run(main())
