"""Guards between untrusted agent files and MLIR's native parsers (`spec/dialect.md`, "Limits").

MLIR's parsers are C++ that trusts its input: deep nesting overflows the parser's stack, a string attribute
holding invalid UTF-8 aborts the Python bindings, and one changed byte in a bytecode file can corrupt the heap
or make the reader allocate gigabytes. So:

- text is pre-checked here (size, UTF-8, string escapes, bracket nesting) before MLIR sees it;
- bytecode is read in a forked child under memory, CPU and wall-clock limits; the child prints the module as
  text, and the parent parses that text like any other, after the same pre-checks. Whatever the reader does
  to the child's heap stays in the child.
"""

from __future__ import annotations

import faulthandler
import functools
import os
import re
import resource
import select
import signal
import tempfile
import time

from hetagent.errors import IRError

MAX_BYTES = 64 * 2**20  # text file, or the text form of a bytecode file
MAX_NESTING = 200  # brackets ({ ( [ <) open at once; a region level costs about two
BYTECODE_MEMORY = 2**30  # bytes the bytecode reader may add to the process
BYTECODE_SECONDS = 10.0

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"?|//[^\n]*|->|[{}()\[\]<>]', re.S)
_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{2})|(.))", re.S)
_SIMPLE_ESCAPES = {'"': b'"', "\\": b"\\", "n": b"\n", "t": b"\t"}
_OPENERS = "{([<"


