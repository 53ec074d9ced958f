"""`hetagent plan` and `hetagent simulate`: the examples plan, plans round-trip through the schema and the compiler,
infeasibility is explained, bad input exits 2 with the field named."""

import json

import pytest

from conftest import EXAMPLES, ROOT, run_hetagent

PROBLEMS = EXAMPLES / "problems"
CONV_TRACE = ROOT.parent / "shared" / "data" / "traces" / "AzureLLMInferenceTrace_conv.csv"
BACKENDS = ("--backends", "cpu,cuda,rocm,gaudi")


def write(path, text):
    path.write_text(text)
    return path


def problem_file(tmp_path, body, name="p.toml"):
    """A problem next to the examples' agents and fleet, so its relative paths resolve."""
    text = body.replace("AGENT", str(EXAMPLES / "voice_agent.mlir")).replace("FLEET", str(EXAMPLES / "fleets" / "paper.toml"))
    return write(tmp_path / name, text)


@pytest.fixture(scope="module")
def voice_plan(tmp_path_factory):
    """The voice agent planned once, with baselines, the placed IR and the Pareto front."""
    from hetagent.cli import main

    tmp = tmp_path_factory.mktemp("voice")
    out, ir_out, png = tmp / "plan.json", tmp / "placed.mlir", tmp / "front.png"
    code = main([*BACKENDS, "plan", str(PROBLEMS / "voice_agent.toml"), "--out", str(out), "--ir-out", str(ir_out),
                 "--pareto", "--plot", str(png)])
    assert code == 0
    return out, ir_out, png


def test_voice_agent_plan_meets_its_sla_and_beats_its_baselines(voice_plan):
    plan = json.loads(voice_plan[0].read_text())
    assert plan["format"] == "hetagent-plan/1"
    assert plan["latency"]["e2e_s"] <= plan["latency"]["sla_s"] == 3.0
    # every labelled op of the decomposed agent is placed; the unlabelled ones go to the default (a CPU)
    assert {"transcribe", "plan.prefill", "plan.decode", "answer.prefill", "answer.decode", "answer.kv",
            "search.compute", "speak"} <= set(plan["placements"])
    assert plan["devices"][plan["default"]["device"]]["pooled"]
    for baseline in plan["baselines"].values():
        assert baseline["feasible"] and baseline["usd_per_hour"] >= plan["cost"]["usd_per_hour"] - 1e-9
    path = plan["latency"]["critical_path"]
    assert sum(step["seconds"] for step in path) == pytest.approx(plan["latency"]["e2e_s"])
    assert plan["cost"]["usd_per_request"] == pytest.approx(plan["cost"]["usd_per_hour"] / (4.0 * 3600))
    front = plan["pareto"]
    assert len(front) >= 3
    assert all(a["e2e_s"] > b["e2e_s"] and a["usd_per_hour"] <= b["usd_per_hour"] for a, b in zip(front, front[1:]))
    assert voice_plan[2].read_bytes()[:4] == b"\x89PNG"


def test_a_batch_is_planned_only_where_the_rate_fills_it(voice_plan):
    """Little's law: an op's calls in flight are rate x executions x latency; a larger batch would run mostly
    empty, so it is no option (and says so where it would have been cheaper)."""
    import dataclasses

    from hetagent.backend.registry import Registry
    from hetagent.cost import RooflineModel
    from hetagent.planner.planner import build
    from hetagent.planner.problem import load_problem

    plan = json.loads(voice_plan[0].read_text())
    rate = plan["problem"]["rate_rps"]
    for label, op in plan["ops"].items():
        in_flight = rate * op["executions_per_request"] * op["latency_s"]
        assert plan["placements"].get(label, plan["default"])["batch"] <= max(1.0, in_flight), label
    assert any(b["constraint"] == "occupancy" and "calls are in flight" in b["detail"] for b in plan["binding"])
    # at a trickle of requests every model op runs alone; at a flood, the large batches come back
    problem = load_problem(PROBLEMS / "voice_agent.toml")
    model = RooflineModel.from_registry(Registry.load(["cpu", "cuda", "rocm", "gaudi"]))
    for rate, largest in ((0.05, 1), (5000.0, 32)):
        built = build(dataclasses.replace(problem, rate_rps=rate), model)
        batches = {o.batch for o in built.instance.options if built.roles[o.task] == "decode"}
        assert max(batches) == largest if largest == 1 else max(batches) >= largest, (rate, batches)
        assert all(d.batch > max(1.0, d.value) for d in built.dropped if d.constraint == "occupancy")


