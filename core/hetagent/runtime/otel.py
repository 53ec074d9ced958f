"""The run as an OpenTelemetry trace: OTLP/JSON (`resourceSpans`), one trace per request, one span per op.

Any OTLP/JSON consumer reads it (the OpenTelemetry Collector's `otlpjsonfile` receiver, Jaeger's importer).
Span times are Unix nanoseconds; each op span carries its worker, queue and run time and attempt.
"""

from __future__ import annotations

import hashlib
import time

from hetagent.runtime.engine import OpRecord, RequestRecord


def _id(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _attributes(values: dict) -> list[dict]:
    out = []
    for key, value in values.items():
        if isinstance(value, bool):
            out.append({"key": key, "value": {"boolValue": value}})
        elif isinstance(value, int):
            out.append({"key": key, "value": {"intValue": str(value)}})
        elif isinstance(value, float):
            out.append({"key": key, "value": {"doubleValue": value}})
        else:
            out.append({"key": key, "value": {"stringValue": str(value)}})
    return out


def otlp_trace(run_id: str, agent: str, requests: list[RequestRecord], ops: list[OpRecord]) -> dict:
    to_unix = time.time() - time.monotonic()  # the records hold monotonic seconds

    def ns(t: float) -> str:
        return str(int((t + to_unix) * 1e9))

    spans = []
    for r in requests:
        trace_id, root = _id(f"{run_id}/{r.id}", 32), _id(f"{run_id}/{r.id}/root", 16)
        spans.append({
            "traceId": trace_id, "spanId": root, "name": f"{agent} request {r.id}", "kind": 2,
            "startTimeUnixNano": ns(r.arrival), "endTimeUnixNano": ns(r.end or r.arrival),
            "attributes": _attributes({"hetagent.request": r.id, "hetagent.status": r.status,
                                       "hetagent.met_sla": r.status == "ok" and r.end <= r.deadline}),
            "status": {"code": 1 if r.status == "ok" else 2, "message": r.error},
        })
        for i, o in enumerate(o for o in ops if o.request == r.id):
            spans.append({
                "traceId": trace_id, "spanId": _id(f"{run_id}/{r.id}/{i}", 16), "parentSpanId": root,
                "name": o.label, "kind": 1, "startTimeUnixNano": ns(o.dispatched), "endTimeUnixNano": ns(o.finished),
                "attributes": _attributes({"hetagent.op": o.op, "hetagent.worker": o.worker,
                                           "hetagent.queue_ms": o.queue_s * 1000, "hetagent.run_ms": o.run_s * 1000,
                                           "hetagent.attempt": o.attempt}),
                "status": {"code": 1 if o.ok else 2},
            })
    return {"resourceSpans": [{
        "resource": {"attributes": _attributes({"service.name": "hetagent", "hetagent.run": run_id})},
        "scopeSpans": [{"scope": {"name": "hetagent.runtime"}, "spans": spans}],
    }]}

