"""Tools an agent calls: Python callables from the entry-point group `hetagent.tools`, and HTTP endpoints.

A Python tool is `fn(arguments: dict, context: ToolContext) -> JSON value`, registered by any installed
distribution:

    [project.entry-points."hetagent.tools"]
    web_search = "hetagent.backend.builtin_tools:web_search"

An HTTP tool (`hetagent run --tool NAME=URL`) is called with `POST URL` and the JSON body
`{"tool": NAME, "arguments": {...}}`; its JSON response is the result (http or https only, at most
MAX_RESPONSE_BYTES). Every call has a time limit (the op's `timeout_ms`, default 10 s) and runs in a child
process (`tool_sandbox`) that is killed at it: a tool that does not answer in time fails its own request with
`ToolTimeout`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from hetagent.errors import HetagentError

ENTRY_POINT_GROUP = "hetagent.tools"
DEFAULT_TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 16 * 2**20


class ToolTimeout(HetagentError):
    """A tool call that did not finish within its time limit."""


@dataclass(frozen=True)
class ToolContext:
    corpus: Path | None  # the text corpus local search tools read


@cache
def python_tools() -> dict[str, object]:
    """Installed tools by name (loaded lazily: an entry point is imported when first called)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def tool_url(name: str, http_tools: dict[str, str]) -> str | None:
    """The URL of HTTP tool `name`, None for an installed Python tool; an error for an unknown tool or a bad URL."""
    url = http_tools.get(name)
    if url is None and name not in python_tools():
        known = sorted([*python_tools(), *http_tools])
        raise HetagentError(f"unknown tool {name!r}; installed tools: {', '.join(known) or 'none'} (register one "
                            f"under the entry-point group {ENTRY_POINT_GROUP!r} or pass --tool {name}=URL)")
    if url is not None and urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise HetagentError(f"HTTP tool {name!r}: {url!r} is not an http:// or https:// URL")
    return url


def run_tool_here(name: str, arguments: dict, url: str | None, limit_s: float, corpus: str | None) -> object:
    """The call itself, in a tool process."""
    if url is not None:
        return _call_http(name, url, arguments, limit_s)
    return python_tools()[name].load()(arguments, ToolContext(Path(corpus) if corpus else None))


def _call_http(name: str, url: str, arguments: dict, limit: float) -> object:
    body = json.dumps({"tool": name, "arguments": arguments}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        # no redirects to other schemes: urllib follows http(s) redirects only
        with urllib.request.urlopen(request, timeout=limit) as response:
            data = response.read(MAX_RESPONSE_BYTES + 1)
    except TimeoutError:
        raise ToolTimeout(f"HTTP tool {name!r} ({url}) did not answer within {limit * 1000:.0f} ms") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise ToolTimeout(f"HTTP tool {name!r} ({url}) did not answer within {limit * 1000:.0f} ms") from None
        raise HetagentError(f"HTTP tool {name!r} ({url}) failed: {exc.reason}") from None
    if len(data) > MAX_RESPONSE_BYTES:
        raise HetagentError(f"HTTP tool {name!r} ({url}) answered with more than {MAX_RESPONSE_BYTES:,} bytes")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise HetagentError(f"HTTP tool {name!r} ({url}) answered with invalid JSON: {exc}") from None
