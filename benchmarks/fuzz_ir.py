"""Fuzz the agent-file readers: mutated text and bytecode through load -> verify -> decompose -> print.

Every input must end in a result or a clear `HetagentError`: a crash (the worker dies by a signal), a traceback
(any other exception) or a hang (no answer within --timeout) is a failure. Inputs are mutated from the examples
and from adversarial seeds (deep nesting, invalid UTF-8 in names, long reversed chains, recursion through
agent.call, NaN attributes). Workers are child processes that take inputs in batches and answer one line per
input, so a crash is pinned on the input that caused it; the worker is then replaced.

    python benchmarks/fuzz_ir.py                    # 10,000 inputs
    python benchmarks/fuzz_ir.py --malloc-check     # the same under glibc's malloc checker (libc_malloc_debug)
    python benchmarks/fuzz_ir.py --inputs 2000 --json

Prints counts of outcomes, crashes / tracebacks / hangs (with the inputs kept under --keep), and the peak
resident memory of the workers and of the bytecode readers they forked.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MALLOC_DEBUG = ("/lib/x86_64-linux-gnu/libc_malloc_debug.so.0", "/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0",
                "/lib64/libc_malloc_debug.so.0", "/usr/lib64/libc_malloc_debug.so.0")


# ---------------------------------------------------------------------------------------------- inputs


def _graph(body: str, name: str = "g") -> str:
    return ('"agent.graph"() ({\n  %q = "input.query"() : () -> !agent.text\n' + body +
            f'}}) {{sym_name = "{name}"}} : () -> ()\n')


def adversarial_seeds() -> list[bytes]:
    """Inputs of each class that broke the readers before they were guarded (issue 16)."""
    ret = '  "agent.return"(%q) : (!agent.text) -> ()\n'
    seeds = []
    # nested regions, dictionaries, arrays past MLIR's parser stack
    for depth in (50, 99, 150, 2100):
        loops = "".join(f'%r{i} = "control.loop"(%q) ({{\n^bb0(%x{i}: !agent.text):\n' for i in range(depth))
        loops += "".join(f'"control.yield"(%x{i}) : (!agent.text) -> ()\n}}) {{max_trips = 2 : i64, expected_trips = '
                         "1.0 : f64} : (!agent.text) -> !agent.text\n" for i in reversed(range(depth)))
        seeds.append(_graph("  " + loops + ret).encode())
    seeds.append(_graph('  %r = "data.transform"(%q) {fn = "identity", x = ' + "{a = " * 5400 + "1" + "}" * 5400 +
                        "} : (!agent.text) -> !agent.text\n" + ret).encode())
    seeds.append(_graph('  %r = "data.transform"(%q) {fn = "identity", x = ' + "[" * 6700 + "]" * 6700 +
                        "} : (!agent.text) -> !agent.text\n" + ret).encode())
    # invalid UTF-8: raw bytes, and \XX escapes in an op name, a sym_name and a name
    seeds.append(_graph(ret, name="badX").encode().replace(b"badX", b"bad\xff"))
    seeds.append(_graph(ret, name="bad\\ff").encode())
    seeds.append(_graph('  %r = "llm.c\\C3all"(%q) : (!agent.text) -> !agent.text\n' + ret).encode())
    seeds.append(_graph('  %r = "llm.call"(%q) {model = "m", name = "\\E2\\28\\A1"} : (!agent.text) -> !agent.text\n'
                        + ret).encode())
    # a 1,500-op chain written in reverse order, and a self-calling agent
    chain = "".join(f'  %v{i} = "data.transform"(%v{i - 1}) {{fn = "identity"}} : (!agent.text) -> !agent.text\n'
                    for i in range(1500, 0, -1)).replace("%v0)", "%q)")
    seeds.append(_graph(chain + '  "agent.return"(%v1500) : (!agent.text) -> ()\n').encode())
    seeds.append(b'"agent.graph"() ({\n^bb0(%q: !agent.text):\n'
                 b'  %r = "agent.call"(%q) {callee = @g} : (!agent.text) -> !agent.text\n'
                 b'  "agent.return"(%r) : (!agent.text) -> ()\n}) {sym_name = "g"} : () -> ()\n')
    # numbers that are not finite
    for value in ("0x7FF8000000000000", "0x7FF0000000000000", "1.0e400"):
        seeds.append(_graph(ret).replace('sym_name = "g"', f'sym_name = "g", sla_ms = {value} : f64').encode())
    return seeds


def seeds() -> tuple[list[bytes], list[bytes]]:
    """(text seeds, bytecode seeds): the examples and the adversarial inputs, each also as bytecode."""
    from hetagent.ir import parse, to_bytecode

    texts = [p.read_bytes() for p in sorted((ROOT / "examples").glob("*.mlir"))]
    bytecode = []
    for text in texts + adversarial_seeds()[:3]:
        try:
            bytecode.append(to_bytecode(parse(text)))
        except Exception:  # noqa: BLE001 - an adversarial seed that does not parse has no bytecode form
            pass
    return texts + adversarial_seeds(), bytecode


_NUMBER = re.compile(rb"\b\d+(\.\d+)?\b")
_INTERESTING = [b"nan", b"inf", b"-1", b"0", b"1e308", b"18446744073709551615", b"0x7FF8000000000000", b"\\FF",
                b"{", b"}", b"(", b")", b"[", b"<", b">", b'"', b"\\", b"\x00", b"\xff", b"@g", b"%q", b"^bb0"]


def mutate(data: bytes, rng: random.Random, donors: list[bytes]) -> bytes:
    data = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        if not data:
            data += rng.choice(donors)[:64]
        kind = rng.randrange(9)
        at = rng.randrange(len(data))
        if kind == 0:  # flip a bit
            data[at] ^= 1 << rng.randrange(8)
        elif kind == 1:  # set a byte
            data[at] = rng.randrange(256)
        elif kind == 2:  # delete a run
            del data[at : at + rng.choice((1, 2, 8, 64))]
        elif kind == 3:  # insert an interesting token
            data[at:at] = rng.choice(_INTERESTING)
        elif kind == 4:  # duplicate a run (nesting, repetition)
            run = bytes(data[at : at + rng.choice((4, 16, 64, 512))])
            data[at:at] = run * rng.choice((1, 2, 16, 256))
        elif kind == 5:  # splice another seed in
            donor = rng.choice(donors)
            start = rng.randrange(len(donor))
            data[at:at] = donor[start : start + rng.choice((16, 256, 4096))]
        elif kind == 6:  # truncate
            del data[at:]
        elif kind == 7:  # replace a number
            numbers = list(_NUMBER.finditer(data))
            if numbers:
                match = rng.choice(numbers)
                data[match.start() : match.end()] = rng.choice(_INTERESTING[:8])
        else:  # a varint-sized byte set high (bytecode lengths and counts)
            data[at] = rng.choice((0x7F, 0x80, 0xFF, 0xFE))
    return bytes(data)


def generate(count: int, seed: int, bytecode_share: float) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    texts, bytecode = seeds()
    inputs = [("text", t) for t in texts] + [("bytecode", b) for b in bytecode]
    while len(inputs) < count:
        if rng.random() < bytecode_share:
            inputs.append(("bytecode", mutate(rng.choice(bytecode), rng, bytecode)))
        else:
            inputs.append(("text", mutate(rng.choice(texts), rng, texts)))
    return inputs[:count]


# ---------------------------------------------------------------------------------------------- the worker


def worker() -> None:
    """Read input paths on stdin, one per line; answer `index outcome detail` per input on stdout."""
    import traceback

    from hetagent.errors import HetagentError
    from hetagent.ir import decompose, load, to_text

    if os.environ.get("FUZZ_READER_SECONDS"):
        from hetagent.ir import guard

        guard.BYTECODE_SECONDS = float(os.environ["FUZZ_READER_SECONDS"])
    if os.environ.get("FUZZ_UNGUARDED"):  # the baseline: MLIR's readers called directly, as before issue 16
        from iree.compiler import ir

        from hetagent.ir.context import new_context, parse_error

        def load(path):  # noqa: F811
            try:
                return ir.Module.parseFile(path, new_context())
            except ir.MLIRError as exc:
                raise parse_error(path, exc) from None

    for line in sys.stdin:
        index, path = line.split(" ", 1)
        path = path.strip()
        began = time.monotonic()
        try:
            module = decompose(load(path))
            to_text(module)
            outcome, detail = "ok", ""
        except HetagentError as exc:
            outcome, detail = "error", str(exc).splitlines()[0][:120]
            if not str(exc).startswith(path):
                outcome = "traceback"
                detail = "error message does not name the file: " + detail
        except BaseException as exc:  # noqa: BLE001 - what the fuzzer exists to find
            outcome, detail = "traceback", "".join(traceback.format_exception_only(type(exc), exc)).strip()[:300]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        sys.stdout.write(json.dumps([int(index), outcome, detail, rss, child_rss, time.monotonic() - began]) + "\n")
        sys.stdout.flush()


# ---------------------------------------------------------------------------------------------- the driver


class Worker:
    def __init__(self, env: dict):
        self.process = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        self.buffer = b""
        self.input: int | None = None  # the input it is working on
        self.since = 0.0

    def send(self, index: int, path: str) -> None:
        self.input, self.since = index, time.monotonic()
        self.process.stdin.write(f"{index} {path}\n".encode())
        self.process.stdin.flush()

    def read(self):
        """After select said readable: an answer, None (not complete yet), or the exit status if it died."""
        chunk = os.read(self.process.stdout.fileno(), 65536)
        if not chunk:
            return self.process.wait()
        self.buffer += chunk
        if b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def run(inputs: list[tuple[str, bytes]], *, workers: int, timeout: float, env: dict, keep: Path | None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="hetagent-fuzz-"))
    paths = []
    for index, (kind, data) in enumerate(inputs):
        path = tmp / f"{index:06d}.{'mlirbc' if kind == 'bytecode' else 'mlir'}"
        path.write_bytes(data)
        paths.append(str(path))
    outcomes: dict[str, int] = {}
    failures: list[dict] = []
    peak_kb, peak_child_kb = 0, 0
    slowest: list = []
    queue = list(range(len(inputs)))[::-1]
    pool = [Worker(env) for _ in range(workers)]
    started = time.monotonic()

    def record(index: int, outcome: str, detail: str) -> None:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome in ("crash", "traceback", "hang"):
            failures.append({"input": index, "kind": inputs[index][0], "outcome": outcome, "detail": detail})
            if keep:
                keep.mkdir(parents=True, exist_ok=True)
                Path(paths[index]).replace(keep / Path(paths[index]).name)

    while True:
        for w in pool:
            if w.input is None and queue:
                index = queue.pop()
                w.send(index, paths[index])
        busy = [w for w in pool if w.input is not None]
        if not busy:
            break
        ready, _, _ = select.select([w.process.stdout for w in busy], [], [], 0.5)
        for slot, w in enumerate(pool):
            if w.input is None:
                continue
            if w.process.stdout in ready:
                answer = w.read()
                if answer is None:
                    continue
                if isinstance(answer, int):
                    record(w.input, "crash", f"worker died (status {answer})")
                    pool[slot] = Worker(env)
                    continue
                _, outcome, detail, rss, child_rss, seconds = answer
                peak_kb, peak_child_kb = max(peak_kb, rss), max(peak_child_kb, child_rss)
                slowest = sorted(slowest + [(round(seconds, 2), w.input, inputs[w.input][0], detail[:80])])[-5:]
                record(w.input, outcome, detail)
                w.input = None
            elif time.monotonic() - w.since > timeout:
                record(w.input, "hang", f"no answer within {timeout:g} s")
                w.kill()
                pool[slot] = Worker(env)
    for w in pool:
        w.process.stdin.close()
        w.process.wait()
    for path in paths:
        Path(path).unlink(missing_ok=True)
    tmp.rmdir()
    return {"inputs": len(inputs), "text": sum(k == "text" for k, _ in inputs),
            "bytecode": sum(k == "bytecode" for k, _ in inputs), "outcomes": outcomes,
            "crashes": outcomes.get("crash", 0), "tracebacks": outcomes.get("traceback", 0),
            "hangs": outcomes.get("hang", 0), "peak_worker_rss_mb": round(peak_kb / 1024, 1),
            "peak_reader_rss_mb": round(peak_child_kb / 1024, 1), "seconds": round(time.monotonic() - started, 1),
            "slowest": slowest[::-1], "failures": failures[:50]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--bytecode-share", type=float, default=0.4, help="share of mutated inputs that are bytecode")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one input may take (a hang after)")
    parser.add_argument("--malloc-check", action="store_true",
                        help="run the workers under glibc's malloc checker (GLIBC_TUNABLES=glibc.malloc.check=3)")
    parser.add_argument("--reader-seconds", type=float,
                        help="the bytecode reader's time limit (default: hetagent.ir.guard's, 10 s)")
    parser.add_argument("--unguarded", action="store_true",
                        help="baseline: call MLIR's readers directly, without hetagent.ir.guard")
    parser.add_argument("--keep", type=Path, help="move inputs that crash, raise or hang here")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return 0
    env = dict(os.environ, **({"FUZZ_UNGUARDED": "1"} if args.unguarded else {}),
               **({"FUZZ_READER_SECONDS": str(args.reader_seconds)} if args.reader_seconds else {}))
    if args.malloc_check:
        library = next((p for p in MALLOC_DEBUG if Path(p).exists()), None)
        if library is None:
            sys.exit("--malloc-check needs glibc's libc_malloc_debug.so.0 (glibc >= 2.34)")
        env.update(GLIBC_TUNABLES="glibc.malloc.check=3", LD_PRELOAD=library)
    inputs = generate(args.inputs, args.seed, args.bytecode_share)
    result = run(inputs, workers=args.workers, timeout=args.timeout, env=env, keep=args.keep)
    result["malloc_check"], result["unguarded"] = args.malloc_check, args.unguarded
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['inputs']:,} inputs ({result['text']:,} text, {result['bytecode']:,} bytecode) in "
              f"{result['seconds']} s{' under the malloc checker' if args.malloc_check else ''}"
              f"{' (unguarded baseline)' if args.unguarded else ''}")
        print("outcomes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result["outcomes"].items())))
        print(f"crashes {result['crashes']}, tracebacks {result['tracebacks']}, hangs {result['hangs']}")
        print(f"peak RSS: worker {result['peak_worker_rss_mb']} MB, bytecode reader {result['peak_reader_rss_mb']} MB")
        for seconds, index, kind, detail in result["slowest"]:
            print(f"  slow: #{index} {kind} {seconds} s: {detail}")
        for failure in result["failures"]:
            print(f"  #{failure['input']} {failure['kind']} {failure['outcome']}: {failure['detail']}")
    return 1 if result["crashes"] or result["tracebacks"] or result["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
