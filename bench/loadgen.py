"""Load generators of B1: wrk with bench/intake.lua when installed, else a Python asyncio one."""
from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from .harness import log, percentile

LUA = Path(__file__).with_name("intake.lua")


def ensure_wrk() -> str | None:
    """wrk's path; installs Debian's package `wrk` when it is missing and we are root."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    log("wrk is missing: installing Debian's package wrk")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"], env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not shutil.which("wrk"):  # the package lists may be missing on a fresh machine
        subprocess.run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return shutil.which("wrk")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(wrk: str, url: str, bodies: list[bytes], duration: float, connections: int) -> dict:
    """Post ``bodies`` (in order, one per request) for ``duration`` seconds; answers by body index."""
    with tempfile.TemporaryDirectory(prefix="hub-bench-wrk-") as tmp:
        bodies_path, out_path = Path(tmp) / "bodies.jsonl", Path(tmp) / "out.json"
        bodies_path.write_bytes(b"\n".join(bodies) + b"\n")
        env = dict(os.environ, BENCH_BODIES=str(bodies_path), BENCH_OUT=str(out_path),
                   BENCH_THREADS=str(connections))
        cpu = _children_cpu()
        # -t == -c: one connection per thread (see intake.lua); a 10 s timeout keeps slow answers
        # in the latency figures instead of dropping them.
        proc = subprocess.run([wrk, "-t", str(connections), "-c", str(connections),
                               "-d", f"{duration:g}s", "--timeout", "10s", "-s", str(LUA), url],
                              env=env, capture_output=True, text=True, timeout=duration + 120)
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
        raw = json.loads(out_path.read_text())
    seconds = raw["duration_us"] / 1e6
    return {
        "generator": "wrk",
        "requests": raw["requests"],
        "seconds": seconds,
        "rps": raw["requests"] / seconds,
        "p50_ms": raw["latency_us"]["p50"] / 1000,
        "p90_ms": raw["latency_us"]["p90"] / 1000,
        "p99_ms": raw["latency_us"]["p99"] / 1000,
        "max_ms": raw["latency_us"]["max"] / 1000,
        "errors": raw["errors"],
        "resent": raw["wrapped"],
        "answers": {int(k): v for k, v in raw["answers"].items()},
        "generator_cpu_seconds": _children_cpu() - cpu,
    }


async def _client(host, port, path, bodies, counter, deadline, answers, latencies, errors):
    reader = writer = None
    while time.monotonic() < deadline:
        index = counter[0]
        counter[0] += 1
        if index >= len(bodies):
            counter[1] += 1  # resent: out of fresh bodies
            index %= len(bodies)
        body = bodies[index]
        started = time.monotonic()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (path.encode(), host.encode(), port,
                                                             len(body), body))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            await reader.readexactly(int(fields.get("content-length", 0)))
            if fields.get("connection", "").lower() == "close":
                writer.close()
                writer = None
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors[0] += 1
            if writer is not None:
                writer.close()
            writer = None
            continue
        latencies.append(time.monotonic() - started)
        answers.setdefault(index, status)
    if writer is not None:
        writer.close()


def run_python(url: str, bodies: list[bytes], duration: float, connections: int) -> dict:
    """The same measurement without wrk: asyncio clients with keep-alive, one request in flight each."""
    parts = urlsplit(url)
    answers: dict[int, int] = {}
    latencies: list[float] = []
    counter, errors = [0, 0], [0]

    async def main():
        deadline = time.monotonic() + duration
        await asyncio.gather(*(_client(parts.hostname, parts.port, parts.path, bodies, counter,
                                       deadline, answers, latencies, errors)
                               for _ in range(connections)))

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    asyncio.run(main())
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    ms = [v * 1000 for v in latencies]
    return {
        "generator": "python",
        "requests": len(latencies),
        "seconds": seconds,
        "rps": len(latencies) / seconds,
        "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90), "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
        "errors": {"socket": errors[0]},
        "resent": counter[1],
        "answers": answers,
        "generator_cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    }
