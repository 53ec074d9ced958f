"""Prometheus metrics of a served agent (names and meaning: `spec/serve.md`).

Each server has its own `CollectorRegistry` (several servers in one process, as in tests, must not collide).
The engine thread records what the engine reports — every finished request and every finished op — so the
figures are the engine's own (dispatch to result per op; arrival to end per request), not the HTTP layer's.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from hetagent.hardware.tco import SECONDS_PER_HOUR
from hetagent.runtime.engine import OpRecord, RequestRecord

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
OP_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TOKEN_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServeMetrics:
    def __init__(self, agent: str, usd_per_hour: float | None):
        self.agent, self.usd_per_hour = agent, usd_per_hour
        self.registry = registry = CollectorRegistry()
        self.started = time.monotonic()
        self.arrived = self.met = self.finished = 0
        self.lookups = self.hits = 0  # prefill calls, and those that reused a cached prefix (the hit ratio)
        a = ("agent",)
        self.requests = Counter("hetagent_requests", "requests by outcome: ok, error, rejected (admission control), "
                                "invalid (HTTP 4xx before the engine)", a + ("status",), registry=registry)
        self.e2e = Histogram("hetagent_request_seconds", "end-to-end latency of finished requests (arrival to end)",
                             a, buckets=REQUEST_BUCKETS, registry=registry)
        self.ttft = Histogram("hetagent_request_ttft_seconds", "time to the first token of the answer (arrival to "
                              "the last LLM call's first token)", a, buckets=REQUEST_BUCKETS, registry=registry)
        self.tbt = Histogram("hetagent_time_between_tokens_seconds", "time between decode tokens", a,
                             buckets=TOKEN_BUCKETS, registry=registry)
        self.tokens = Counter("hetagent_tokens", "tokens of finished requests: prompt (prefilled) and completion "
                              "(decoded)", a + ("kind",), registry=registry)
        op = a + ("op", "kind")
        self.op_latency = Histogram("hetagent_op_seconds", "per op: dispatch to result, as the engine sees it", op,
                                    buckets=OP_BUCKETS, registry=registry)
        self.op_queue = Histogram("hetagent_op_queue_seconds", "per op: waiting in the worker's deadline queue or "
                                  "for a decode slot", op, buckets=OP_BUCKETS, registry=registry)
        self.op_run = Histogram("hetagent_op_run_seconds", "per op: the executor's work (a batch's time charged "
                                "to each call in it)", op, buckets=OP_BUCKETS, registry=registry)
        self.prefills = Counter("hetagent_prefix_cache_lookups", "prefill calls that looked up the workers' prefix "
                                "cache", a, registry=registry)
        self.prefix_hits = Counter("hetagent_prefix_cache_hits", "prefill calls that reused a cached prefix", a,
                                   registry=registry)
        self.prefill_tokens = Counter("hetagent_prefill_tokens", "prompt tokens of prefill calls: saved (KV reused "
                                      "from a prefix cache) and computed", a + ("kind",), registry=registry)
        Gauge("hetagent_prefix_cache_hit_ratio", "prefill calls that reused a cached prefix, over all prefill calls",
              a, registry=registry).labels(agent).set_function(self._hit_ratio)
        self.op_failures = Counter("hetagent_op_failures", "op calls that failed", op, registry=registry)
        self.in_flight = Gauge("hetagent_requests_in_flight", "requests admitted and not yet finished", a,
                               registry=registry)
        self.inbox = Gauge("hetagent_inbox_depth", "HTTP requests waiting for the engine thread to take them", a,
                           registry=registry)
        self.worker_queue = Gauge("hetagent_worker_queue_depth", "op calls sent to a worker and not yet returned",
                                  a + ("worker",), registry=registry)
        Gauge("hetagent_sla_attainment_ratio", "requests that finished within their deadline, over all that "
              "arrived (rejected and failed ones count as misses)", a, registry=registry).labels(agent).set_function(
            lambda: self.met / self.arrived if self.arrived else 1.0)
        if usd_per_hour is not None:  # not priced (the price book lacks a device): no $ series rather than a guess
            Gauge("hetagent_fleet_usd_per_hour", "the fleet's $/hour from the price book (each device once)", a,
                  registry=registry).labels(agent).set(usd_per_hour)
            Gauge("hetagent_usd_per_request", "fleet $/hour x time served / requests finished", a,
                  registry=registry).labels(agent).set_function(self._usd_per_request)

    def _usd_per_request(self) -> float:
        elapsed_h = (time.monotonic() - self.started) / SECONDS_PER_HOUR
        return self.usd_per_hour * elapsed_h / self.finished if self.finished else float("nan")

    def _hit_ratio(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0

    def invalid(self) -> None:
        self.requests.labels(self.agent, "invalid").inc()

    def request(self, record: RequestRecord) -> None:
        """A request the engine ended: finished, failed, rejected or cancelled."""
        self.arrived += 1
        self.requests.labels(self.agent, record.status).inc()
        if record.status != "ok":
            return
        self.finished += 1
        self.met += record.end <= record.deadline
        self.e2e.labels(self.agent).observe(record.end - record.arrival)
        if record.first_token is not None:
            self.ttft.labels(self.agent).observe(record.first_token - record.arrival)
        tbt = self.tbt.labels(self.agent)
        for gap in record.gaps:
            tbt.observe(gap)
        self.tokens.labels(self.agent, "prompt").inc(record.prompt_tokens)
        self.tokens.labels(self.agent, "completion").inc(record.completion_tokens)

    def ops(self, records: list[OpRecord]) -> None:
        for o in records:
            if o.worker == "engine":  # input ops and KV hand-offs the router does itself: no time to show
                continue
            labels = (self.agent, o.label, o.op)
            if not o.ok:
                self.op_failures.labels(*labels).inc()
            self.op_latency.labels(*labels).observe(o.finished - o.dispatched)
            self.op_queue.labels(*labels).observe(o.queue_s)
            self.op_run.labels(*labels).observe(o.run_s)
            if o.op == "llm.prefill" and o.ok:
                self.lookups += 1
                self.hits += o.cached_tokens > 0
                self.prefills.labels(self.agent).inc()
                self.prefix_hits.labels(self.agent).inc(o.cached_tokens > 0)
                self.prefill_tokens.labels(self.agent, "saved").inc(o.cached_tokens)
                self.prefill_tokens.labels(self.agent, "computed").inc(o.prompt_tokens - o.cached_tokens)

    def queues(self, in_flight: int, inbox: int, workers: dict[str, int]) -> None:
        self.in_flight.labels(self.agent).set(in_flight)
        self.inbox.labels(self.agent).set(inbox)
        for worker, depth in workers.items():
            self.worker_queue.labels(self.agent, worker).set(depth)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
