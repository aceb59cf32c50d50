"""A minimal independent streaming client (aiohttp), the yardstick of the real backend's client.

It shares nothing with ``chiron_gym``'s client: another HTTP library, its own prompts, its own
pacing. Each request is sent at its arrival time after ``t0`` (the host's monotonic clock), at
most ``cap`` in flight (first come, first served, as the backend's router does), and timed at
each ``data:`` line it reads.

As a program (``python -m tests.real.reference_client IN.npz OUT.npz``) it loads the requests
and settings from ``IN.npz``, prints ``ready``, reads ``t0`` from its standard input, replays,
and writes ``first`` and ``last`` (seconds after ``t0``) to ``OUT.npz``: so that it can replay
beside the real backend, in its own process, on the backend's clock.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import numpy as np


def _prompt(run: int, i: int, length: int) -> list[int]:
    # token 300 + run never opens one of chiron_gym's prompts (ids 5..254): no prefix is shared
    head = [7, 300 + run % 16, 10 + i % 250, 10 + i // 250 % 250]
    return (head + [9] * length)[:length]


def replay(
    url: str,
    model: str,
    arrival: np.ndarray,
    prompt: np.ndarray,
    output: np.ndarray,
    cap: int,
    run: int = 0,
    t0: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per request, the seconds from ``t0`` (default: now) to its first and its last chunk."""
    n = len(arrival)
    first, last = np.full(n, np.nan), np.full(n, np.nan)

    async def all_requests() -> None:
        gate = asyncio.Semaphore(cap)
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True)
        ) as session:
            start = time.monotonic() if t0 is None else t0

            async def one(i: int) -> None:
                await asyncio.sleep(max(0.0, start + arrival[i] - time.monotonic()))
                body = {
                    "model": model,
                    "prompt": _prompt(run, i, int(prompt[i])),
                    "max_tokens": int(output[i]),
                    "ignore_eos": True,
                    "temperature": 0.0,
                    "stream": True,
                }
                async with gate, session.post(f"{url}/v1/completions", json=body) as resp:
                    resp.raise_for_status()
                    async for line in resp.content:
                        if line.startswith(b"data:") and not line.startswith(b"data: [DONE]"):
                            now = time.monotonic() - start
                            if np.isnan(first[i]):
                                first[i] = now
                            last[i] = now

            await asyncio.gather(*(one(i) for i in range(n)))

    asyncio.run(all_requests())
    return first, last


def main(argv: list[str]) -> int:
    src = np.load(argv[0])
    print("ready", flush=True)
    t0 = float(sys.stdin.readline())
    first, last = replay(
        str(src["url"]),
        str(src["model"]),
        src["arrival"],
        src["prompt"],
        src["output"],
        int(src["cap"]),
        int(src["run"]),
        t0,
    )
    np.savez(argv[1], first=first, last=last)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