def test_plan_is_read_by_the_schema_and_the_compiler(voice_plan):
    from hetagent.plan import Plan

    data = json.loads(voice_plan[0].read_text())
    plan = Plan.load(voice_plan[0])
    assert plan.to_dict() == data
    assert plan.placements["answer.decode"].device == data["placements"]["answer.decode"]["device"]
    placed = voice_plan[1].read_text()
    assert placed.count("placement = {") >= 10 and data["placements"]["answer.decode"]["device"] in placed


@pytest.mark.parametrize("name", ["rag_qa", "research_agent", "paper_profiled"])
def test_every_example_problem_plans(cli, name):
    code, out, err = cli(*BACKENDS, "plan", str(PROBLEMS / f"{name}.toml"), "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["latency"]["e2e_s"] <= plan["latency"]["sla_s"] + (plan["latency"].get("slack_s") or 0) + 1e-9
    assert plan["solver"]["status"] == "optimal"


def test_profiled_problem_charges_the_slack_penalty_when_the_sla_is_soft(cli, tmp_path):
    text = (PROBLEMS / "paper_profiled.toml").read_text().replace("e2e_ms = 2500", "e2e_ms = 1200")
    code, out, err = cli("plan", str(write(tmp_path / "soft.toml", text)), "--json", "--no-baselines")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["latency"]["slack_s"] > 0 and plan["cost"]["slack_penalty_usd_per_hour"] > 0


def test_plan_table_shows_placement_cost_and_baselines(cli):
    code, out, err = cli(*BACKENDS, "plan", str(PROBLEMS / "rag_qa.toml"))
    assert code == 0, err
    for text in ("answer.decode", "devices to provision", "$/request", "vs best homogeneous", "vs best pair",
                 "critical path"):
        assert text in out


def test_an_sla_no_plan_meets_names_what_binds_and_the_best_achievable(cli, tmp_path):
    problem = problem_file(tmp_path, 'name = "tight"\nagent = "AGENT"\nfleet = "FLEET"\n[workload]\nrate_rps = 1.0\n'
                                     '[sla]\ne2e_ms = 500\n')
    code, _, err = cli(*BACKENDS, "plan", str(problem))
    assert code == 2
    assert "end-to-end SLA binds" in err and "best achievable" in err and "search.compute" in err


def test_a_ttft_no_device_meets_names_the_op(cli, tmp_path):
    problem = problem_file(tmp_path, 'name = "ttft"\nagent = "AGENT"\nfleet = "FLEET"\n[workload]\nrate_rps = 1.0\n'
                                     '[sla]\nttft_ms = 1\n')
    code, _, err = cli(*BACKENDS, "plan", str(problem))
    assert code == 2 and "TTFT limit binds on op 'plan.prefill'" in err


def test_a_fleet_without_a_cpu_is_named(cli, tmp_path):
    fleet = write(tmp_path / "gpus.toml", '[[classes]]\ndevice = "h100-sxm"\n')
    problem = write(tmp_path / "p.toml", f'name = "no-cpu"\nagent = "{EXAMPLES / "voice_agent.mlir"}"\n'
                                         f'fleet = "{fleet}"\n[workload]\nrate_rps = 1.0\n')
    code, _, err = cli(*BACKENDS, "plan", str(problem))
    assert code == 2 and "runs on a CPU class" in err and "has none" in err


@pytest.mark.parametrize("body, expected", [
    ('name = "x"\nagent = "AGENT"\nfleet = "FLEET"\n[workload]\nrate_rps = -1\n', "workload.rate_rps"),
    ('name = "x"\nagent = "AGENT"\nfleet = "FLEET"\n[workload]\nrate_rps = 1\nspeed = 2\n', "valid fields"),
    ('name = "x"\nfleet = "FLEET"\n[workload]\nrate_rps = 1\n', "either `agent`"),
    ('name = "x"\nagent = "AGENT"\nfleet = "FLEET"\n[workload]\n', "rate_rps"),
    ('name = "x"\nagent = "missing.mlir"\nfleet = "FLEET"\n[workload]\nrate_rps = 1\n', "no such file"),
    ('name = "x"\nagent = "AGENT"\nfleet = { classes = [{ device = "h1OO" }] }\n[workload]\nrate_rps = 1\n', "h100-sxm"),
    ('name = "x"\nagent = "AGENT"\nfleet = "FLEET"\n[workload]\nrate_rps = 1\n[sla]\ntbt_ms = "fast"\n', "sla.tbt_ms"),
    ('name = "x" agent', "not valid TOML"),
])
def test_bad_problems_exit_2_naming_the_field(cli, tmp_path, body, expected):
    code, out, err = cli(*BACKENDS, "plan", str(problem_file(tmp_path, body)))
    assert code == 2, out
    assert expected in err and "Traceback" not in err


def test_a_plan_that_breaks_its_schema_is_refused(cli, tmp_path):
    bad = write(tmp_path / "plan.json", json.dumps({"format": "hetagent-plan/1", "placements": {}}))
    code, _, err = cli("simulate", str(bad))
    assert code == 2 and "not a valid plan" in err and "default" in err


def synthetic_trace(path, requests=300, rate=4.0):
    """An Azure-format trace: `requests` arrivals at `rate`/s with varied lengths."""
    import random
    from datetime import datetime, timedelta

    rng = random.Random(7)
    start, clock = datetime(2023, 11, 16, 18, 0, 0), 0.0
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for _ in range(requests):
        clock += rng.expovariate(rate)
        stamp = (start + timedelta(seconds=clock)).strftime("%Y-%m-%d %H:%M:%S.%f")
        rows.append(f"{stamp}0,{rng.randint(200, 2000)},{rng.randint(20, 400)}")
    return write(path, "\n".join(rows) + "\n")


def test_simulate_reports_percentiles_attainment_and_utilisation(cli, voice_plan, tmp_path):
    trace = synthetic_trace(tmp_path / "trace.csv")
    code, out, err = cli(*BACKENDS, "simulate", str(voice_plan[0]), "--trace", str(trace), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["requests"] == 300
    assert result["e2e_s"]["p50"] <= result["e2e_s"]["p90"] <= result["e2e_s"]["p99"]
    assert 0 <= result["sla_attainment"] <= 1 and result["ttft_s"]["p99"] > 0 and result["tbt_s"]["p50"] > 0
    plan = json.loads(voice_plan[0].read_text())
    for device, busy in result["utilisation"].items():
        if not plan["devices"][device]["pooled"]:
            assert 0 < busy < 1.2, (device, busy)


def test_feedback_loop_replans_until_the_simulated_percentile_meets_the_sla(cli):
    code, out, err = cli(*BACKENDS, "plan", str(PROBLEMS / "voice_agent.toml"), "--simulate", "--trace-seconds", "120",
                         "--no-baselines", "--json")
    assert code == 0, err
    simulation = json.loads(out)["simulation"]
    assert simulation["meets_sla"] and simulation["e2e_at_percentile_s"] <= 3.0
    assert simulation["rounds"] >= 2 and simulation["max_utilisation"] < 0.8  # the first plan missed at p99
    # attainment is measured against the user's SLA; the tightened target the MILP planned for has its own name
    assert simulation["sla_s"] == 3.0 and simulation["planning_target_s"] <= 3.0
    assert simulation["sla_attainment"] >= 0.99  # met at p99 means at least 99 % within the SLA


@pytest.mark.skipif(not CONV_TRACE.exists(), reason="the Azure traces are not in ../shared/data")
def test_simulate_the_azure_conversation_trace(cli, tmp_path):
    out = tmp_path / "plan.json"
    code, _, err = cli(*BACKENDS, "plan", str(PROBLEMS / "conv_trace.toml"), "--no-baselines", "--out", str(out))
    assert code == 0, err
    code, text, err = cli(*BACKENDS, "simulate", str(out), "--seconds", "300", "--json")
    assert code == 0, err
    result = json.loads(text)
    assert result["requests"] > 1000 and result["trace"].endswith("AzureLLMInferenceTrace_conv.csv")


def test_plan_json_stdout_is_json_only():
    # HiGHS prints a banner on the C-level stdout when its first instance is made: it must not reach --json
    done = run_hetagent(*BACKENDS, "plan", str(PROBLEMS / "voice_agent.toml"), "--no-baselines", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["format"] == "hetagent-plan/1"
