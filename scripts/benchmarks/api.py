"""The API under load: WebSocket state pushes to many clients, and the states list.

Layout: this process runs the server (the hub with the real ``http`` integration on a free
port and an owner signed in through the real ``AuthManager``, or the bare baseline) and the
load; the clients run in a child process (``python -m scripts.benchmarks.api --role ...``),
so the hub's event loop is measured honestly and the clients' work is not counted as its.

- **WebSocket fan-out** (``ws_*``): ``--clients`` connections sign in and
  ``subscribe_states`` (``entity_id: sensor.bench_*``). The hub sets ``--rate`` states per
  second for ``--seconds`` on 1,000 entities, paced every ``--tick-ms``; each state carries
  ``bench_t`` (``time.time()`` as it is set) in its attributes. The clients are a minimal
  RFC 6455 client on asyncio streams: after the handshake they read the socket in chunks and
  find every ``bench_t`` in the bytes (server frames are unmasked, so the JSON is there as
  sent), so 50 of them in one process keep up and the figure is the server's, not the
  clients' JSON decoding; the client process runs without the cyclic garbage collector,
  whose passes over the piling arrivals would otherwise be counted as latency. Latency =
  the chunk's arrival time - the set time, same clock.
  ``lost`` = changes x clients - stamps received within 15 s of the last change. Two
  runs: clients that speak the plain protocol, one message per frame (the headline: what
  every client gets), then clients that asked for ``coalesce_messages`` (``--coalesce``
  makes that run the headline; ``--quick`` skips the other run).
  The baseline and the headline run take turns ``--repeat`` times (3), so both meet the
  machine's other load alike; the run with the median p99 of each is shown, with all p99s.
- **Baseline** (``baseline_ws_*``): a bare aiohttp server in this process, no hub, no auth,
  no filters, pushes the same JSON (made and framed once per change) to the same clients at
  the same rate, in one transport write per client at most every ``flush_interval`` (as the
  hub): the least a server can do on this machine.
- **Hand-off** (``handoff_*``): per flush of a connection, the time from its oldest
  queued change until the server hands it to the socket (the benchmark wraps the hub's
  flush to read it; the baseline records it in its own): the server's share of the latency,
  whatever the clients' process and the machine's other load do to the rest.
- **Server side**: its CPU per state change (``µs/chg``: this process's CPU time from the
  first change until the clients have every push, / changes; ``1e6 / µs/chg`` is about the
  rate one free core could take), its share of a core, its event loop lag (p99 of a 10 ms
  sleep's overshoot), and how contended the machine was meanwhile (``busy %``: the share of time
  some task waited for a CPU, Linux PSI). On a shared machine latency follows ``busy %``:
  read the figures beside it.
- **Fan-out cost** (in process, no sockets): time per state change for ``--clients``
  subscribers through the broadcaster (one bus listener, JSON made once), against one bus
  listener per client that each serialises the change (the naive design).
- **States** (``states_*``): ``--entities`` entities (like a fleet's: machine_id, unit,
  friendly name); the child process sends ``--requests`` sequential ``GET /api/states`` with a
  bearer token and as many WebSocket ``get_states``, idle and again while the hub takes
  ``--rate`` changes/s on those entities (so cached JSON keeps going stale).
  ``states_p99_ms`` is the worse of the two REST p99s. The baseline is a bare aiohttp
  handler that serialises the same states on every request.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
DRIVE_ENTITIES = 1000
DRAIN_TIMEOUT = 15.0
TARGET_WS_P99_MS = 50.0
TARGET_STATES_P99_MS = 100.0
_BENCH_T = re.compile(rb'"bench_t":([0-9.eE+-]+)[,}]')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=50, help="WebSocket clients")
    parser.add_argument("--rate", type=int, default=2000, help="state changes per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of load per run")
    parser.add_argument("--tick-ms", type=float, default=1.0, help="pacing of the changes")
    parser.add_argument("--entities", type=int, default=10_000, help="entities for /api/states")
    parser.add_argument("--requests", type=int, default=200, help="GET /api/states requests")
    parser.add_argument(
        "--coalesce",
        action="store_true",
        help="the headline run's clients ask for coalesce_messages",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of the baseline and the headline, taking turns; the median p99 counts",
    )
    parser.add_argument(
        "--quick", action="store_true", help="skip the second WebSocket run and the fan-out cost"
    )


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(_percentile(values_ms, 0.50), 2),
        "p90_ms": round(_percentile(values_ms, 0.90), 2),
        "p99_ms": round(_percentile(values_ms, 0.99), 2),
        "max_ms": round(max(values_ms), 2) if values_ms else float("nan"),
    }


# ---- the child process: clients ---------------------------------------------------------------


class _RawWebSocket:
    """A minimal WebSocket client (RFC 6455) on asyncio streams, cheap enough that 50 of them
    in one process keep up with the hub: it reads the socket in chunks and splits frames
    itself, instead of one task wake-up per frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()
        self.close_code: int | None = None

    @classmethod
    async def connect(cls, url: str) -> _RawWebSocket:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"the WebSocket upgrade failed: {head[:200]!r}")
        return cls(reader, writer)

    def send(self, value: Any, opcode: int = 1) -> None:
        payload = value if isinstance(value, bytes) else json.dumps(value).encode()
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = bytes((0x80 | opcode, 0x80 | size))
        elif size < 65536:
            header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.writer.write(header + mask + masked)

    def frames(self) -> list[tuple[int, bytes]]:
        """The complete frames in the buffer (removed from it)."""
        found = []
        buffer = self.buffer
        position = 0
        while len(buffer) - position >= 2:
            opcode = buffer[position] & 0x0F
            size = buffer[position + 1] & 0x7F
            start = position + 2
            if size == 126:
                if len(buffer) - position < 4:
                    break
                size = int.from_bytes(buffer[position + 2 : position + 4], "big")
                start = position + 4
            elif size == 127:
                if len(buffer) - position < 10:
                    break
                size = int.from_bytes(buffer[position + 2 : position + 10], "big")
                start = position + 10
            if len(buffer) < start + size:
                break
            found.append((opcode, bytes(buffer[start : start + size])))
            position = start + size
        del buffer[:position]
        return found

    async def read(self) -> list[tuple[int, bytes]]:
        """Wait for data; the frames it completed."""
        while True:
            chunk = await self.reader.read(262_144)
            if not chunk:
                return [(8, b"")]
            self.buffer += chunk
            frames = self.frames()
            if frames:
                return frames

    async def receive_json(self) -> Any:
        while True:
            for opcode, payload in await self.read():
                if opcode == 1:
                    return json.loads(payload)
                if opcode == 8:
                    raise SystemExit(f"the server closed the connection: {payload[2:]!r}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send((1000).to_bytes(2, "big"), opcode=8)
            self.writer.close()


async def _ws_handshake(ws: _RawWebSocket, token: str | None, coalesce: bool) -> None:
    if token is None:
        return
    hello = await ws.receive_json()
    assert hello["type"] == "auth_required", hello
    ws.send({"type": "auth", "access_token": token})
    answer = await ws.receive_json()
    assert answer["type"] == "auth_ok", answer
    if coalesce:
        ws.send({"id": 1, "type": "supported_features", "features": {"coalesce_messages": 1}})
        assert (await ws.receive_json())["success"]
    ws.send({"id": 2, "type": "subscribe_states", "entity_id": "sensor.bench_*"})
    assert (await ws.receive_json())["success"]


async def _ws_clients(args: argparse.Namespace) -> dict[str, Any]:
    arrivals: list[tuple[float, list[bytes]]] = []
    counts = [0] * args.clients
    closes: list[str] = []
    sockets = []
    for _ in range(args.clients):
        ws = await _RawWebSocket.connect(args.url)
        await _ws_handshake(ws, args.token, not args.no_coalesce)
        sockets.append(ws)

    async def read(index: int, ws: _RawWebSocket) -> None:
        # Once subscribed, the stream is only searched for the stamps: server frames are
        # unmasked, so the JSON is in the bytes as sent. Per chunk only its arrival time and
        # its stamps (C-level findall) are kept; latencies are worked out after the run. A
        # stamp cut by a chunk's end is kept as the tail and completed by the next chunk; a
        # complete one (20 bytes or more) never fits in the 16 bytes kept otherwise, so
        # none is counted twice.
        findall = _BENCH_T.findall
        complete = _BENCH_T.match
        append = arrivals.append
        clock = time.time
        read_chunk = ws.reader.read
        tail = bytes(ws.buffer)
        while True:
            chunk = await read_chunk(262_144)
            now = clock()
            if not chunk:
                closes.append("connection closed by the server")
                return
            data = tail + chunk if tail else chunk
            stamps = findall(data)
            append((now, stamps))
            counts[index] += len(stamps)
            last = data.rfind(b'"bench_t":')
            tail = data[last:] if last >= 0 and not complete(data, last) else data[-16:]

    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(sockets)]
    # The arrivals pile up as containers the cyclic collector would walk again and again
    # (tens of ms per full pass, which would be counted as latency); they hold no cycles.
    gc.disable()
    print("ready", flush=True)
    cpu = time.process_time()
    started = time.perf_counter()
    with _LoopLag() as lag:
        command = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        expected = int(command.split()[1])
        for _ in range(int(DRAIN_TIMEOUT / 0.05)):
            if min(counts) >= expected:
                break
            await asyncio.sleep(0.05)
    cpu_share = (time.process_time() - cpu) / (time.perf_counter() - started)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for ws in sockets:
        ws.close()
    return {
        **_summary([(now - float(stamp)) * 1000 for now, stamps in arrivals for stamp in stamps]),
        "received": sum(counts),
        "min_per_client": min(counts) if counts else 0,
        "closed_by_server": closes,
        "client_cpu_percent": round(cpu_share * 100, 1),
        "client_loop_lag_p99_ms": round(_percentile(lag.samples, 0.99), 2),
        "client_loop_lag_max_ms": round(max(lag.samples, default=float("nan")), 2),
    }


