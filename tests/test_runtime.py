"""The node runtime: executors, LocalEngine, disaggregation, faults, admission, `hetagent run` / `index`.

One compile cache serves the whole session (`cache_dir` in conftest.py), so each kernel is built once.
"""

import http.server
import json
import os
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from hetagent.hardware.pricebook import default_pricebook

from conftest import EXAMPLES

pytest.importorskip("torch")

def _prepare(agent, registry, cache_dir, partitions=1):
    from hetagent.compiler.cache import CompileCache
    from hetagent.runtime.run import prepare

    return prepare(agent, registry=registry, cpu_partitions=partitions, cache=CompileCache(cache_dir))


def _options(cache_dir, **extra):
    from hetagent.runtime.engine import EngineOptions
    from hetagent.runtime.run import new_run_id

    return EngineOptions(run_id=new_run_id(), cache_dir=str(cache_dir), corpus=str(EXAMPLES / "corpus"), **extra)


def _requests(count, prompts=None):
    from hetagent.runtime.engine import Request

    prompts = prompts or [f"question {i}: what is 2 + {i} * 3? mail me at a{i}@example.com" for i in range(count)]
    return [Request(i, {"query": prompts[i]}, 0.0, seed=7 + i) for i in range(count)]


def _run(prepared, registry, cache_dir, requests, hook=None, **options):
    from hetagent.runtime.run import run_prepared

    return run_prepared(prepared, requests, registry=registry, options=_options(cache_dir, **options), engine_hook=hook)


def test_disaggregated_run_gives_the_tokens_of_a_single_worker(registry, cache_dir, agent_files, recwarn):
    single = _run(_prepare(agent_files["calculator"], registry, cache_dir), registry, cache_dir, _requests(3))
    split = _prepare(agent_files["calculator"], registry, cache_dir, partitions=2)
    apart = _run(split, registry, cache_dir, _requests(3))
    assert [r.status for r in single.records] == ["ok"] * 3 == [r.status for r in apart.records]
    assert [r.tokens for r in single.records] == [r.tokens for r in apart.records]
    assert [r.outputs for r in single.records] == [r.outputs for r in apart.records]
    assert all(len(r.tokens["answer.decode"][0]) > 0 for r in apart.records)
    where = {o["kind"]: o["workers"] for o in apart.ops}
    assert where["llm.prefill"] == ["host-cpu:0"] and where["llm.decode"] == ["host-cpu:1"]
    # the redactor saw the question (with its e-mail address) and the calculator's answer
    assert all("[EMAIL]" in r.outputs[0] and "@example.com" not in r.outputs[0] for r in apart.records)
    assert '"result": 5' in apart.records[1].outputs[0]  # 2 + 1 * 3
    assert apart.summary["ttft_ms_p50"] > 0 and apart.summary["tbt_ms_p50"] > 0
    # the cache moved through host staging in the spec's layout, and the report shows each transfer's time
    (transfer,) = apart.transfers
    assert transfer["transfer"] == "answer.kv" and transfer["routes"] == ["host-cpu -> host-cpu"]
    assert transfer["count"] == 3 and transfer["bytes_p50"] > 0
    assert transfer["store_ms_p50"] > 0 and transfer["load_ms_p50"] > 0
    # every worker process exited cleanly once stopped (IREE's caching allocator once crashed them on the way out)
    assert not [str(w.message) for w in recwarn if "after it was stopped" in str(w.message)]


def test_a_killed_worker_loses_nothing(registry, cache_dir, agent_files):
    prepared = _prepare(agent_files["calculator"], registry, cache_dir, partitions=2)
    killed = []

    def kill_decode_worker(engine):
        decoder = next(w for w in engine.workers if w.plan.name == "host-cpu:1")
        if not killed and any(t.node.op == "llm.decode" for t in decoder.tasks.values()):
            engine.kill_worker("host-cpu:1")
            killed.append(time.monotonic())

    result = _run(prepared, registry, cache_dir, _requests(4), hook=kill_decode_worker)
    assert killed, "the decode worker was never seen busy"
    assert [r.status for r in result.records] == ["ok"] * 4
    assert sum(o["retries"] for o in result.ops) >= 1
    reference = _run(prepared, registry, cache_dir, _requests(4))
    assert [r.tokens for r in result.records] == [r.tokens for r in reference.records]


