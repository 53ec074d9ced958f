"""The compiler passes that need no torch: place and partition (and their bad input)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import EXAMPLES
from hetagent.compiler import partition, place
from hetagent.plan import Plan
from hetagent.compiler.lower import clean_module_text
from hetagent.compiler.place import agent_ops, compute_ops, label_of
from hetagent.plan import Placement
from hetagent.errors import HetagentError
from hetagent.ir import decompose, load, parse, verify
from hetagent.ir.module import functions
from hetagent.backend import Registry

BACKENDS = ["cpu", "cuda", "rocm", "gaudi"]


@pytest.fixture(scope="module")
def registry():
    return Registry.load(BACKENDS)


def placed(example: str, placements: dict, registry, **kwargs):
    module = decompose(load(EXAMPLES / example))
    plan = Plan.from_dict({"placements": placements}, source="test-plan") if placements else None
    return place(module, plan, registry=registry, **kwargs)


def placements(module) -> dict:
    return {label_of(op) or op.name: Placement.of(op) for op in compute_ops(module)}


def test_default_placement_puts_every_op_on_the_host_cpu(registry):
    module = placed("rag_qa.mlir", {}, registry)
    assert {(p.backend, p.device) for p in placements(module).values()} == {("cpu", "host-cpu")}


def test_a_label_covers_the_parts_decompose_made_and_kv_transfer_follows_decode(registry):
    module = placed("rag_qa.mlir", {"answer": {"device": "h100-sxm"}, "answer.decode": {"device": "mi300x", "batch": 8}}, registry)
    got = placements(module)
    assert got["answer.prefill"] == Placement("h100-sxm", "cuda")
    assert got["answer.decode"] == Placement("mi300x", "rocm", batch=8)
    assert got["answer.kv"] == got["answer.decode"]  # the cache moves to where it is read
    assert got["redact"].backend == "cpu"


def test_an_op_no_backend_claims_is_an_error_unless_fallback_is_allowed(registry):
    with pytest.raises(HetagentError, match=r"(?s)'redact' \(data.transform.*no cuda executor or lowering pipeline "
                                            r"claims data.transform on h100-sxm.*--allow-fallback"):
        placed("rag_qa.mlir", {"redact": {"device": "h100-sxm"}}, registry)
    reports = []
    module = placed("rag_qa.mlir", {"redact": {"device": "h100-sxm"}}, registry, allow_fallback=True,
                    on_fallback=reports.append)
    assert placements(module)["redact"].backend == "cpu"
    assert len(reports) == 1 and "redact" in reports[0] and "falls back to cpu/host-cpu" in reports[0]


def test_placing_on_devices_absent_from_this_node_names_each(registry):
    plan = {"answer.prefill": {"device": "h100-sxm"}, "answer.decode": {"device": "mi300x"}}
    with pytest.raises(HetagentError) as error:
        placed("rag_qa.mlir", plan, registry, present={"host-cpu"})
    message = str(error.value)
    assert "device h100-sxm is not present on this node" in message and "device mi300x is not present" in message
    assert "'answer.prefill'" in message and "'answer.decode'" in message
    module = placed("rag_qa.mlir", plan, registry, present={"host-cpu"}, allow_fallback=True, on_fallback=lambda m: None)
    assert {p.device for p in placements(module).values()} == {"host-cpu"}


@pytest.mark.parametrize(
    "plan, message",
    [
        ({"answr": {"device": "h100-sxm"}}, r"no op is labelled 'answr'.*labels in this agent: answer"),
        ({"answer": {"device": "h100-sxn"}}, r"unknown device 'h100-sxn'"),
        ({"answer": {"device": "h100-sxm", "backend": "rocm"}}, r"belongs to backend 'cuda', not 'rocm'"),
        ({"answer": {"device": "h100-sxm", "tp": 2}}, r"tp = 2.*single-device kernels"),
        ({"answer": {"device": "h100-sxm", "batch": 0}}, r"placements\.answer\.batch: 0 is less than the minimum of 1"),
        ({"answer": {"device": "h100-sxm", "speed": 3}}, r"placements\.answer: Additional properties.*'speed' was unexpected.*valid fields: backend, batch, device"),
    ],
)
def test_bad_plans_are_explained(registry, plan, message):
    with pytest.raises(HetagentError, match=message):
        placed("rag_qa.mlir", plan, registry)


def test_an_unchecked_placement_records_the_plan_as_it_is(registry):
    """`plan --ir-out` writes the planner's decision, tensor parallelism included; compiling it is what refuses."""
    module = placed("rag_qa.mlir", {"answer": {"device": "h100-sxm", "tp": 2}}, registry, check=False)
    assert {p.tp for label, p in placements(module).items() if label.startswith("answer")} == {2}


