"""The run report: per op and per request latencies, SLA attainment, throughput and $/request.

Per op (over every call): queue time (waiting in the worker's deadline queue, or for a decode slot), run time
(the executor's work; a batch's time is charged to each call in it) and overhead (dispatch to result as the
engine saw it, minus queue and run: pickling, pipes, routing). Per request: TTFT (arrival to the first token of
the last LLM call, the answer), time between tokens (every decode step), end to end, SLA attainment (finished
within the deadline, over all requests that arrived — rejected and failed ones count as misses). $/request is
the fleet's $/hour from the price book (each device once: CPU partitions share the host) times the run's wall
time, divided by the requests that finished. KV transfers (`transfers`): per `kv.transfer`, the route (the
device whose prefill wrote the cache -> the device whose decode reads it), the bytes, and the time staging it
out of the prefill's device into the `spec/kv-format.md` layout and into the decode's device.

Prefix cache (`prefix_cache`): over the prefill calls that succeeded, how many reused a cached prefix (hit rate),
and the prompt tokens whose KV came from a worker's cache (saved) against those prefilled (computed).

The cost check compares, per op kind and device, what the cost model predicts with the time measured: a prefill
call against its kernel's fixed shape (batch × prompt capacity), a decode step (the time between tokens) against
one step of the kernel's batch over its whole cache capacity (the compiled shapes are static). On the CPU this is
the host calibration's error (`hetagent calibrate`), so every run also checks the cost model.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from hetagent.hardware.pricebook import PriceBook
from hetagent.hardware.tco import SECONDS_PER_HOUR
from hetagent.runtime.engine import OpRecord, RequestRecord


def percentile(values, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def op_rows(ops: list[OpRecord]) -> list[dict]:
    by_label: dict[str, list[OpRecord]] = defaultdict(list)
    for record in ops:
        by_label[record.label].append(record)
    rows = []
    for label, records in by_label.items():
        overhead = [max(0.0, (r.finished - r.dispatched) - r.queue_s - r.run_s) for r in records if r.worker != "engine"]
        rows.append({
            "op": label, "kind": records[0].op, "workers": sorted({r.worker for r in records}), "calls": len(records),
            "retries": sum(r.attempt > 1 for r in records), "failed": sum(not r.ok for r in records),
            "queue_ms_p50": _ms(percentile([r.queue_s for r in records], 50)),
            "run_ms_p50": _ms(percentile([r.run_s for r in records], 50)),
            "run_ms_p99": _ms(percentile([r.run_s for r in records], 99)),
            "overhead_us_p50": None if not overhead else percentile(overhead, 50) * 1e6,
            "kv_bytes": sum(r.kv_bytes for r in records) or None,
            "kv_ms_p50": _ms(percentile([r.kv_s for r in records if r.kv_s], 50)),
        })
    return rows


def plan_rows(plan, ops: list[dict], moved: list[dict] = ()) -> list[dict]:
    """The plan beside the run, one row per planned op: where the planner put it and why (its place on the critical
    path, the load of its class), its predicted time per execution and the measured run time (p50); then one row
    per KV transfer on the critical path (its route between partitions; measured: staging out plus in, p50)."""
    measured = {row["op"]: row for row in ops}
    rows = []
    for label, op in plan.ops.items():
        _, placement = plan.entry_for(label)
        device = plan.devices.get(op.device)
        why = ("on the critical path" if op.critical else "off the critical path") + (
            f"; {op.device} planned {device.utilisation:.0%} busy" if device else "")
        run = measured.get(label, {})
        rows.append(_row(label, op.op, op.device, placement.batch if placement else 1, why, op.latency_s * 1000,
                         run.get("run_ms_p50"), run.get("workers", [])))
    staged = {t["transfer"]: t for t in moved}
    for step in plan.latency.critical_path:
        if step.kind == "transfer" and step.op in plan.placements:  # a kv.transfer (other edges are named a→b)
            t = staged.get(step.op)
            ms = (t["store_ms_p50"] or 0) + (t["load_ms_p50"] or 0) if t else None
            rows.append(_row(step.op, "kv.transfer", step.device, 1, "the KV cache, prefill to decode", step.seconds * 1000,
                             ms, t["routes"] if t else []))
    return rows


def _row(label, kind, where, batch, why, predicted, measured, workers) -> dict:
    ratio = measured / predicted if measured is not None and predicted > 0 else None
    return {"op": label, "kind": kind, "planned_on": where, "batch": batch, "why": why, "predicted_ms": predicted,
            "measured_ms_p50": measured, "measured_over_predicted": ratio, "workers": workers}


def transfers(ops: list[OpRecord]) -> list[dict]:
    """One row per KV transfer (per `kv.transfer` label): route, bytes, and the staging times at both ends:
    out of the device (the prefill, recorded on the handle) and into the device (the decode that read it)."""
    loads: dict[tuple[int, str], list[float]] = defaultdict(list)
    for record in ops:
        if record.op == "llm.decode" and record.ok and record.kv_s:
            loads[(record.request, record.label.rpartition(".")[0])].append(record.kv_s)
    by_label: dict[str, list[OpRecord]] = defaultdict(list)
    for record in ops:
        if record.op == "kv.transfer":
            by_label[record.label].append(record)
    rows = []
    for label, records in by_label.items():
        base = label.rpartition(".")[0]
        load = [s for r in records for s in loads.get((r.request, base), [])]
        rows.append({
            "transfer": label, "routes": sorted({r.route for r in records}), "count": len(records),
            "bytes_p50": percentile([r.kv_bytes for r in records], 50),
            "store_ms_p50": _ms(percentile([r.kv_s for r in records], 50)),
            "load_ms_p50": _ms(percentile(load, 50)),
        })
    return rows


def request_rows(requests: list[RequestRecord]) -> list[dict]:
    return [{
        "request": r.id, "status": r.status,
        "ttft_ms": _ms(r.first_token - r.arrival) if r.first_token and r.status == "ok" else None,
        "tbt_ms_mean": _ms(float(np.mean(r.gaps))) if r.gaps else None,
        "e2e_ms": _ms(r.end - r.arrival) if r.status == "ok" else None,
        "met_sla": r.status == "ok" and r.end <= r.deadline,
        "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
        "finish_reason": r.finish_reason if r.status == "ok" else None,
        "error": r.error or None,
    } for r in requests]


def fleet_usd_per_hour(workers, registry, book: PriceBook) -> tuple[float | None, str]:
    """Sum of the $/hour of the devices the workers use, or None and why not. Each device once: a GPU worker owns
    its device (`device_index`); CPU partitions share the host, and a CPU priced per core costs the cores the
    workers are pinned to (all the profile's cores where they are not pinned)."""
    devices: dict[tuple, tuple[float, set]] = {}
    for w in workers:
        profile = registry.profile(w.device)
        tdp, cores = devices.setdefault((w.device, w.device_index), (profile.tdp_w, set()))
        cores.update(w.cores or range(profile.cores or 1))
    missing = sorted({profile for profile, _ in devices} - set(book.prices))
    if missing:
        return None, f"not priced: price book {book.name!r} has no price for {', '.join(missing)} (pass --pricebook)"
    return sum(book.usd_per_hour(profile, tdp, len(cores)) for (profile, _), (tdp, cores) in devices.items()), ""


def summary(requests: list[RequestRecord], ops: list[OpRecord], wall_s: float, usd_per_hour: float | None,
            price_note: str) -> dict:
    ok = [r for r in requests if r.status == "ok"]
    e2e = [r.end - r.arrival for r in ok]
    ttft = [r.first_token - r.arrival for r in ok if r.first_token]
    gaps = [g for r in ok for g in r.gaps]
    overhead = [max(0.0, (o.finished - o.dispatched) - o.queue_s - o.run_s) for o in ops if o.worker != "engine"]
    tokens = sum(len(r.gaps) + len(r.tokens) for r in ok)
    return {
        "requests": len(requests), "ok": len(ok), "rejected": sum(r.status == "rejected" for r in requests),
        "errors": sum(r.status == "error" for r in requests),
        "sla_attainment": sum(r.status == "ok" and r.end <= r.deadline for r in requests) / max(1, len(requests)),
        "e2e_ms_p50": _ms(percentile(e2e, 50)), "e2e_ms_p99": _ms(percentile(e2e, 99)),
        "ttft_ms_p50": _ms(percentile(ttft, 50)), "ttft_ms_p99": _ms(percentile(ttft, 99)),
        "tbt_ms_p50": _ms(percentile(gaps, 50)), "tbt_ms_p99": _ms(percentile(gaps, 99)),
        "overhead_us_p50": percentile(overhead, 50) * 1e6 if overhead else None,
        "wall_s": wall_s, "requests_per_s": len(ok) / wall_s if wall_s else None,
        "decode_tokens_per_s": tokens / wall_s if wall_s else None,
        "usd_per_hour": usd_per_hour,
        "usd_per_request": usd_per_hour * wall_s / SECONDS_PER_HOUR / len(ok) if usd_per_hour is not None and ok else None,
        "price_note": price_note,
        "prefix_cache": prefix_cache(ops),
    }


def prefix_cache(ops: list[OpRecord]) -> dict:
    prefills = [o for o in ops if o.op == "llm.prefill" and o.ok and o.worker != "engine"]
    hits = sum(o.cached_tokens > 0 for o in prefills)
    saved, prompt = sum(o.cached_tokens for o in prefills), sum(o.prompt_tokens for o in prefills)
    return {"prefills": len(prefills), "hits": hits, "hit_rate": hits / len(prefills) if prefills else None,
            "prompt_tokens": prompt, "saved_tokens": saved, "computed_tokens": prompt - saved}


def cost_check(program, ops: list[OpRecord], requests: list[RequestRecord], model,
               worker_device: dict[str, str]) -> list[dict]:
    """Predicted vs measured (median) seconds per (op kind, device) for the ops the cost model can time. Each op
    is predicted on the device its worker is timed as (`worker_device`: a worker on some of the host's cores is a
    class of that many cores). A decode's measure is the time between tokens, which requests pool over their
    decodes: it is checked on the worker that ran most of them."""
    from hetagent.cost.phases import phase_time
    from hetagent.models.catalog import card
    from hetagent.models.kernels import decode_kernels, prefill_kernels

    def predict(node, device: str) -> float:
        fn = node.kernel.function
        spec, dtype = card(fn["model"]), fn["dtype"]
        if node.op == "llm.prefill":
            kernels = prefill_kernels(spec, fn["prompt"], batch=fn["batch"], dtype=dtype)
        else:
            kernels = decode_kernels(spec, fn["capacity"] - 1, batch=fn["batch"], dtype=dtype)
        return phase_time(model, device, kernels, dtype, 1).seconds

    timed = [n for n in program.nodes() if n.kernel and n.op in ("llm.prefill", "llm.decode")]
    by_label = {n.label: n for n in timed}
    measured: dict[tuple[str, str], list[float]] = defaultdict(list)
    predicted: dict[tuple[str, str], list[float]] = defaultdict(list)
    decoders: Counter = Counter()
    for record in ops:
        node = by_label.get(record.label)
        if node is None or not record.ok or record.worker not in worker_device:
            continue
        if node.op == "llm.decode":
            decoders[record.worker] += 1
        # a prefill that reused a cached prefix ran another kernel (extend) over part of the prompt: not this one
        elif not record.cached_tokens:
            key = (node.op, worker_device[record.worker])
            measured[key].append(record.run_s)
            predicted[key].append(predict(node, key[1]))
    gaps = [g for r in requests if r.status == "ok" for g in r.gaps]
    if gaps and decoders:
        device = worker_device[decoders.most_common(1)[0][0]]
        for node in (n for n in timed if n.op == "llm.decode"):
            measured["llm.decode", device] += gaps
            predicted["llm.decode", device] += [predict(node, device)] * len(gaps)
    rows = []
    for (kind, device), values in sorted(measured.items()):
        measured_s, predicted_s = float(np.median(values)), float(np.median(predicted[(kind, device)]))
        rows.append({"kind": kind, "device": device, "samples": len(values),
                     "per": "call" if kind == "llm.prefill" else "token",
                     "measured_ms_p50": measured_s * 1000, "predicted_ms": predicted_s * 1000,
                     "error": predicted_s / measured_s - 1 if measured_s else None, "basis": model.basis(device)})
    return rows
