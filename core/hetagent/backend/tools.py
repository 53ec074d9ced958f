"""Tools an agent calls: Python callables from the entry-point group `hetagent.tools`, and HTTP endpoints.

A Python tool is `fn(arguments: dict, context: ToolContext) -> JSON value`, registered by any installed
distribution:

    [project.entry-points."hetagent.tools"]
    web_search = "hetagent.backend.builtin_tools:web_search"

An HTTP tool (`hetagent run --tool NAME=URL`) is called with `POST URL` and the JSON body
`{"tool": NAME, "arguments": {...}}`; its JSON response is the result. Every call has a time limit (the op's
`timeout_ms`, default 10 s): a tool that does not answer in time fails its own request with `ToolTimeout`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from hetagent.errors import HetagentError

ENTRY_POINT_GROUP = "hetagent.tools"
DEFAULT_TIMEOUT_S = 10.0


class ToolTimeout(HetagentError):
    """A tool call that did not finish within its time limit."""


@dataclass(frozen=True)
class ToolContext:
    corpus: Path | None  # the text corpus local search tools read


@cache
def python_tools() -> dict[str, object]:
    """Installed tools by name (loaded lazily: an entry point is imported when first called)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


# Python tools run on these threads so a hung one can be abandoned at its time limit (it keeps its thread).
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="hetagent-tool")


def call_tool(name: str, arguments: dict, *, context: ToolContext, http_tools: dict[str, str],
              timeout_s: float | None) -> object:
    limit = timeout_s or DEFAULT_TIMEOUT_S
    if name in http_tools:
        return _call_http(name, http_tools[name], arguments, limit)
    tools = python_tools()
    if name not in tools:
        known = sorted([*tools, *http_tools])
        raise HetagentError(f"unknown tool {name!r}; installed tools: {', '.join(known) or 'none'} (register one "
                            f"under the entry-point group {ENTRY_POINT_GROUP!r} or pass --tool {name}=URL)")
    function = tools[name].load()
    future = _pool.submit(function, arguments, context)
    try:
        return future.result(timeout=limit)
    except FutureTimeout:
        raise ToolTimeout(f"tool {name!r} did not answer within {limit * 1000:.0f} ms") from None


def _call_http(name: str, url: str, arguments: dict, limit: float) -> object:
    body = json.dumps({"tool": name, "arguments": arguments}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=limit) as response:
            return json.loads(response.read())
    except TimeoutError:
        raise ToolTimeout(f"HTTP tool {name!r} ({url}) did not answer within {limit * 1000:.0f} ms") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise ToolTimeout(f"HTTP tool {name!r} ({url}) did not answer within {limit * 1000:.0f} ms") from None
        raise HetagentError(f"HTTP tool {name!r} ({url}) failed: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise HetagentError(f"HTTP tool {name!r} ({url}) answered with invalid JSON: {exc}") from None