def test_a_plan_names_an_unlabelled_op_by_its_stable_id(registry):
    """The planner places every op, unlabelled ones by the id the compiler gives them (`ir.passes.ids`)."""
    from hetagent.ir.passes import assign_ids

    module = assign_ids(decompose(load(EXAMPLES / "rag_qa.mlir")))
    plan = Plan.from_dict({"placements": {"input.query#1": {"device": "host-cpu"}}}, source="test-plan")
    place(module, plan, registry=registry)
    with pytest.raises(HetagentError, match=r"no op is labelled 'input.query#9'.*named by its id, e.g. 'input.query#1'"):
        place(assign_ids(decompose(load(EXAMPLES / "rag_qa.mlir"))),
              Plan.from_dict({"placements": {"input.query#9": {"device": "host-cpu"}}}, source="test-plan"),
              registry=registry)


def test_a_plan_naming_a_backend_that_is_not_installed():
    with pytest.raises(HetagentError, match=r"backend 'gaudi' is not installed.*pip install hetagent-gaudi"):
        placed("rag_qa.mlir", {"answer": {"device": "gaudi3-oam", "backend": "gaudi"}}, Registry.load(["cpu"]))


def test_plan_files(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"placements": {"answer": {"device": "mi300x"}}}))
    plan = Plan.load(path)
    assert plan.placements["answer"].device == "mi300x" and not plan.planned
    with pytest.raises(HetagentError, match=r"hetagent simulate needs a plan written by `hetagent plan`"):
        plan.require_figures("hetagent simulate")
    # one schema for every plan: a stray key, or half of the planner's figures, is an error naming the field
    path.write_text(json.dumps({"placements": {}, "planner": "x"}))
    with pytest.raises(HetagentError, match=rf"{path}: not a valid plan.*'planner' was unexpected"):
        Plan.load(path)
    path.write_text(json.dumps({"placements": {}, "cost": {"usd_per_hour": 1.0, "usd_per_request": 0.1}}))
    with pytest.raises(HetagentError, match=r"'format' is a dependency of 'cost'"):
        Plan.load(path)
    path.write_text("{not json")
    with pytest.raises(HetagentError, match="not valid JSON"):
        Plan.load(path)
    with pytest.raises(HetagentError, match="no such plan file"):
        Plan.load(tmp_path / "missing.json")


def _sends_and_recvs(parts: dict) -> tuple[dict, dict]:
    sends, recvs = {}, {}
    for backend, module in parts.items():
        for op in compute_ops(module):
            if op.name in ("xfer.send", "xfer.recv"):
                entry = (backend, op.attributes["peer"].value, op.attributes["payload"].value)
                (sends if op.name == "xfer.send" else recvs)[op.attributes["channel"].value] = entry
    return sends, recvs


def test_partition_cuts_prefill_from_decode_with_kv_and_token_transfers(registry):
    module = placed("rag_qa.mlir", {"answer.prefill": {"device": "h100-sxm"}, "answer.decode": {"device": "mi300x"}}, registry)
    parts = partition(module)
    assert set(parts) == {"cpu", "cuda", "rocm"}
    sends, recvs = _sends_and_recvs(parts)
    assert sends.keys() == recvs.keys()
    for channel, (sender, peer, payload) in sends.items():
        receiver, back, payload_in = recvs[channel]
        assert (peer, back, payload_in) == (receiver, sender, payload)  # each pair agrees on ends and payload
    crossing = sorted((s, r, p) for s, r, p in sends.values())
    assert ("cuda", "rocm", "kv") in crossing and ("cuda", "rocm", "tokens") in crossing
    assert ("cpu", "cuda", "text") in crossing and ("cpu", "cuda", "docs") in crossing
    assert ("rocm", "cpu", "text") in crossing  # the answer goes back to be redacted
    for backend, part in parts.items():
        verify(part)
        assert all(Placement.of(op).backend == backend for op in compute_ops(part) if not op.name.startswith("xfer."))


