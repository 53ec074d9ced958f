"""Tier d — end to end on a small fixture agent, compiled and run by the real runtime (`spec/runtime.md`): the
tokens the backend's workers produce are the oracle's greedy tokens, including when the KV cache written by one
worker is read by another through `spec/kv-format.md`."""

from __future__ import annotations

import pytest

from hetagent.plan import Placement, Plan
from hetagent.runtime.layout import usable_cores

from hetagent_conformance.agents import everything_on, expected_answers, run


def check_run(backend, result, prepared, prompts, record_property) -> None:
    mine = {w.name for w in prepared.workers if w.backend == backend.name}
    claimed = sum(len(w["ops"]) for w in result.workers if w["name"] in mine)
    record_property("ops", {"claimed": claimed, "fallback": len(prepared.fallbacks), "fallbacks": prepared.fallbacks})
    assert [r.status for r in result.records] == ["ok"] * len(prompts), [r.error for r in result.records]
    got = [r.outputs[0] for r in result.records]
    assert got == expected_answers(backend, prompts), "the answers differ from the oracle's greedy tokens"


def test_agent_end_to_end(backend, registry, agent, record_property):
    """Every op of the agent placed on the backend's device, one worker."""
    result, prepared, prompts = run(backend, registry, agent, everything_on(backend))
    check_run(backend, result, prepared, prompts, record_property)


def test_kv_cache_handed_to_another_worker(backend, registry, agent, record_property):
    """Prefill on the backend's device, decode in another worker process, reading the prefill's KV cache in the
    exchange format: the reference backend's second host partition (or the host device, for another backend)."""
    device = backend.need_device()
    if backend.name == registry.host.backend:
        if len(usable_cores()) < 2:
            pytest.skip("one core here: no second host partition for the decode")
        plan, partitions = None, 2  # host-cpu:0 prefills, host-cpu:1 decodes
    else:
        host = registry.host
        plan = Plan(placements={"answer.decode": Placement(host.device, host.backend)},
                    default=Placement(device, backend.name), source="conformance: prefill here, decode on the host")
        partitions = 1
    result, prepared, prompts = run(backend, registry, agent, plan, cpu_partitions=partitions)
    decode_workers = [o["workers"] for o in result.ops if o["kind"] == "llm.decode"]
    prefill_workers = [o["workers"] for o in result.ops if o["kind"] == "llm.prefill"]
    assert decode_workers and prefill_workers and set(decode_workers[0]).isdisjoint(prefill_workers[0]), \
        f"prefill ran on {prefill_workers}, decode on {decode_workers}: not handed between workers"
    check_run(backend, result, prepared, prompts, record_property)