def check_text(data: bytes | str, origin: str) -> str:
    """The text, decoded, if MLIR's text parser may safely see it; `IRError` naming what is wrong if not."""
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates from a str built in Python
            raise IRError(f"{origin}: not valid UTF-8 at character {exc.start}; agent modules are UTF-8 text") from None
    if len(data) > MAX_BYTES:
        raise IRError(f"{origin}: {len(data):,} bytes; agent modules are limited to {MAX_BYTES:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_col(data, exc.start)
        raise IRError(f"{origin}:{line}:{column}: error: byte 0x{data[exc.start]:02x} is not valid UTF-8; agent "
                      "modules are UTF-8 text") from None
    if "#" in text:
        _check_location_aliases(text, origin)
    # Fast path: few brackets and no escapes cannot break either limit.
    if "\\" not in text and sum(text.count(c) for c in _OPENERS) <= MAX_NESTING:
        return text
    depth = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"':
            if "\\" in token:
                _check_string(token, text, match.start(), origin)
        elif token in _OPENERS:
            depth += 1
            if depth > MAX_NESTING:
                line, column = _line_col(text, match.start())
                raise IRError(f"{origin}:{line}:{column}: error: nesting deeper than {MAX_NESTING} levels of "
                              "brackets (regions, dictionaries, arrays, types); agent modules are limited to "
                              f"{MAX_NESTING} (spec/dialect.md, Limits)")
        elif token in "})]>":
            depth = max(depth - 1, 0)
    return text


_LOC_ALIAS = re.compile(r"^#([\w$.-]+)\s*=\s*loc\(", re.M)
_ALIAS_USE = re.compile(r"#([\w$.-]+)")


def _check_location_aliases(text: str, origin: str) -> None:
    """A location alias (`#loc3 = loc(...)`) may only be used as a location: as an attribute's value it makes the
    Python bindings throw through C++ (std::terminate) when the attribute is read."""
    aliases = set(_LOC_ALIAS.findall(text))
    if not aliases:
        return
    for use in _ALIAS_USE.finditer(text):
        if use.group(1) not in aliases:
            continue
        start = use.start()
        line_start = text.rfind("\n", 0, start) + 1
        if start == line_start or text.startswith("loc(", start - 4):
            continue  # its definition, or an op's loc(#alias)
        if _LOC_ALIAS.match(text, line_start):
            continue  # inside another location's definition (callsite, fused)
        line, column = _line_col(text, start)
        raise IRError(f"{origin}:{line}:{column}: error: location #{use.group(1)} is used as an attribute value; "
                      "locations may only follow an op as loc(...)")


def _check_string(token: str, text: str, offset: int, origin: str) -> None:
    """A string literal whose escapes (`\\XX` is a raw byte) must still spell valid UTF-8."""
    raw = bytearray()
    position = 1
    for escape in _ESCAPE.finditer(token, 1):
        raw += token[position : escape.start()].encode("utf-8")
        hex_byte, other = escape.groups()
        raw += bytes([int(hex_byte, 16)]) if hex_byte else _SIMPLE_ESCAPES.get(other, other.encode("utf-8"))
        position = escape.end()
    try:
        bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        line, column = _line_col(text, offset)
        raise IRError(f"{origin}:{line}:{column}: error: string {token[:40]}{'...' if len(token) > 40 else ''} "
                      "spells invalid UTF-8 through its \\XX escapes; names and strings must be UTF-8") from None


def _line_col(data: bytes | str, offset: int) -> tuple[int, int]:
    newline = b"\n" if isinstance(data, bytes) else "\n"
    line_start = data.rfind(newline, 0, offset) + 1
    return data.count(newline, 0, offset) + 1, offset - line_start + 1


# ---------------------------------------------------------------------------------------------- bytecode


def bytecode_to_text(data: bytes, origin: str) -> str:
    """The module in `data` (MLIR bytecode) as generic text with locations, read by a child process under
    BYTECODE_MEMORY / BYTECODE_SECONDS limits; `IRError` if it is malformed or the reader fails."""
    context = _reader_context()
    with tempfile.TemporaryFile() as stderr:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: never returns
            os.close(read_end)
            _child(context, data, origin, write_end, stderr.fileno())
        os.close(write_end)
        try:
            payload, failure = _collect(pid, read_end)
        finally:
            os.close(read_end)
        if failure is None:
            kind, body = payload[:1], payload[1:]
            if kind == b"T":
                return check_text(_name_source(body, origin), origin)
            if kind == b"E":
                raise IRError(body.decode("utf-8", "replace"))
            failure = "it ended without an answer"
        stderr.seek(0)
        tail = stderr.read()[-400:].decode("utf-8", "replace").strip()
    raise IRError(f"{origin}: the MLIR bytecode reader failed on this file ({failure}"
                  + (f"; it said: {tail}" if tail else "") + "). The file is corrupt or hostile; write the agent "
                  "as text (.mlir) or re-save it with `hetagent ir decompose -o FILE.mlirbc` from its source")


def _name_source(text: bytes, origin: str) -> bytes:
    """Locations the bytecode recorded without a file name ("-", parsed from memory) get the file's name, so
    that messages about its ops name the file they came from."""
    name = b"".join(c.encode() if c.isprintable() and c not in '"\\'
                    else b"".join(b"\\%02X" % b for b in c.encode("utf-8", "surrogateescape")) for c in origin)
    return text.replace(b'loc("-":', b'loc("' + name + b'":')


def _collect(pid: int, fd: int) -> tuple[bytes, str | None]:
    """Read the child's answer within the time and size limits; reap it. Returns (payload, failure or None)."""
    deadline = time.monotonic() + BYTECODE_SECONDS
    chunks, size, failure = [], 0, None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            failure = f"no answer within {BYTECODE_SECONDS:g} s"
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        size += len(chunk)
        if size > MAX_BYTES + 1:
            failure = f"its text form exceeds {MAX_BYTES:,} bytes"
            break
        chunks.append(chunk)
    if failure is not None:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if failure is None and os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        failure = f"killed by {signal.Signals(number).name}" + (
            f" (it may use at most {BYTECODE_MEMORY >> 20} MiB)" if number == signal.SIGABRT else "")
    elif failure is None and os.WEXITSTATUS(status) != 0:
        failure = "it raised an exception"
    return b"".join(chunks), failure


@functools.cache
def _reader_context():
    """The context children parse in: each gets its own copy of it with the fork, so it is made once here (a new
    context costs ~40 ms) and never used by this process."""
    from hetagent.ir.context import new_context

    context = new_context()
    context.enable_multithreading(False)
    return context


def _child(context, data: bytes, origin: str, out: int, stderr: int) -> None:  # pragma: no cover - runs after fork
    status = 1
    try:
        faulthandler.disable()  # a crash here is the parent's to report, not a Python traceback on its stderr
        os.dup2(stderr, 2)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        address_space = _address_space()
        resource.setrlimit(resource.RLIMIT_AS, (address_space + BYTECODE_MEMORY, address_space + BYTECODE_MEMORY))
        cpu = int(BYTECODE_SECONDS) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        from iree.compiler import ir

        from hetagent.ir.context import parse_error

        try:
            module = ir.Module.parse(data, context)
            answer = b"T" + module.operation.get_asm(binary=True, enable_debug_info=True)
        except ir.MLIRError as exc:
            answer = b"E" + str(parse_error(origin, exc)).encode("utf-8", "replace")
        _write_all(out, answer)
        status = 0
    except BaseException as exc:  # noqa: BLE001 - anything at all: the parent reports it from the exit status
        os.write(2, f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")[-300:])
        status = 3
    finally:
        os._exit(status)


def _write_all(fd: int, data: bytes) -> None:  # pragma: no cover - runs after fork
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[: 1 << 20]) :]


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()