def test_partition_replicates_loops_that_span_backends(registry):
    module = placed("voice_agent.mlir", {"plan.prefill": {"device": "h100-sxm"}, "plan.decode": {"device": "h100-sxm"}}, registry)
    parts = partition(module)
    for backend in ("cpu", "cuda"):
        loops = [op for op in agent_ops(parts[backend]) if op.name == "control.loop"]
        assert len(loops) == 1, backend  # both run the loop: the LLM and the search tool sit in its body
    sends, recvs = _sends_and_recvs(parts)
    assert sends.keys() == recvs.keys() and sends


def test_the_input_module_is_left_unchanged(registry):
    module = placed("rag_qa.mlir", {"answer.decode": {"device": "mi300x"}}, registry)
    before = str(module)
    partition(module)
    assert str(module) == before


def test_a_kernel_holding_an_agent_op_is_refused_before_iree_sees_it():
    module = parse(
        '"agent.graph"() ({\n  %q = "input.query"() : () -> !agent.text\n  "agent.return"(%q) : (!agent.text) -> ()\n'
        '}) {sym_name = "a"} : () -> ()\n'
        'func.func @k(%x: tensor<4xf32>) -> tensor<4xf32> {\n  "llm.decode"() : () -> ()\n  return %x : tensor<4xf32>\n}'
    )
    assert "k" in functions(module)
    with pytest.raises(HetagentError, match=r"kernel @k contains agent op\(s\) 'llm.decode'"):
        clean_module_text(module, "k")


def test_a_kernel_attribute_must_name_a_function():
    module = parse(
        '"agent.graph"() ({\n  %q = "input.query"() : () -> !agent.text\n'
        '  %e = "memory.embed"(%q) {embed_model = "m", kernel = @nowhere} : (!agent.text) -> !agent.embedding\n'
        '  "agent.return"(%e) : (!agent.embedding) -> ()\n}) {sym_name = "a"} : () -> ()'
    )
    with pytest.raises(HetagentError, match="names kernel '@nowhere', which is no func.func"):
        verify(module)


def test_lowering_pipelines_are_registered_per_profile_with_stable_hashes(registry):
    pipelines = {(p.backend, p.device_kind): p for p in registry.lowering_pipelines()}
    assert pipelines[("cpu", "host-cpu")].stages[-1].name == "iree-llvm-cpu"
    assert pipelines[("cuda", "h100-sxm")].target_options == {"target": "sm_89"}  # IREE 3.13 cannot build sm_90
    assert pipelines[("cuda", "a100-80gb-sxm")].target_options == {"target": "sm_80"}
    assert pipelines[("rocm", "mi300x")].target_options == {"target": "gfx942"}
    assert pipelines[("gaudi", "gaudi3-oam")].artifact == "pt2"
    assert len({p.hash() for p in pipelines.values()}) == len(pipelines)
    from hetagent.compiler.pipelines import with_target_options

    h100 = pipelines[("cuda", "h100-sxm")]
    assert with_target_options(h100, {"target": "sm_80"}).hash() != h100.hash()
    with pytest.raises(HetagentError, match=r"unknown target option\(s\) arch.*valid options: target"):
        with_target_options(h100, {"arch": "sm_80"})


def test_without_torch_compiling_a_model_kernel_says_what_to_install(tmp_path):
    """The core runs without torch (requirements.txt); exporting a model function then asks for the extra."""
    agent = tmp_path / "agent.mlir"
    agent.write_text(
        '"agent.graph"() ({\n  %q = "input.query"() : () -> !agent.text\n'
        '  %a = "llm.call"(%q) {model = "tiny-llama", input_tokens = 64 : i64, output_tokens = 64 : i64} : (!agent.text) -> !agent.text\n'
        '  "agent.return"(%a) : (!agent.text) -> ()\n}) {sym_name = "a"} : () -> ()'
    )
    code = ("import sys; sys.modules['torch'] = None; from hetagent.cli import main; "
            f"sys.exit(main(['--backends', 'cpu', 'compile', {str(agent)!r}, '-o', {str(tmp_path / 'out')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "HETAGENT_CACHE_DIR": str(tmp_path / "cache")}, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "pip install 'hetagent[torch]'" in result.stderr and "Traceback" not in result.stderr