async def _timed(requests: int, call: Callable[[], Awaitable[int]]) -> dict[str, Any]:
    for _ in range(5):
        await call()
    times = []
    size = 0
    for _ in range(requests):
        started = time.perf_counter()
        size = await call()
        times.append((time.perf_counter() - started) * 1000)
    return {**_summary(times), "bytes": size}


async def _states_client(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    result: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}

        async def get() -> int:
            async with session.get(args.url, headers=headers) as response:
                body = await response.read()
                assert response.status == 200, (response.status, body[:200])
                return len(body)

        if args.url:
            result["rest"] = await _timed(args.requests, get)
        if args.ws_url:
            ws = await session.ws_connect(args.ws_url, max_msg_size=0)
            assert (await ws.receive_json())["type"] == "auth_required"
            await ws.send_json({"type": "auth", "access_token": args.token})
            assert (await ws.receive_json())["type"] == "auth_ok"
            ids = iter(range(10, 10**9))

            async def get_states() -> int:
                msg_id = next(ids)
                await ws.send_json({"id": msg_id, "type": "get_states"})
                message = await ws.receive()
                assert f'"id":{msg_id},' in message.data[:40], message.data[:200]
                return len(message.data)

            result["ws"] = await _timed(args.requests, get_states)
            await ws.close()
    return result


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=("ws-clients", "states-client"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--ws-url", default="")
    parser.add_argument("--token", default=None)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--no-coalesce", action="store_true")
    args = parser.parse_args(argv)
    role = _ws_clients if args.role == "ws-clients" else _states_client
    print(json.dumps(asyncio.run(role(args))), flush=True)
    return 0


# ---- this process: the hub, the load, the baseline ----------------------------------------------


class _Child:
    """A client process speaking line by line on stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, *args: str) -> _Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "scripts.benchmarks.api",
            *args,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        return cls(process)

    async def line(self, timeout: float = 120) -> str:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not raw:
            await self.process.wait()
            raise SystemExit(f"a client process ended early (exit {self.process.returncode})")
        return raw.decode().strip()

    async def result(self, timeout: float = 600) -> dict[str, Any]:
        """The one JSON line a client that needs no "stop" prints, once it has exited."""
        result: dict[str, Any] = json.loads(await self.line(timeout))
        await self.process.wait()
        return result

    async def finish(self, expected: int) -> dict[str, Any]:
        """Tell the clients how many pushes each should have; their result once they have
        (or after ``DRAIN_TIMEOUT``)."""
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.process.stdin.write(f"stop {expected}\n".encode())
            await self.process.stdin.drain()
        result = json.loads(await self.line())
        await self.process.wait()
        return result


class _LoopLag:
    """The overshoot of a 10 ms sleep, sampled while the load runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(0.01)
            self.samples.append((loop.time() - started - 0.01) * 1000)

    def __enter__(self) -> _LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def _drive(
    set_state: Callable[[str, int, dict[str, Any]], Any],
    ids: list[str],
    rate: int,
    seconds: float,
    tick: float,
) -> int:
    """Set ``rate`` states per second for ``seconds``; returns how many were set."""
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    started = loop.time()
    done = 0
    count = len(ids)
    while done < total:
        due = min(total, int((loop.time() - started) * rate) + 1)
        while done < due:
            set_state(
                ids[done % count],
                done,
                {"unit_of_measurement": "°C", "bench_seq": done, "bench_t": time.time()},
            )
            done += 1
        await asyncio.sleep(tick)
    return done


_HANDOFFS: list[float] = []
"""Per flush of one connection: ms from the oldest message's state change until the server
hands it to the socket (the server's share of the latency, whatever the clients do)."""


def _record_handoff(oldest: bytes) -> None:
    match = _BENCH_T.search(oldest)
    if match is not None:
        _HANDOFFS.append((time.time() - float(match.group(1))) * 1000)


@contextlib.contextmanager
def _hub_handoff_probe() -> Iterator[None]:
    """Record ``_HANDOFFS`` in the hub's flush (instrumentation of this benchmark only)."""
    from vendhub.http.websocket.connection import WebSocketConnection

    original = WebSocketConnection.async_flush

    def probed(self: WebSocketConnection, frames: Any) -> None:
        if self._queue and self._writer is None:
            _record_handoff(self._queue[0])
        original(self, frames)

    WebSocketConnection.async_flush = probed  # type: ignore[method-assign]
    try:
        yield
    finally:
        WebSocketConnection.async_flush = original  # type: ignore[method-assign]


async def _ws_run(
    label: str,
    url: str,
    token: str | None,
    clients: int,
    coalesce: bool,
    drive: Callable[[], Awaitable[int]],
) -> dict[str, Any]:
    args = ["--role", "ws-clients", "--url", url, "--clients", str(clients)]
    if token is not None:
        args += ["--token", token]
    if not coalesce:
        args.append("--no-coalesce")
    child = await _Child.start(*args)
    ready = await child.line()
    if ready != "ready":
        raise SystemExit(f"{label}: the clients did not start: {ready}")
    pressure = _pressure_sample()
    cpu = time.process_time()
    started = time.perf_counter()
    _HANDOFFS.clear()
    with _LoopLag() as lag:
        changes = await drive()
        wall = time.perf_counter() - started
        result = await child.finish(changes)
    cpu = time.process_time() - cpu
    total = time.perf_counter() - started
    handoffs = list(_HANDOFFS)
    expected = changes * clients
    return {
        **result,
        "changes": changes,
        "lost": expected - result["received"],
        "drive_seconds": round(wall, 2),
        "server_cpu_percent": round(cpu / total * 100, 1),
        "server_cpu_us_per_change": round(cpu / changes * 1e6, 1),
        "loop_lag_p99_ms": round(_percentile(lag.samples, 0.99), 2),
        "loop_lag_max_ms": round(max(lag.samples, default=float("nan")), 2),
        "handoff_p99_ms": round(_percentile(handoffs, 0.99), 2),
        "handoff_max_ms": round(max(handoffs), 2) if handoffs else float("nan"),
        "machine_cpu_pressure_percent": _pressure_since(pressure),
    }


def _pressure_sample() -> tuple[float, int] | None:
    """(now, total µs some runnable task waited for a CPU) from Linux PSI, or None."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return time.monotonic(), int(line.rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


def _pressure_since(start: tuple[float, int] | None) -> float | None:
    """The share of time (%) since ``start`` that some task on this machine waited for a
    CPU: how busy the machine was besides what it measured (0: never; 100: always)."""
    end = _pressure_sample()
    if start is None or end is None or end[0] <= start[0]:
        return None
    return round((end[1] - start[1]) / 1e6 / (end[0] - start[0]) * 100, 1)


@contextlib.asynccontextmanager
async def _baseline_server(
    args: argparse.Namespace,
) -> AsyncIterator[Callable[[], Awaitable[dict[str, Any]]]]:
    """The same pushes from a bare aiohttp server: no hub, no auth, no filters; yields a
    function that makes one run.

    Each change's message is made once (``json.dumps``) and framed once; every client gets
    what is pending in one transport write, at most every ``flush_interval`` as the hub
    does: the least a server can do per client, so the difference is what the hub adds.
    """
    from aiohttp import web

    from vendhub.http.websocket.manager import WebSocketSettings
    from vendhub.http.websocket.messages import text_frame

    transports: list[asyncio.Transport] = []
    pending: list[bytes] = []
    scheduled = [False]

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        assert request.transport is not None
        transports.append(request.transport)  # type: ignore[arg-type]
        async for _ in ws:
            pass
        transports.remove(request.transport)  # type: ignore[arg-type]
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ids = [f"sensor.bench_{i}" for i in range(DRIVE_ENTITIES)]
    context = {"id": "01", "user_id": None, "parent_id": None}
    loop = asyncio.get_running_loop()

    interval = WebSocketSettings().flush_interval
    last_flush = [0.0]

    def flush() -> None:
        scheduled[0] = False
        last_flush[0] = loop.time()
        if pending and transports:
            _record_handoff(pending[0])
        data = b"".join(pending)
        pending.clear()
        for transport in transports:
            if not transport.is_closing():
                transport.write(data)

    def set_state(entity_id: str, value: int, attributes: dict[str, Any]) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        state = {
            "entity_id": entity_id,
            "state": str(value),
            "attributes": attributes,
            "last_changed": now,
            "last_updated": now,
            "context": context,
        }
        message = {"id": 2, "type": "event", "event": {"entity_id": entity_id, "new_state": state}}
        pending.append(text_frame(json.dumps(message, separators=(",", ":")).encode()))
        if not scheduled[0]:
            scheduled[0] = True
            loop.call_at(max(loop.time(), last_flush[0] + interval), flush)

    def run() -> Awaitable[dict[str, Any]]:
        return _ws_run(
            "baseline",
            f"http://{HOST}:{port}/ws",
            None,
            args.clients,
            False,
            lambda: _drive(set_state, ids, args.rate, args.seconds, args.tick_ms / 1000),
        )

    try:
        yield run
    finally:
        await runner.cleanup()


def _fanout_cost(clients: int, changes: int = 20_000) -> dict[str, float]:
    """µs per state change for ``clients`` subscribers: the broadcaster against naive."""
    from vendhub.const import EVENT_STATE_CHANGED
    from vendhub.core.hub import Hub
    from vendhub.http.websocket.filters import EntityFilter
    from vendhub.http.websocket.manager import websocket_manager
    from vendhub.http.websocket.messages import (
        event_message,
        event_prefix,
        json_bytes,
    )

    class Sink:
        def __init__(self) -> None:
            self.count = 0

        def async_send(self, message: bytes) -> None:
            self.count += 1

    def measure(setup: Callable[[Hub, list[Sink]], None]) -> float:
        async def body() -> float:
            with tempfile.TemporaryDirectory() as folder:
                hub = Hub(folder)
                sinks = [Sink() for _ in range(clients)]
                setup(hub, sinks)
                ids = [f"sensor.bench_{i}" for i in range(DRIVE_ENTITIES)]
                started = time.perf_counter()
                for n in range(changes):
                    hub.states.async_set(ids[n % DRIVE_ENTITIES], n, {"bench_seq": n})
                elapsed = time.perf_counter() - started
                counts = {sink.count for sink in sinks}
                assert counts in ({0}, {changes}), counts
                await hub.async_stop()
                return elapsed / changes * 1e6

        return asyncio.run(body())

    def shared(hub: Hub, sinks: list[Sink]) -> None:
        manager = websocket_manager(hub)
        for index, sink in enumerate(sinks):
            manager.broadcaster.async_subscribe(sink, index + 1, "states", (), EntityFilter())

    def naive(hub: Hub, sinks: list[Sink]) -> None:
        for index, sink in enumerate(sinks):
            prefix = event_prefix(index + 1)

            def listener(event: Any, sink: Sink = sink, prefix: bytes = prefix) -> None:
                new_state = event.data["new_state"]
                payload = json_bytes(
                    {"entity_id": event.data["entity_id"], "new_state": new_state.as_dict()}
                )
                sink.async_send(event_message(prefix, payload))

            hub.bus.async_listen(EVENT_STATE_CHANGED, listener)

    bare = min(measure(lambda hub, sinks: None) for _ in range(3))
    broadcaster = min(measure(shared) for _ in range(3))
    per_client = min(measure(naive) for _ in range(3))
    return {
        "fanout_us_per_change_broadcaster": round(broadcaster - bare, 1),
        "fanout_us_per_change_per_client_listeners": round(per_client - bare, 1),
        "state_set_us_no_subscribers": round(bare, 1),
    }


async def _baseline_states(states: list[Any], requests: int) -> dict[str, Any]:
    """A bare aiohttp handler that serialises the same states on every request."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        body = json.dumps([state.as_dict() for state in states], separators=(",", ":"))
        return web.Response(text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/states", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        child = await _Child.start(
            "--role", "states-client", "--url", f"http://{HOST}:{port}/states",
            "--requests", str(requests),
        )  # fmt: skip
        return await child.result()
    finally:
        await runner.cleanup()


async def _hub_phases(args: argparse.Namespace) -> dict[str, Any]:
    from vendhub.auth.manager import get_auth
    from vendhub.core.hub import Hub
    from vendhub.http.server import get_http
    from vendhub.http.websocket.manager import websocket_manager
    from vendhub.util.heap import freeze_startup_heap
    from vendhub_integrations.http import CONFIG_SCHEMA, async_setup

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        hub = Hub(folder)
        if not await async_setup(hub, CONFIG_SCHEMA({"server_host": HOST, "server_port": 0})):
            raise SystemExit("the HTTP API did not start")
        await hub.async_start()
        grant = await get_auth(hub).async_onboard("bench", "bench-password-long")
        token = grant.access_token
        server = get_http(hub)
        ws_url = server.url + "/api/websocket"
        freeze_startup_heap()
        ids = [f"sensor.bench_{i}" for i in range(DRIVE_ENTITIES)]
        manager = websocket_manager(hub)

        def drive() -> Awaitable[int]:
            return _drive(hub.states.async_set, ids, args.rate, args.seconds, args.tick_ms / 1000)

        async def hub_run(coalesce: bool) -> dict[str, Any]:
            before = manager.broadcaster.messages_sent
            with _hub_handoff_probe():
                run = await _ws_run("hub", ws_url, token, args.clients, coalesce, drive)
            run["pushes_queued"] = manager.broadcaster.messages_sent - before
            run["bus_listeners_of_state_changed"] = hub.bus.async_listeners().get("state_changed")
            return run

        # The baseline and the hub take turns, so both meet the machine's other load alike.
        headline = "coalesced" if args.coalesce else "per_message"
        baselines, hubs = [], []
        async with _baseline_server(args) as baseline_run:
            for _ in range(args.repeat):
                baselines.append(await baseline_run())
                hubs.append(await hub_run(args.coalesce))
        results["baseline"] = _median_run(baselines)
        results[headline] = _median_run(hubs)
        if not args.quick:
            other = "per_message" if args.coalesce else "coalesced"
            results[other] = _median_run([await hub_run(not args.coalesce)])
        results["dropped_slow"] = manager.dropped_slow
        await asyncio.sleep(0.5)
        results["broadcaster_listens_after"] = manager.broadcaster.listened_types

        for entity_id in ids:
            hub.states.async_remove(entity_id)
        entity_ids = [f"sensor.fleet_{i // 8:04d}_{i % 8}" for i in range(args.entities)]
        for index, entity_id in enumerate(entity_ids):
            hub.states.async_set(
                entity_id,
                round(4 + (index % 50) / 10, 1),
                {
                    "machine_id": f"fleet_{index // 8:04d}",
                    "unit_of_measurement": "°C",
                    "friendly_name": f"Fleet {index // 8} sensor {index % 8}",
                    "icon": "mdi:thermometer",
                },
            )
        states_url = server.url + "/api/states"
        has_rest = any(route.url == "/api/states" for route in server.router.routes)
        child_args = ["--role", "states-client", "--token", token, "--ws-url", ws_url]
        child_args += ["--requests", str(args.requests)]
        child_args += ["--url", states_url if has_rest else ""]
        pressure = _pressure_sample()
        child = await _Child.start(*child_args)
        results["states_idle"] = await child.result()
        results["states_idle"]["machine_cpu_pressure_percent"] = _pressure_since(pressure)
        results["states_has_rest"] = has_rest

        stop = asyncio.Event()

        async def load() -> None:
            loop = asyncio.get_running_loop()
            started = loop.time()
            done = 0
            while not stop.is_set():
                due = int((loop.time() - started) * args.rate) + 1
                while done < due:
                    entity_id = entity_ids[(done * 7919) % len(entity_ids)]
                    hub.states.async_set(
                        entity_id, done, {"machine_id": "fleet_load", "bench_seq": done}
                    )
                    done += 1
                await asyncio.sleep(args.tick_ms / 1000)

        loader = asyncio.get_running_loop().create_task(load())
        child = await _Child.start(*child_args)
        pressure = _pressure_sample()
        with _LoopLag() as lag:
            results["states_loaded"] = await child.result()
        results["states_loaded"]["machine_cpu_pressure_percent"] = _pressure_since(pressure)
        results["states_loaded"]["loop_lag_p99_ms"] = round(_percentile(lag.samples, 0.99), 2)
        stop.set()
        await loader
        results["baseline_states"] = await _baseline_states(hub.states.async_all(), args.requests)
        await server.async_stop()
        await hub.async_stop()
    return results


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median p99, with every run's p99 and busy % beside it."""
    chosen = sorted(runs, key=lambda run: run["p99_ms"])[len(runs) // 2]
    return {
        **chosen,
        "runs_p99_ms": [run["p99_ms"] for run in runs],
        "runs_busy_percent": [run["machine_cpu_pressure_percent"] for run in runs],
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    gc.collect()
    return await _hub_phases(args)


def _row(name: str, run: dict[str, Any]) -> str:
    pressure = run.get("machine_cpu_pressure_percent")
    return (
        f"{name:<40}{run['p50_ms']:>8.1f}{run['p99_ms']:>8.1f}{run['max_ms']:>8.0f}"
        f"{run['lost']:>6}{run['handoff_p99_ms']:>8.1f}{run['handoff_max_ms']:>7.0f}"
        f"{run['server_cpu_us_per_change']:>9.0f}"
        f"{run['server_cpu_percent']:>7.0f}{run['loop_lag_p99_ms']:>9.1f}"
        f"{run['client_loop_lag_p99_ms']:>9.1f}{'?' if pressure is None else f'{pressure:.0f}':>7}"
    )


def run(args: argparse.Namespace) -> int:
    found = asyncio.run(_main(args))
    fanout = {} if args.quick else _fanout_cost(args.clients)
    headline_key = "coalesced" if args.coalesce else "per_message"
    headline = found[headline_key]
    states = found["states_idle"]
    loaded = found["states_loaded"]
    rest_idle = states["rest"] if found["states_has_rest"] else states["ws"]
    rest_loaded = loaded["rest"] if found["states_has_rest"] else loaded["ws"]
    print(
        f"VendHub API benchmark, Python {platform.python_version()}: {args.clients} WebSocket "
        f"clients, {args.rate:,} state changes/s for {args.seconds:g} s (ticks of "
        f"{args.tick_ms:g} ms); {args.entities:,} entities, {args.requests} requests"
    )
    print(
        f"{'latency set -> client (ms)':<40}{'p50':>8}{'p99':>8}{'max':>8}{'lost':>6}"
        f"{'hand99':>8}{'handmx':>7}"
        f"{'µs/chg':>9}{'cpu %':>7}{'lag p99':>9}{'cl. lag':>9}{'busy %':>7}"
    )
    print(_row("baseline: bare aiohttp, frames once", found["baseline"]))
    labels = {"per_message": "hub, one message per frame", "coalesced": "hub, coalesced frames"}
    for key, label in labels.items():
        if key in found:
            print(_row(label, found[key]))
    for label, run_ in (("baseline", found["baseline"]), (f"hub ({headline_key})", headline)):
        pairs = ", ".join(
            f"{p99:g} ms @ {busy if busy is not None else '?'}% busy"
            for p99, busy in zip(run_["runs_p99_ms"], run_["runs_busy_percent"], strict=True)
        )
        print(f"  {label} runs, taking turns (the median is shown): {pairs}")
    print(f"{'GET /api/states (ms)':<40}{'p50':>8}{'p99':>8}{'max':>8}{'KiB':>8}")
    rows = [("baseline: bare aiohttp, json.dumps each", found["baseline_states"]["rest"])]
    if found["states_has_rest"]:
        rows.append(("hub REST, idle", states["rest"]))
        rows.append((f"hub REST, while {args.rate:,} changes/s", loaded["rest"]))
    rows.append(("hub WebSocket get_states, idle", states["ws"]))
    rows.append((f"hub WebSocket get_states, {args.rate:,} chg/s", loaded["ws"]))
    for label, run_ in rows:
        print(
            f"{label:<40}{run_['p50_ms']:>8.1f}{run_['p99_ms']:>8.1f}{run_['max_ms']:>8.0f}"
            f"{run_['bytes'] / 1024:>8.0f}"
        )
    print(
        "hand99/handmx: p99/max ms from a change until the server hands it to the socket; "
        "µs/chg: the server process's CPU per state change (all clients); cpu %: of one core; "
        "lag p99: its event loop's; cl. lag: the client process's loop lag p99; busy %: share "
        "of time some task on this machine waited for a CPU (Linux PSI)"
    )
    if fanout:
        print(
            f"fan-out per state change to {args.clients} subscribers (in process): broadcaster "
            f"{fanout['fanout_us_per_change_broadcaster']} µs, one listener per client "
            f"{fanout['fanout_us_per_change_per_client_listeners']} µs "
            f"(a state set alone: {fanout['state_set_us_no_subscribers']} µs)"
        )
    states_p99 = max(rest_idle["p99_ms"], rest_loaded["p99_ms"])
    ws_ok = headline["p99_ms"] < TARGET_WS_P99_MS and headline["lost"] == 0
    states_ok = states_p99 < TARGET_STATES_P99_MS
    print(
        f"target: {args.clients} clients p99 < {TARGET_WS_P99_MS:g} ms, none lost "
        f"({headline_key}): {'meets' if ws_ok else 'MISSES'}; /api/states p99 < "
        f"{TARGET_STATES_P99_MS:g} ms (idle and loaded): {'meets' if states_ok else 'MISSES'}"
    )
    result = {
        "ws_clients": args.clients,
        "ws_p99_ms": headline["p99_ms"],
        "ws_p50_ms": headline["p50_ms"],
        "ws_lost": headline["lost"],
        "ws_coalesced": args.coalesce,
        "ws_rate": args.rate,
        "ws_hub_cpu_percent": headline["server_cpu_percent"],
        "ws_hub_cpu_us_per_change": headline["server_cpu_us_per_change"],
        "ws_loop_lag_p99_ms": headline["loop_lag_p99_ms"],
        "ws_handoff_p99_ms": headline["handoff_p99_ms"],
        "ws_handoff_max_ms": headline["handoff_max_ms"],
        "ws_loop_lag_max_ms": headline["loop_lag_max_ms"],
        "ws_client_loop_lag_p99_ms": headline["client_loop_lag_p99_ms"],
        "ws_client_loop_lag_max_ms": headline["client_loop_lag_max_ms"],
        "ws_machine_cpu_pressure_percent": headline["machine_cpu_pressure_percent"],
        "ws_dropped_slow": found["dropped_slow"],
        "baseline_ws_p99_ms": found["baseline"]["p99_ms"],
        "baseline_ws_p50_ms": found["baseline"]["p50_ms"],
        "baseline_ws_lost": found["baseline"]["lost"],
        "baseline_ws_cpu_us_per_change": found["baseline"]["server_cpu_us_per_change"],
        "baseline_ws_handoff_p99_ms": found["baseline"]["handoff_p99_ms"],
        "ws_runs_p99_ms": headline["runs_p99_ms"],
        "ws_runs_busy_percent": headline["runs_busy_percent"],
        "baseline_ws_runs_p99_ms": found["baseline"]["runs_p99_ms"],
        "baseline_ws_runs_busy_percent": found["baseline"]["runs_busy_percent"],
        "states_entities": args.entities,
        "states_source": "rest" if found["states_has_rest"] else "websocket get_states",
        "states_p99_ms": states_p99,
        "states_idle_p99_ms": rest_idle["p99_ms"],
        "states_idle_p50_ms": rest_idle["p50_ms"],
        "states_loaded_p99_ms": rest_loaded["p99_ms"],
        "states_loaded_p50_ms": rest_loaded["p50_ms"],
        "states_ws_p99_ms": loaded["ws"]["p99_ms"],
        "baseline_states_p99_ms": found["baseline_states"]["rest"]["p99_ms"],
        "states_bytes": rest_idle["bytes"],
        "states_machine_cpu_pressure_percent": loaded["machine_cpu_pressure_percent"],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        **fanout,
    }
    other = "per_message" if headline_key == "coalesced" else "coalesced"
    if other in found:
        result[f"ws_{other}_p99_ms"] = found[other]["p99_ms"]
        result[f"ws_{other}_lost"] = found[other]["lost"]
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
