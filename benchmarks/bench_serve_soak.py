"""Serve soak (issue 16): hostile and careless clients against `hetagent serve`, memory and file descriptors over
time. Printed, not asserted:

    .venv/bin/python benchmarks/bench_serve_soak.py [--seconds 60] [--every 5]

One server (tiny-llama chat agent, default limits) on 127.0.0.1, and for the whole run, at once:

- slow clients: connections that send half a request line and then a byte every second (the header deadline must
  close them), and connections that send headers then dribble a body (the body deadline: 408);
- huge bodies: 50 MB requests, announced by Content-Length (refused before the body: 413 or a closed connection)
  and chunked without one (the body cap: 413);
- cancelled streams: streamed completions whose client hangs up after the first chunk;
- well-behaved clients: ordinary completions in a closed loop (the ones that must keep working).

Every `--every` seconds: the server process tree's resident memory (server + its workers, from /proc), the server's
open file descriptors and TCP connections, and the counts per client kind and status so far. At the end: the
same after a settling pause, so growth that does not come back (a leak) shows as the last row above the first.
All traffic stays on loopback; every loop is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AGENT = """"agent.graph"() ({
  %q = "input.query"() {tokens = 32 : i64} : () -> !agent.text
  %a = "llm.call"(%q) {model = "llama-3-8b", input_tokens = 64 : i64, output_tokens = 16 : i64, name = "answer"}
      : (!agent.text) -> !agent.text
  "agent.return"(%a) : (!agent.text) -> ()
}) {sym_name = "chat", sla_ms = 60000.0 : f64} : () -> ()
"""
HUGE = 50 * 1024 * 1024


def tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants (its workers), MB."""
    children = {pid}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if (parent := re.search(r"^PPid:\s+(\d+)", text, re.M)) and int(parent[1]) in children:
            children.add(int(status.parent.name))
    total = 0
    for child in children:
        try:
            total += int(re.search(r"^VmRSS:\s+(\d+)", (Path("/proc") / str(child) / "status").read_text(), re.M)[1])
        except (OSError, TypeError):
            continue
    return total / 1024


def open_fds(pid: int) -> tuple[int, int]:
    """The server's open file descriptors, and how many are sockets (one closing meanwhile is not counted)."""
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            continue
    return len(targets), sum(t.startswith("socket:") for t in targets)


async def _request(port: int, head: bytes, body_chunks=(), pause: float = 0.0, read: bool = True) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        for chunk in body_chunks:
            writer.write(chunk)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        if not read:
            return "sent"
        line = await asyncio.wait_for(reader.readline(), 30)
        return line.split(b" ")[1].decode() if line.startswith(b"HTTP/") else "closed"
    except (ConnectionError, asyncio.TimeoutError):
        return "closed"
    finally:
        writer.close()


def _post(path: str, length: int | None, extra: str = "") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{size}{extra}\r\n").encode()


async def soak(port: int, seconds: float, every: float, pid: int) -> list[dict]:
    import openai

    end = time.monotonic() + seconds
    counts: Counter = Counter()
    body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hello"}]}).encode()
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=60)

    async def forever(kind: str, make):
        while time.monotonic() < end:
            counts[(kind, await make())] += 1

    async def slow_headers():
        return await _request(port, b"POST /v1/chat/compl", [b"e"] * 60, pause=1.0)

    async def slow_body():
        return await _request(port, _post("/v1/chat/completions", len(body)), [body[i:i + 1] for i in range(len(body))],
                              pause=1.0)

    async def huge_announced():
        return await _request(port, _post("/v1/chat/completions", HUGE), [b"x" * (1 << 20)] * 50)

    async def huge_chunked():
        chunk = b"x" * (1 << 20)
        return await _request(port, _post("/v1/chat/completions", None),
                              [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"] * 50)

    async def status(call) -> str:
        try:
            return await call()
        except openai.APIStatusError as exc:  # 429 / 503 from admission control are answers too
            return str(exc.status_code)
        except openai.APIConnectionError:
            return "closed"

    async def cancelled_stream():
        async def call():
            stream = await client.chat.completions.create(model="chat", stream=True,
                                                          messages=[{"role": "user", "content": "stream"}])
            async for _ in stream:
                break
            await stream.close()
            return "cancelled"

        return await status(call)

    async def good():
        async def call():
            await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
            return "200"

        return await status(call)

    samples: list[dict] = []

    async def sample():
        start = time.monotonic()
        while time.monotonic() < end + every:
            fds, sockets = open_fds(pid)
            samples.append({"t_s": round(time.monotonic() - start, 1), "rss_mb": round(tree_rss_mb(pid), 1),
                            "fds": fds, "sockets": sockets, **{f"{k}:{s}": n for (k, s), n in sorted(counts.items())}})
            await asyncio.sleep(every)

    kinds = [("slow-headers", slow_headers)] * 8 + [("slow-body", slow_body)] * 4 + \
        [("huge", huge_announced), ("huge-chunked", huge_chunked)] * 2 + [("cancelled", cancelled_stream)] * 2 + \
        [("good", good)] * 2
    await asyncio.gather(sample(), *(forever(kind, make) for kind, make in kinds))
    await asyncio.sleep(5)  # let the server settle: what is still held now stays held
    fds, sockets = open_fds(pid)
    samples.append({"t_s": "settled", "rss_mb": round(tree_rss_mb(pid), 1), "fds": fds, "sockets": sockets})
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=5.0)
    args = parser.parse_args()
    agent = Path(tempfile.mkdtemp(prefix="soak-")) / "chat.mlir"
    agent.write_text(AGENT)
    process = subprocess.Popen([sys.executable, "-m", "hetagent", "--backends", "cpu", "serve", str(agent), "--port",
                                "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        for line in process.stdout:
            if found := re.search(r"serving \S+ on http://127\.0\.0\.1:(\d+)/v1", line):
                port = int(found[1])
                break
        else:
            raise SystemExit(f"hetagent serve exited {process.wait()}")
        rows = asyncio.run(soak(port, args.seconds, args.every, process.pid))
    finally:
        process.terminate()
        process.wait(30)
    columns = sorted({k for row in rows for k in row}, key=lambda k: (k not in ("t_s", "rss_mb", "fds", "sockets"), k))
    print("  ".join(columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")) for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
