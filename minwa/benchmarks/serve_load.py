"""Load for `minwa bench serve`: HTTP/1.1 clients on loopback, cheap enough not to be the bottleneck.

Each client is one keep-alive connection written by hand on asyncio streams (a request is two writes and
two reads, no HTTP library per request), so on a 2-core machine the clients take little of the CPU the
server needs. ``closed_loop`` keeps N clients each with one request in flight (N = concurrency);
``open_loop`` sends at a fixed rate (Poisson arrivals) whatever the answers, so latency at a given load is
measured without the clients slowing down with the server. Both are bounded in time and in count.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, answered 200 inside the window
    errors: dict = field(default_factory=dict)  # anything else inside the window: status or exception -> count
    seconds: float = 0.0  # the window's length

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def fail(self, why) -> None:
        self.errors[str(why)] = self.errors.get(str(why), 0) + 1

    def summary(self) -> dict:
        lat = np.asarray(self.latencies) * 1000
        pct = (lambda q: round(float(np.percentile(lat, q)), 1)) if len(lat) else (lambda q: None)
        return {"images_per_s": round(len(lat) / self.seconds, 2) if self.seconds else 0.0, "requests": len(lat),
                "failed": self.failed, "errors": self.errors, "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
                "seconds": round(self.seconds, 1)}


class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def post(self, body: bytes, timeout: float) -> int:
        """POST /v1/classify with ``body``; the status code (the answer is read whole and dropped)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST /v1/classify HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        try:
            self.writer.write(head + body)
            return await asyncio.wait_for(self._answer(), timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
            self.close()
            raise

    async def _answer(self) -> int:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
        await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def closed_loop(host: str, port: int, bodies: list[bytes], clients: int, seconds: float,
                      max_seconds: float, timeout: float = 300.0, warmup: float = 2.0) -> Tally:
    """``clients`` clients, each sending its next request when its last is answered. Warm-up: ``warmup``
    seconds and until every client has had one answer (the steady state); then the window, in which every
    answer counts: ``seconds`` and at least one more answer per client, ``max_seconds`` in all at most."""
    tally, answered = Tally(), [0] * clients
    start = time.perf_counter()
    phase = {"window": None, "end": None}

    async def client(i: int) -> None:
        conn, k = Connection(host, port), i
        while phase["end"] is None:
            t0 = time.perf_counter()
            try:
                status = await conn.post(bodies[k % len(bodies)], timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
                status = type(e).__name__
            t1 = time.perf_counter()
            k += clients
            answered[i] += 1
            if phase["window"] is not None and (phase["end"] is None or t1 <= phase["end"]):
                if status == 200:
                    tally.latencies.append(t1 - t0)
                else:
                    tally.fail(status)
        conn.close()

    async def clock() -> None:
        while (min(answered) < 1 or time.perf_counter() - start < warmup) and time.perf_counter() - start < max_seconds / 2:
            await asyncio.sleep(0.05)
        phase["window"] = w = time.perf_counter()
        base = list(answered)
        while (time.perf_counter() - w < seconds or min(a - b for a, b in zip(answered, base)) < 1) \
                and time.perf_counter() - start < max_seconds:
            await asyncio.sleep(0.05)
        phase["end"] = time.perf_counter()
        tally.seconds = phase["end"] - w

    await asyncio.gather(clock(), *(client(i) for i in range(clients)))
    return tally


async def open_loop(host: str, port: int, bodies: list[bytes], rate: float, seconds: float,
                    timeout: float = 300.0, seed: int = 0) -> Tally:
    """Requests at ``rate`` per second (Poisson arrivals) for ``seconds``; latency from the planned send
    time, so a client-side wait for a free connection counts against the server too."""
    rng, tally, pool, tasks = random.Random(seed), Tally(), [], []
    start = time.perf_counter()

    async def one(k: int, planned: float) -> None:
        reused = bool(pool)
        conn = pool.pop() if pool else Connection(host, port)
        for attempt in range(2):  # once more on a fresh connection when an idle kept-alive one was closed
            try:
                status = await conn.post(bodies[k % len(bodies)], timeout)
                break
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
                status = type(e).__name__
                if not reused or attempt or isinstance(e, asyncio.TimeoutError):
                    break
        if status == 200:
            tally.latencies.append(time.perf_counter() - planned)
            pool.append(conn)
        else:
            tally.fail(status)
            conn.close()

    t, k = start, 0
    while t - start < seconds:
        t += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, t - time.perf_counter()))
        tasks.append(asyncio.create_task(one(k, t)))
        k += 1
    await asyncio.gather(*tasks)
    tally.seconds = seconds
    for conn in pool:
        conn.close()
    return tally
