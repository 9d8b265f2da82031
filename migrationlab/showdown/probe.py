"""The API probe: the talk's curl loop, measured.

Every endpoint gets requests at a fixed rate, whatever became of the earlier ones (open loop): a request
hanging behind a migration's lock never delays the next send, so a stall shows up as requests piling up, not as
a quiet gap. Like curl, each request opens its own connection and gives up after `timeout_s`; each is recorded
with its send time, latency, HTTP status and error.

It runs on one asyncio event loop in a background thread: a hung request costs a socket, not a thread, and the
whole probe costs about a hundredth of a core at 40 requests a second (measured: `cpu_s` after `stop`).
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from migrationlab.showdown.clock import Clock
from migrationlab.processes import favour_this_thread, notify_without_waiting


@dataclass(frozen=True)
class Target:
    """One endpoint to probe: `name` is how the report calls it (e.g. "list_large"); `host` is an IP address.

    With `random_id_up_to`, each request asks for `?id=N`, N random in 1..random_id_up_to; a `query` template
    ("device_id={id}") is sent instead, with {id} such a random row number. Without either, the request names
    nothing, as the talk's curl loop: /update_order/ then updates a random row that exists.
    """

    name: str
    host: str
    port: int
    method: str
    path: str
    random_id_up_to: int = 0
    query: str = ""

    def request(self, pick: random.Random) -> bytes:
        query = self.query or ("id={id}" if self.random_id_up_to else "")
        if "{id}" in query:
            query = query.replace("{id}", str(pick.randint(1, max(self.random_id_up_to, 1))))
        path = f"{self.path}?{query}" if query else self.path
        lines = [f"{self.method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 "User-Agent: migrationlab-showdown", "Connection: close"]
        if self.method == "POST":
            lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


@dataclass(frozen=True)
class Request:
    """One probe request. A request that timed out has latency_s = the timeout (it took at least that).

    It failed as the talk's curl loop counts a failure: any answer but 200 (a 404 on stage prints red too), or no
    answer within the timeout (a timeout, a refused or reset connection)."""

    endpoint: str
    sent_s: float
    latency_s: float
    status: int | None
    error: str | None

    @property
    def failed(self) -> bool:
        return self.status != 200


class Probe:
    """Send to every target at `rate_per_s`, each request giving up after `timeout_s`."""

    def __init__(self, clock: Clock, rate_per_s: float, timeout_s: float):
        if rate_per_s <= 0 or timeout_s <= 0:
            raise ValueError("the probe needs a positive rate and timeout")
        self.clock = clock
        self.period_s = 1.0 / rate_per_s
        self.timeout_s = timeout_s
        self.sent = 0
        self.max_send_lag_s = 0.0  # how late the latest send left compared to its schedule, at worst
        self.cpu_s = 0.0  # CPU time of the probe's thread, known after stop()
        self._targets: list[Target] = []
        self._records: list[Request] = []
        self._in_flight: dict[int, tuple[str, float]] = {}
        self._in_flight_ports: dict[int, int] = {}  # the port each request in flight went to
        self._redirects: dict[int, int | None] = {}  # see redirect()
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="showdown-probe", daemon=True)
        self._schedulers: list[asyncio.Task] = []
        self._requests: set[asyncio.Task] = set()
        self._stopped = False
        self._pick = random.Random()

    # -- control (from any thread) ------------------------------------------------------------------------------

    def add_target(self, target: Target) -> None:
        """Start probing `target`; works before and after start()."""
        self._targets.append(target)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._schedule, target, len(self._targets) - 1)

    def redirect(self, port: int, to_port: int | None) -> None:
        """From now on, send what went to `port` to `to_port` instead (a deploy: the new release serves there),
        or nothing at all (None: its server is about to stop). Requests in flight finish where they went."""
        with self._changed:
            self._redirects[port] = to_port

    def in_flight_to(self, port: int) -> int:
        """How many requests sent to `port` (after redirects) have no answer yet."""
        return sum(1 for sent_to in list(self._in_flight_ports.values()) if sent_to == port)

    def _port_of(self, target: Target) -> int | None:
        port = target.port
        while port in self._redirects:
            port = self._redirects[port]
            if port is None:
                return None
        return port

    def start(self) -> None:
        self._thread.start()
        for index, target in enumerate(self._targets):
            self._loop.call_soon_threadsafe(self._schedule, target, index)

    def stop(self, drain: bool = True) -> None:
        """Stop sending. With `drain`, wait for the requests in flight (at most the timeout); else drop them."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(drain), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()

    # -- what it saw (from any thread) --------------------------------------------------------------------------

    def records(self, since: int = 0) -> list[Request]:
        """The requests answered or given up so far, in that order; `since` skips the first ones."""
        return self._records[since:]

    def in_flight(self) -> list[tuple[str, float]]:
        """(endpoint, sent_s) of every request sent and not answered yet."""
        return list(self._in_flight.values())

    def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until `condition()` holds; it is checked again whenever a request is sent or answered."""
        with self._changed:
            return self._changed.wait_for(condition, timeout_s)

    # -- the event loop's side ----------------------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        favour_this_thread()
        try:
            self._loop.run_forever()
        finally:
            self.cpu_s = time.thread_time()

    def _notify(self) -> None:
        notify_without_waiting(self._changed)

    def _schedule(self, target: Target, index: int) -> None:
        if self._stopped:
            return
        # Spread the targets over one period so their sends do not coincide: 0, 1/2, 1/4, 3/4, ...
        phase = ((index * 0.5) + (index // 2) * 0.25) % 1.0 * self.period_s
        self._schedulers.append(self._loop.create_task(self._send_forever(target, phase)))

    async def _send_forever(self, target: Target, phase_s: float) -> None:
        first = self._loop.time() + phase_s
        count = 0
        while True:
            due = first + count * self.period_s
            delay = due - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.max_send_lag_s = max(self.max_send_lag_s, self._loop.time() - due)
            port = self._port_of(target)
            if port is None:  # its server is gone (redirect): stop sending to it
                return
            task = self._loop.create_task(self._request(target, port))
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)
            count += 1

    async def _request(self, target: Target, port: int) -> None:
        sent = self._loop.time()
        sent_s = self.clock.since_origin(sent)
        key = id(asyncio.current_task())
        self._in_flight[key] = (target.name, sent_s)
        self._in_flight_ports[key] = port
        self.sent += 1
        self._notify()
        status, error = None, None
        try:
            async with asyncio.timeout(self.timeout_s):
                status = await self._exchange(target, port)
        except TimeoutError:
            error = "timeout"
        except ConnectionRefusedError:
            error = "connection refused"
        except ConnectionResetError:
            error = "connection reset"
        except (OSError, ValueError) as failure:
            error = str(failure) or type(failure).__name__
        finally:
            self._in_flight.pop(key, None)
            self._in_flight_ports.pop(key, None)
        latency = self.timeout_s if error == "timeout" else self._loop.time() - sent
        self._records.append(Request(target.name, sent_s, latency, status, error))
        self._notify()

    async def _exchange(self, target: Target, port: int) -> int:
        # Plain non-blocking socket calls: half the CPU of asyncio's streams, which matters on a 2-core machine.
        connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        connection.setblocking(False)
        try:
            await self._loop.sock_connect(connection, (target.host, port))
            await self._loop.sock_sendall(connection, target.request(self._pick))
            answer = bytearray()
            while chunk := await self._loop.sock_recv(connection, 65536):  # up to the server's close
                answer += chunk
        finally:
            connection.close()  # on a timeout too: the server sees the client go, as with curl
        status_line = bytes(answer[: answer.find(b"\r\n")]).split()
        if len(status_line) < 2 or not status_line[1].isdigit():
            raise ValueError("not an HTTP answer")
        return int(status_line[1])

    async def _shutdown(self, drain: bool) -> None:
        for scheduler in self._schedulers:
            scheduler.cancel()
        await asyncio.gather(*self._schedulers, return_exceptions=True)
        if not drain:
            for request in self._requests:
                request.cancel()
        await asyncio.gather(*list(self._requests), return_exceptions=True)
