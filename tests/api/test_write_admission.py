"""Writes waiting in their threads (on a lock, say) cannot take every thread of the API's pool: a read is answered
while 45 writes wait, at most all but READ_THREADS of the pool run writes at once, and every write is answered once
what held them goes. A real FastAPI app over ASGI, its sync routes in anyio's real thread pool."""

from __future__ import annotations

import asyncio
import threading
import time

import anyio.to_thread
import httpx
from fastapi import FastAPI

from ctax.api.admission import READ_THREADS, WriteAdmission

WRITERS = 45


def app_with_stuck_writes(gate: threading.Event, running: list[int], peak: list[int]) -> FastAPI:
    app = FastAPI()
    lock = threading.Lock()

    @app.patch("/things/{thing}")
    def write(thing: int, body: dict[str, str]) -> dict[str, int]:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        gate.wait(30)  # a row lock held elsewhere
        with lock:
            running[0] -= 1
        return {"thing": thing}

    @app.delete("/things/{thing}")
    def delete(thing: int) -> dict[str, int]:
        return write(thing, {})

    @app.get("/things/{thing}")
    def read(thing: int) -> dict[str, int]:
        return {"thing": thing}

    app.add_middleware(WriteAdmission)
    return app


def test_a_read_is_answered_while_writes_hold_threads_and_every_write_passes_after() -> None:
    gate, running, peak = threading.Event(), [0], [0]
    app = app_with_stuck_writes(gate, running, peak)

    async def drive() -> tuple[float, list[int], int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=60) as client:
            writes = [asyncio.create_task(client.patch(f"/things/{n}", json={"name": "x"}) if n % 3
                                          else client.delete(f"/things/{n}")) for n in range(WRITERS)]
            await asyncio.sleep(1.0)  # every write has arrived: those admitted wait in their threads
            threads = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
            began = time.monotonic()
            read = await client.get("/things/1")
            read_s = time.monotonic() - began
            assert read.status_code == 200
            admitted = running[0]
            gate.set()
            answers = await asyncio.gather(*writes)
            assert admitted == threads - READ_THREADS
            return read_s, [a.status_code for a in answers], threads

    read_s, statuses, threads = asyncio.run(drive())
    assert read_s < 2  # without the admission it waits for the gate (30 s): every thread holds a write
    assert statuses == [200] * WRITERS
    assert peak[0] == threads - READ_THREADS  # never more writes in threads at once
