"""Reading the user's JSON and TOML files with errors that name the file and what it should have been.

This is the one reader of user documents: every error (missing, a directory, unreadable, not UTF-8, nested
deeper than Python can parse, too large, a number that is not finite) becomes a `HetagentError` naming the file.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

from hetagent.errors import HetagentError

MAX_DOCUMENT_BYTES = 64 * 2**20
MAX_DOCUMENT_DEPTH = 64  # tables and arrays nested in one another; real documents use fewer than 8


def read_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file; `what` names it in errors ("plan", "model config")."""
    path = Path(path)
    text = read_text(path, what)
    try:
        return check_document(json.loads(text), path, what)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise HetagentError(f"{path}: the {what} file is not valid JSON: {_why(exc)}") from None


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; `what` names it in errors ("price book", "study")."""
    path = Path(path)
    text = read_text(path, what)
    try:
        return check_document(tomllib.loads(text), path, what)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise HetagentError(f"{path}: the {what} file is not valid TOML: {_why(exc)}") from None


def read_text(path: str | Path, what: str, *, limit: int = MAX_DOCUMENT_BYTES) -> str:
    """A UTF-8 text file of at most `limit` bytes, or a `HetagentError` that says why not."""
    path = Path(path)
    data = read_bytes(path, what, limit=limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HetagentError(f"{path}: the {what} file is not UTF-8 text (byte {exc.start}: "
                            f"0x{data[exc.start]:02x}); is it a binary file?") from None


def read_bytes(path: str | Path, what: str, *, limit: int, error: type[HetagentError] = HetagentError) -> bytes:
    """A file of at most `limit` bytes, or an `error` that says why not (missing, a directory, unreadable)."""
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except (FileNotFoundError, NotADirectoryError):
        raise error(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a {what} file") from None
    except OSError as exc:
        raise error(f"{path}: the {what} file cannot be read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise error(f"{path}: the {what} file is larger than {limit:,} bytes, the limit")
    return data


def check_document(data: Any, path: str | Path, what: str) -> Any:
    """`data` if no number in it is NaN or infinite and it nests at most MAX_DOCUMENT_DEPTH deep; else an error
    naming the field. Iterative: a hostile document must not exhaust the stack here either."""
    stack = [(data, "", 0)]
    while stack:
        value, field, depth = stack.pop()
        if depth > MAX_DOCUMENT_DEPTH:
            raise HetagentError(f"{path}: {field or 'the document'} nests deeper than {MAX_DOCUMENT_DEPTH} levels, "
                                f"the limit for a {what} file")
        if isinstance(value, float) and not math.isfinite(value):
            raise HetagentError(f"{path}: {field or 'the value'} is {value}; every number in a {what} file must be "
                                "finite")
        if isinstance(value, dict):
            stack.extend((item, f"{field}.{key}" if field else str(key), depth + 1) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, f"{field}[{index}]", depth + 1) for index, item in enumerate(value))
    return data


def _why(exc: Exception) -> str:
    return "nested too deeply to parse" if isinstance(exc, RecursionError) else str(exc)
