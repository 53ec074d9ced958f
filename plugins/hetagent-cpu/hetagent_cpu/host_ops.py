"""Host-side agent ops on the CPU: tool lookup and call, and data transforms."""

from __future__ import annotations

import json
from pathlib import Path

from hetagent.backend.executor import Call, OneShotExecutor
from hetagent.backend.tools import ToolContext, call_tool
from hetagent.backend.transforms import TOOL_CALL, render, transform


class HostOpsExecutor(OneShotExecutor):
    def __init__(self, context):
        super().__init__(context)
        self.tool_context = ToolContext(Path(context.corpus) if context.corpus else None)

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
