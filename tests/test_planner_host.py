"""Planning this host (`hetagent.planner.host`): partitions as device classes, the SLA rule, the sustainable rate."""

from __future__ import annotations

import dataclasses

import pytest

from hetagent.hardware.pricebook import default_pricebook, shipped_pricebook
from hetagent.planner import host

CHAT = """"agent.graph"() ({
  %q = "input.query"() {tokens = 32 : i64} : () -> !agent.text
  %a = "llm.call"(%q) {model = "tiny-llama", input_tokens = 64 : i64, output_tokens = 16 : i64, name = "answer"}
      : (!agent.text) -> !agent.text
  "agent.return"(%a) : (!agent.text) -> ()
}) {sym_name = "chat", sla_ms = %SLA% : f64} : () -> ()
"""


def test_the_sustainable_rate_is_the_largest_feasible_one_within_the_bisection():
    limit = 2.5
    calls = []

    def feasible(rate):
        calls.append(rate)
        return "plan" if rate <= limit else None

    rate = host.sustainable_rate(feasible)
    assert limit * 0.995 < rate <= limit
    assert len(calls) == host.RATE_STEPS + 2
    assert host.sustainable_rate(lambda r: None) is None
    assert host.sustainable_rate(lambda r: "plan", high=50.0) == 50.0


def test_the_sla_is_the_agents_where_the_fastest_plan_meets_it_with_headroom_else_headroom_times_the_path():
    sla, rule = host.derive_sla(0.9, 3.0)
    assert sla == 3.0 and "agent's SLA of 3000 ms" in rule and "900 ms" in rule
    # a critical path inside the agent's SLA but without the headroom: the run would queue past it
    sla, rule = host.derive_sla(1.2, 3.0)
    assert sla == pytest.approx(1.2 * host.HEADROOM) and "out of this host's reach" in rule
    sla, rule = host.derive_sla(5.0, 3.0)
    assert sla == pytest.approx(5.0 * host.HEADROOM)
    assert f"{host.HEADROOM:g} x the fastest plan's critical path (5000 ms)" in rule and "out of this host's reach" in rule
    sla, rule = host.derive_sla(0.5, None)
    assert sla == pytest.approx(0.5 * host.HEADROOM) and "states no SLA" in rule


def test_partitions_are_scaled_copies_of_the_host_profile_priced_per_core(registry):
    profile = registry.profile(registry.host.device)
    parts = host.partition_profiles(profile, 2, 5)
    assert [p.name for p in parts] == [f"{profile.name}:0", f"{profile.name}:1"] and [p.cores for p in parts] == [2, 3]
    total = profile.cores
    for p in parts:
        assert p.memory_bandwidth_gbs == pytest.approx(profile.memory_bandwidth_gbs * p.cores / total)
        assert p.peak_tflops["fp32"] == pytest.approx(profile.peak_tflops["fp32"] * p.cores / total)
    for book in (default_pricebook(), shipped_pricebook("cloud-2026-03")):
        per_core = book.price_of("host-cpu").cloud_usd_per_core_hour
        assert per_core > 0 and "https://" in book.price_of("host-cpu").source
        assert book.usd_per_hour("host-cpu", 100.0, 3) == pytest.approx(3 * per_core)
        priced = host.partition_pricebook(book, "host-cpu", parts)
        assert priced.usd_per_hour(parts[1].name, 1.0) == pytest.approx(3 * per_core)


@pytest.mark.parametrize("sla_ms", [60000.0, 1.0])
def test_a_host_plan_places_ops_on_partitions_at_the_rate_it_sustains(registry, tmp_path, sla_ms):
    from hetagent.cost import RooflineModel

    agent = tmp_path / "chat.mlir"
    agent.write_text(CHAT.replace("%SLA%", str(sla_ms)))
    parts = host.partition_profiles(registry.profile("host-cpu"), 2, 2)
    model = RooflineModel([*registry.device_profiles(), *parts])  # curves borrowed: no host calibration needed
    planned = host.plan_host(agent, registry=registry, count=2, cores=2, pricebook=default_pricebook(), model=model)
    plan = planned.plan
    assert planned.rate_rps > host.MIN_RATE and plan.problem["rate_rps"] == planned.rate_rps
    assert {p.device for p in plan.placements.values()} == {"host-cpu"}
    assert {p.partition for p in plan.placements.values()} <= {0, 1}
    assert all(d.utilisation <= host.MAX_UTILISATION + 1e-6 for d in plan.devices.values())
    assert plan.latency.e2e_s * 1000 <= planned.sla_ms * (1 + 1e-6)
    if sla_ms > 1000:
        assert planned.sla_ms == sla_ms and "the agent's SLA" in planned.sla_rule
    else:
        assert planned.sla_ms > sla_ms and "out of this host's reach" in planned.sla_rule
    assert plan.cost.usd_per_request > 0


def test_each_partition_runs_the_ops_placed_on_it_not_every_op_of_their_kind(registry):
    from hetagent.plan import Placement
    from hetagent.runtime.layout import plan_workers
    from hetagent.runtime.program import Block, Node, Program

    def on(partition):
        return Placement("host-cpu", "cpu", partition=partition)

    nodes = (Node(0, "llm.prefill", "plan.prefill", {}, (0,), (1,), placement=on(0)),
             Node(1, "llm.decode", "plan.decode", {}, (1,), (2,), placement=on(0)),
             Node(2, "llm.prefill", "answer.prefill", {}, (2,), (3,), placement=on(1)),
             Node(3, "llm.decode", "answer.decode", {}, (3,), (4,), placement=on(1)),
             Node(4, "data.transform", "fold", {"fn": "concat"}, (4,), (5,), placement=on(None)))
    workers, _ = plan_workers(Program("two", None, Block((0,), nodes, (5,))), registry, cpu_partitions=2)
    runs = {w.name: {n.label for n in nodes if w.runs(n)} for w in workers}
    assert runs == {"host-cpu:0": {"plan.prefill", "plan.decode", "fold"},
                    "host-cpu:1": {"answer.prefill", "answer.decode", "fold"}}
    # without partitions in the plan: the prompt side on the first half, the decode side on the second
    unnamed = tuple(dataclasses.replace(n, placement=on(None)) for n in nodes)
    workers, _ = plan_workers(Program("two", None, Block((0,), unnamed, (5,))), registry, cpu_partitions=2)
    runs = {w.name: {n.label for n in unnamed if w.runs(n)} for w in workers}
    assert runs == {"host-cpu:0": {"plan.prefill", "answer.prefill", "fold"},
                    "host-cpu:1": {"plan.decode", "answer.decode", "fold"}}


def test_a_calibration_made_under_load_is_redone(tmp_path):
    from hetagent.cost.curves import Calibration

    path = tmp_path / "host.json"
    assert host.stale_calibration(path) is None  # none yet: made, not redone

    def saved(cache_gbs=120.0, **recorded):
        Calibration("host-cpu", "cpu", {"fp32": 0.1}, 50.0, None, {}, (), "test", host=recorded,
                    cache_bytes=32e6 if cache_gbs else 0.0, cache_gbs=cache_gbs).save(path)
        return host.stale_calibration(path)

    assert saved(load_average=0.2, usable_cores=2) is None
    assert saved(load_average=3.2, usable_cores=2) == "the cached one was made under load average 3.2 on 2 cores"
    assert saved() == "the cached one recorded no load"
    # one from before calibrations timed kernels in the cache would time a small model's decode as a large one's
    assert "no curves for models that stay in the cache" in saved(0.0, load_average=0.2, usable_cores=2)