class _SlowTool(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if "slow" in body["arguments"]["query"]:
            time.sleep(1.5)
        answer = json.dumps({"echo": body["arguments"]["query"][:20]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def test_a_tool_timeout_fails_only_its_request(registry, cache_dir, agent_files):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowTool)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        prepared = _prepare(agent_files["slow"], registry, cache_dir)
        result = _run(prepared, registry, cache_dir, _requests(2, ["please be slow", "be quick"]),
                      http_tools={"slow": url})
    finally:
        server.shutdown()
    slow, quick = result.records
    assert slow.status == "error" and "did not answer within 300 ms" in slow.error
    assert quick.status == "ok" and "be quick" in quick.outputs[0]


def test_admission_predicts_from_capacity_not_from_the_arrival_rate():
    from hetagent.runtime.engine import predict_e2e

    # below capacity: requests end 1 s apart (as they arrive) and take 0.8 s each; one that finds 2 in flight
    # takes about 1.2 s, not the 3 s of three departure gaps (which turned away requests that met their SLA)
    gaps = [0.0, 1.0, 2.0, 3.0]
    assert predict_e2e(2, gaps, 0.8) == pytest.approx(3 / (1.0 + 1 / 0.8))
    assert predict_e2e(0, gaps, 0.8) < 0.8  # one that finds the node empty: a service time, no queueing
    # saturated: requests take far longer than the gaps between them, and the departure rate is the capacity
    assert predict_e2e(9, gaps, 1000.0) == pytest.approx(10 / (1.0 + 1e-3))
    assert predict_e2e(3, [0.0, 1.0], 0.8) == 0.8  # fewer than three ended: the running mean
    assert predict_e2e(3, [], None) is None


def test_admission_control_rejects_clearly_and_loses_nothing(registry, cache_dir, agent_files):
    prepared = _prepare(agent_files["calculator"], registry, cache_dir)
    result = _run(prepared, registry, cache_dir, _requests(3), max_inflight=1)
    statuses = [r.status for r in result.records]
    assert statuses.count("ok") == 1 and statuses.count("rejected") == 2
    assert all("admission control" in r.error for r in result.records if r.status == "rejected")
    assert result.summary["sla_attainment"] == pytest.approx(1 / 3)


def test_results_cross_as_builtins_but_for_a_prefills_kv_handle(registry, cache_dir, agent_files, monkeypatch):
    """Every result the router unpickles is built from builtins (`worker.py`: each class costs the unpickler tens
    of µs with its caches cold from the kernels), except the KV handle a prefill returns; a decode's finish reason
    travels in the message and reaches the request record."""
    import io
    import pickle

    from hetagent.runtime import channel

    classes: dict[str, set] = {}

    class Recording(pickle.Unpickler):
        def find_class(self, module, name):
            self.found.add(f"{module}.{name}")
            return super().find_class(module, name)

    def loads(data):
        unpickler = Recording(io.BytesIO(bytes(data)))
        unpickler.found = set()
        message = unpickler.load()
        classes.setdefault(message[0], set()).update(unpickler.found)
        return message

    monkeypatch.setattr(channel, "pickle", type("Pickle", (), {"loads": staticmethod(loads),
                                                               "dumps": staticmethod(pickle.dumps),
                                                               "HIGHEST_PROTOCOL": pickle.HIGHEST_PROTOCOL}))
    result = _run(_prepare(agent_files["calculator"], registry, cache_dir), registry, cache_dir, _requests(2))
    assert [r.status for r in result.records] == ["ok"] * 2, [r.error for r in result.records]
    assert classes.get("done") == {"hetagent.backend.kv_format.KVHandle", "hetagent.backend.kv_format.KVHeader"}
    assert all(r.finish_reason in ("stop", "length") and r.completion_tokens for r in result.records)


def test_sequences_joining_a_decode_batch_between_steps(registry, cache_dir, agent_files):
    from hetagent.plan import Plan
    from hetagent.compiler.cache import CompileCache
    from hetagent.runtime.run import prepare

    plan = Plan.from_dict({"placements": {"answer": {"device": "host-cpu", "batch": 4}}}, source="test")
    prepared = prepare(agent_files["calculator"], registry=registry, plan=plan, cache=CompileCache(cache_dir))
    result = _run(prepared, registry, cache_dir, _requests(4))  # one prefill batch: four decodes join at once
    assert [r.status for r in result.records] == ["ok"] * 4, [r.error for r in result.records]
    assert all(r.tokens["answer.decode"][0] for r in result.records)


def test_a_pool_scales_up_and_down_without_loss(registry, cache_dir, agent_files):
    from hetagent.runtime.engine import LocalEngine

    prepared = _prepare(agent_files["calculator"], registry, cache_dir)
    with LocalEngine(prepared.program, prepared.workers, _options(cache_dir),
                     kernels_of=prepared.kernels_of) as engine:
        engine.scale("host-cpu:0", 2)
        while not all(w.ready for w in engine.workers):
            engine.poll(0.1)
        up = engine.run(_requests(4))
        busy = {o.worker for o in engine.ops if o.worker != "engine"}
        late = replace(_requests(1)[0], id=9)
        engine.submit(late)  # in flight while its worker may be the one retired
        engine.scale("host-cpu:0", 1)
        assert len(engine.pools()["host-cpu:0"]) == 1
        engine.run([])
    assert [r.status for r in up] == ["ok"] * 4 and engine.requests[9].status == "ok"
    assert busy == {"host-cpu:0", "host-cpu:0#1"}


def test_sending_to_a_worker_that_reads_nothing_never_blocks_the_router(registry, cache_dir, agent_files):
    """The router serves every worker: a call larger than the pipe holds, sent to a worker that is not reading
    (stopped here; elsewhere busy sending the router a large result), must not block it. The channel keeps what
    the pipe cannot take and the transport writes it once the worker reads again."""
    import signal

    from hetagent.backend.executor import Call
    from hetagent.runtime.engine import LocalEngine

    prepared = _prepare(agent_files["calculator"], registry, cache_dir)
    node = next(n for n in prepared.program.nodes() if n.op == "data.transform")
    texts = [f"call {i}: mail me at a{i}@example.com " * 60_000 for i in range(4)]  # ~2 MiB each; a pipe holds 1
    with LocalEngine(prepared.program, prepared.workers, _options(cache_dir),
                     kernels_of=prepared.kernels_of) as engine:
        transport, handle = engine.transport, engine.workers[0].handle
        calls = [Call(100 + i, -1, node.op, node.label, node.attrs, (text,), node.kernel, float("inf"), 0,
                      sent=time.monotonic()) for i, text in enumerate(texts)]
        os.kill(handle.process.pid, signal.SIGSTOP)
        try:
            sender = threading.Thread(target=lambda: [transport.send(handle, call) for call in calls], daemon=True)
            sender.start()
            sender.join(30)
            blocked = sender.is_alive()
        finally:
            os.kill(handle.process.pid, signal.SIGCONT)
        assert not blocked, "the router blocked sending to a worker that was not reading"
        answers = {}
        while len(answers) < len(calls):
            answers.update({m[1]: m[2][0] for _, m in transport.poll(5.0) if m[0] == "done"})
    assert [answers[100 + i] for i in range(4)] == [t.replace(f"a{i}@example.com", "[EMAIL]")
                                                   for i, t in enumerate(texts)]


def test_workers_start_with_huge_pages_for_malloc(registry, cache_dir, agent_files, monkeypatch):
    from hetagent.runtime.engine import LocalEngine
    from hetagent.runtime.transport import WORKER_TUNABLES

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    prepared = _prepare(agent_files["calculator"], registry, cache_dir)
    with LocalEngine(prepared.program, prepared.workers, _options(cache_dir),
                     kernels_of=prepared.kernels_of) as engine:
        with open(f"/proc/{engine.workers[0].handle.process.pid}/environ", "rb") as environ:
            seen = dict(e.split(b"=", 1) for e in environ.read().split(b"\0") if b"=" in e).get(b"GLIBC_TUNABLES")
        assert "GLIBC_TUNABLES" not in os.environ  # the caller's environment is left as it was
    assert seen == WORKER_TUNABLES.encode()


@pytest.mark.parametrize("user, started", [
    ("glibc.malloc.arena_max=2", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),  # the user's tunables kept
    ("glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=0"),  # and their own huge-page choice
])
def test_a_users_glibc_tunables_are_kept_when_workers_start(monkeypatch, user, started):
    # (glibc cuts the variable short in a process's own /proc environ once parsed: checked here, where it is set)
    from hetagent.runtime.transport import _worker_environment

    monkeypatch.setenv("GLIBC_TUNABLES", user)
    with _worker_environment():
        assert os.environ["GLIBC_TUNABLES"] == started
    assert os.environ["GLIBC_TUNABLES"] == user


def test_a_worker_that_dies_while_starting_is_an_error_at_once_not_a_wait(registry, cache_dir, agent_files):
    """A worker process that exits before it is ready (here its executor factory exits the interpreter) would
    only die again if restarted: the engine says so at once, naming it, instead of waiting out START_TIMEOUT_S."""
    from hetagent.errors import HetagentError
    from hetagent.runtime.engine import LocalEngine

    prepared = _prepare(agent_files["calculator"], registry, cache_dir)
    dying = [replace(w, factories={op: "sys:exit" for op in w.factories}) for w in prepared.workers]
    start = time.monotonic()
    with pytest.raises(HetagentError, match=f"worker {dying[0].name} .*exited while starting"):
        LocalEngine(prepared.program, dying, _options(cache_dir), kernels_of=prepared.kernels_of)
    assert time.monotonic() - start < 60


def test_kv_format_round_trip():
    from hetagent.backend import kv_format

    kv = np.random.default_rng(0).standard_normal((2, 2, 3, 2, 16, 8)).astype(np.float32)
    name = f"hxtest{os.getpid()}"
    handle = kv_format.write(kv, 5, model="tiny-llama", dtype="fp32", segment=name, batch_index=1)
    try:
        target = np.zeros((2, 2, 1, 2, 32, 8), dtype=np.float32)
        header = kv_format.read_into(handle, target, 0)
        assert (header.model, header.tokens, header.layers) == ("tiny-llama", 5, 2)
        assert np.array_equal(target[:, :, 0, :, :5], kv[:, :, 1, :, :5]) and not target[:, :, :, :, 5:].any()
        with pytest.raises(ValueError, match="does not fit"):
            kv_format.read_into(handle, np.zeros((3, 2, 1, 2, 32, 8), dtype=np.float32))
    finally:
        kv_format.unlink(name)


def test_transforms_tools_and_predicates():
    from hetagent.backend.builtin_tools import calculator, web_search
    from hetagent.backend.tools import ToolContext
    from hetagent.backend.transforms import is_safe, no_tool_call, pii_redact

    assert pii_redact("mail bob@corp.com or call 555-123-4567") == "mail [EMAIL] or call [PHONE]"
    assert not is_safe(["ssn 123-45-6789"], {}) and is_safe(["hello"], {})
    assert no_tool_call([], {"llm.decode": [("plain answer",)]})
    assert not no_tool_call([], {"llm.decode": [('<tool_call>{"tool": "x"}</tool_call>',)]})
    assert calculator({"query": "what is 2 + 3 * 4?"}, None)["result"] == 14
    hits = web_search({"query": "where does water boil on Mount Everest"}, ToolContext(EXAMPLES / "corpus"))["results"]
    assert hits[0]["source"] == "science/boiling-point.txt"


def test_index_and_retrieval_agent(cli, cache_dir, tmp_path):
    index = tmp_path / "index"
    code, out, err = cli("--backends", "cpu", "index", str(EXAMPLES / "corpus"), "-o", str(index), "--json")
    assert code == 0, err
    assert json.loads(out)["count"] >= 30 and (index / "index.faiss").exists()
    agent = tmp_path / "rag.mlir"
    agent.write_text(""""agent.graph"() ({
  %q = "input.query"() : () -> !agent.text
  %d = "memory.load"(%q) {store = "handbook", embed_model = "all-minilm-l6-v2", top_k = 2 : i64, name = "retrieve"}
      : (!agent.text) -> !agent.docs
  %a = "llm.call"(%q, %d) {model = "llama-3-8b", input_tokens = 64 : i64, output_tokens = 8 : i64, name = "answer"}
      : (!agent.text, !agent.docs) -> !agent.text
  "agent.return"(%a) : (!agent.text) -> ()
}) {sym_name = "rag"} : () -> ()
""")
    trace = tmp_path / "trace.json"
    code, out, err = cli("--backends", "cpu", "run", str(agent), "--requests", "2", "--store", f"handbook={index}",
                         "--model-map", "all-minilm-l6-v2=tiny-llama", "--trace-out", str(trace), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["summary"]["ok"] == 2
    assert report["substitutions"] == {"all-minilm-l6-v2": "tiny-llama", "llama-3-8b": "tiny-llama"}
    spans = json.loads(trace.read_text())["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert {s["name"] for s in spans} >= {"retrieve.embed", "retrieve.search", "answer.prefill", "answer.decode"}


def test_run_without_arguments_plans_the_voice_agent_on_this_host_first(cli, cache_dir):
    """The default run's planning step (`--dry-run`: the plan it would run, nothing compiled or run)."""
    code, out, err = cli("--backends", "cpu", "run", "--dry-run", "--json")
    assert code == 0, err
    planned = json.loads(out)["host_plan"]
    # the plan: over two CPU partitions, prefill and decode of an LLM call apart, so its KV cache moves
    assert planned["partitions"] == 2 and set(planned["classes"]) == {"host-cpu:0", "host-cpu:1"}
    placements = planned["plan"]["placements"]
    assert {p["partition"] for p in placements.values()} == {0, 1}
    assert any(placements[f"{call}.prefill"]["partition"] != placements[f"{call}.decode"]["partition"]
               for call in ("plan", "answer"))
    # the rate and SLA were fixed from the plan before running, and say how
    rate = planned["planned_rate_rps"]
    assert rate > 0 and planned["offered_rate_rps"] == rate and "at most 50% busy" in planned["rate_rule"]
    assert planned["sla_ms"] >= planned["predicted_e2e_ms"] > 0
    assert "the agent's SLA" in planned["sla_rule"] or "critical path" in planned["sla_rule"]
    assert "host calibration" in planned["calibration"]
    # a batch only where the rate fills it: no op is planned at a batch larger than its calls in flight
    for label, op in planned["plan"]["ops"].items():
        in_flight = rate * op["executions_per_request"] * op["latency_s"]
        assert placements.get(label, planned["plan"]["default"])["batch"] <= max(1.0, in_flight), label
    rows = {o["op"]: o for o in planned["ops"]}
    for label in ("transcribe", "answer.prefill", "answer.decode", "speak"):
        assert rows[label]["predicted_ms"] > 0 and rows[label]["why"] and rows[label]["measured_ms_p50"] is None
    assert planned["predicted_usd_per_request"] > 0


def test_a_host_planned_run_runs_each_op_where_the_plan_put_it(cli, cache_dir, agent_files):
    code, out, err = cli("--backends", "cpu", "run", str(agent_files["calculator"]), "--plan-host", "--requests", "3",
                         "--json")
    assert code == 0, err
    report = json.loads(out)
    planned = report["host_plan"]
    assert report["summary"]["ok"] + report["summary"]["rejected"] == 3
    assert {w["name"] for w in report["workers"]} == {"host-cpu:0", "host-cpu:1"}
    # every op ran on the worker of the partition the plan put it on, and nowhere else
    for row in planned["ops"]:
        if row["kind"] not in ("input.query", "kv.transfer") and row["measured_ms_p50"] is not None:
            assert row["workers"] == [row["planned_on"]], row
    assert any(row["measured_ms_p50"] for row in planned["ops"])
    assert planned["sla_ms"] == 60000.0 and "the agent's SLA" in planned["sla_rule"]
    assert planned["offered_rate_rps"] == planned["planned_rate_rps"] > 0
    # priced: the per-core price of the host CPU times the cores the workers hold
    from hetagent.hardware.machine_load import usable_cores

    summary = report["summary"]
    per_core = default_pricebook().price_of("host-cpu").cloud_usd_per_core_hour
    assert summary["usd_per_hour"] == pytest.approx(len(usable_cores()) * per_core)
    assert summary["usd_per_request"] is not None and planned["predicted_usd_per_request"] > 0
    # the load the run shared the machine with, and a warning when it was not quiet
    assert summary["load_average_start"] >= 0 and summary["load_average_end"] >= 0
    busy = max(summary["load_average_start"], summary["load_average_end"]) > 0.5 * len(usable_cores())
    stolen = summary["steal"] is not None and summary["steal"] > 0.02
    assert (summary["load_warning"] is None) == (not busy and not stolen)
    # every run checks the cost model: predicted vs measured per LLM op kind on the host
    # on the partition each op ran on: a class of that worker's cores, not the whole host
    assert {c["kind"] for c in report["cost_check"]} == {"llm.prefill", "llm.decode"}
    for row in report["cost_check"]:
        assert row["per"] == ("call" if row["kind"] == "llm.prefill" else "token")
        assert row["device"] in {"host-cpu:0", "host-cpu:1"} and row["samples"] >= 1
        assert row["measured_ms_p50"] > 0 and row["predicted_ms"] > 0
        assert row["error"] == pytest.approx(row["predicted_ms"] / row["measured_ms_p50"] - 1)


def test_a_plan_for_absent_devices_is_refused_unless_fallback_is_allowed(cli, cache_dir, tmp_path):
    """Prefill on an H100 (cuda), decode on an MI300X (rocm): it compiles here (cross-compiled, no GPU needed);
    `run` refuses to start naming both devices, and with --allow-fallback runs on the host, listing each op."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"placements": {"answer.prefill": {"device": "h100-sxm"},
                                               "answer.decode": {"device": "mi300x"}}}))
    agent = EXAMPLES / "rag_qa.mlir"
    code, out, err = cli("--backends", "cpu,cuda,rocm", "compile", str(agent), "--plan", str(plan),
                         "-o", str(tmp_path / "out"), "--json")
    assert code == 0, err
    kernels = {(k["backend"], k["device"]) for k in json.loads(out)["kernels"]}
    assert {("cuda", "h100-sxm"), ("rocm", "mi300x")} <= kernels
    store = tmp_path / "store"
    code, _, err = cli("--backends", "cpu", "index", str(EXAMPLES / "corpus" / "handbook"), "-o", str(store))
    assert code == 0, err
    code, out, err = cli("--backends", "cpu,cuda,rocm", "run", str(agent), "--plan", str(plan), "--requests", "1",
                         "--store", f"handbook={store}")
    assert code == 2 and "Traceback" not in err
    assert "device h100-sxm is not present on this node" in err and "device mi300x is not present" in err
    assert "answer.prefill" in err and "answer.decode" in err and "--allow-fallback" in err
    code, out, err = cli("--backends", "cpu,cuda,rocm", "run", str(agent), "--plan", str(plan), "--requests", "1",
                         "--store", f"handbook={store}", "--allow-fallback", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["summary"]["ok"] == 1
    fallen = "\n".join(report["fallbacks"])
    assert "'answer.prefill'" in fallen and "'answer.decode'" in fallen and "falls back to cpu/host-cpu" in fallen


@pytest.mark.parametrize("argv, message", [
    (["run", "no/such/agent.mlir"], "no/such/agent.mlir"),
    (["run", "--cpu-partitions", "0"], "argument --cpu-partitions: 0 must be >= 1"),
    (["run", "--cpu-partitions", "64"], "--cpu-partitions 64"),
    (["run", "--trace", "x.csv"], "--trace needs --rate"),
    (["run", "--dry-run", "--cpu-partitions", "2"], "not with --plan, --cpu-partitions"),
    (["run", "--model-map", "llama-3-8b=gpt-9"], "unknown model"),
    (["index", "no/such/dir", "-o", "x"], "not a directory"),
])
def test_bad_input_exits_2(cli, cache_dir, argv, message):
    code, out, err = cli("--backends", "cpu", *argv)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_engines_are_the_router_over_a_transport():
    """Both transports implement the whole `Transport` protocol, and LocalEngine / RayEngine add nothing to the
    router but the transport they build (RayEngine: `node_of`, for reports)."""
    from hetagent.runtime.engine import Engine, LocalEngine
    from hetagent.runtime.ray_engine import RayEngine, RayTransport
    from hetagent.runtime.transport import ProcessTransport, Transport

    protocol = {name for name in vars(Transport) if not name.startswith("_")} | set(Transport.__annotations__)
    assert protocol == {"streams_tokens", "spawn", "send", "cancel", "poll", "stop", "kill", "capacity", "wake",
                        "close"}
    for transport in (ProcessTransport, RayTransport):
        assert all(hasattr(transport, name) for name in protocol), transport
    def own(cls):
        return {name for name in vars(cls) if name == "__init__" or not name.startswith("__")}

    assert own(LocalEngine) == {"__init__"} and own(RayEngine) == {"__init__", "node_of"}
    assert issubclass(LocalEngine, Engine) and issubclass(RayEngine, Engine)


def test_irees_task_workers_get_a_core_each_other_threads_the_whole_partition():
    from hetagent.runtime.worker import _thread_cores

    named = threading.Event()
    done = threading.Event()

    def worker():
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as comm:
            comm.write("iree-worker-1")  # the name IREE gives its task worker 1
        named.set()
        done.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert named.wait(10)
        assert _thread_cores(str(thread.native_id), (4, 7)) == (7,)
        assert _thread_cores(str(threading.get_native_id()), (4, 7)) == (4, 7)
    finally:
        done.set()
        thread.join()
