"""Host-side agent ops on the CPU: tool lookup and call, and data transforms."""

from __future__ import annotations

import json
from pathlib import Path

from multiprocessing.connection import wait

from hetagent.backend.executor import Call, OneShotExecutor, Outcome
from hetagent.backend.tool_sandbox import call_tool, processes, start_tool
from hetagent.backend.tools import ToolContext
from hetagent.backend.transforms import TOOL_CALL, render, transform


class HostOpsExecutor(OneShotExecutor):
    # Tool calls are stepped: each runs in a tool process (hard deadline), and the worker keeps serving other
    # ops while it runs; `step` collects the calls that have answered (or run out of time).
    stepped_ops = frozenset({"tool.compute"})
    max_tool_calls = 16

    def __init__(self, context):
        super().__init__(context)
        self.tool_context = ToolContext(Path(context.corpus) if context.corpus else None)
        self.tool_calls: dict[int, tuple[Call, object]] = {}  # task -> (call, Pending or the exception at start)
        processes().wait_ready()  # tool processes start with the worker, not on its first calls' clock

    def free_slots(self, call: Call) -> int:
        return self.max_tool_calls - len(self.tool_calls)

    def active(self) -> int:
        return len(self.tool_calls)

    def join(self, call: Call) -> None:
        timeout_ms = call.attrs.get("timeout_ms")
        try:
            pending = start_tool(call.attrs["tool"], call.inputs[0]["arguments"], context=self.tool_context,
                                 http_tools=self.context.http_tools, timeout_s=timeout_ms / 1000 if timeout_ms else None)
        except Exception as exc:  # an unknown tool fails its own request
            pending = exc
        self.tool_calls[call.task] = (call, pending)

    def step(self) -> list:
        running = [p for _, p in self.tool_calls.values() if not isinstance(p, Exception)]
        if running and not any(p.ready() for p in running):
            wait([p.connection for p in running], timeout=0.002)  # a short wait, not a busy loop
        finished = []
        for task, (call, pending) in list(self.tool_calls.items()):
            if isinstance(pending, Exception) or pending.ready():
                del self.tool_calls[task]
                try:
                    if isinstance(pending, Exception):
                        raise pending
                    finished.append((call, Outcome((pending.result(),))))
                except Exception as exc:
                    finished.append((call, exc))
        return finished

    def run_one(self, call: Call) -> tuple:
        if call.op == "tool.lookup":
            return (self.lookup(call),)
        if call.op == "tool.compute":
            arguments = call.inputs[0]["arguments"]
            timeout_ms = call.attrs.get("timeout_ms")
            return (call_tool(call.attrs["tool"], arguments, context=self.tool_context,
                              http_tools=self.context.http_tools, timeout_s=timeout_ms / 1000 if timeout_ms else None),)
        return (transform(call.attrs["fn"])(*call.inputs),)

    @staticmethod
    def lookup(call: Call) -> dict:
        """The tool's arguments: an explicit `<tool_call>` in the model's text, else the whole text as a query."""
        written = "\n\n".join(render(v) for v in call.inputs)
        match = TOOL_CALL.search(written)
        if match:
            try:
                request = json.loads(match.group(1))
                return {"tool": call.attrs["tool"], "arguments": dict(request.get("arguments", {}))}
            except (json.JSONDecodeError, AttributeError, TypeError):
                pass  # a malformed call is searched for as plain text
        return {"tool": call.attrs["tool"], "arguments": {"query": written[-512:]}}
