"""Compiling agents end to end: model functions exported from torch, IREE artifacts for cpu (run and checked
against the torch reference), cuda and rocm (cross-compiled), gaudi (a saved torch graph), the manifest, the
cache, and `hetagent compile`. Compiles a tiny Llama once per session; the cache makes later compiles hits."""

import json
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import EXAMPLES  # noqa: E402
from hetagent.compiler import CompileCache# noqa: E402
from hetagent.plan import Plan  # noqa: E402
from hetagent.compiler.driver import compile_agent  # noqa: E402
from hetagent.models import card# noqa: E402
from hetagent.models import reference# noqa: E402
from hetagent.backend import Registry  # noqa: E402

TINY = card("tiny-llama")
RELATIVE_TOLERANCE = 1e-4  # float32
AGENT = """
"agent.graph"() ({
  %q = "input.query"() {tokens = 32 : i64} : () -> !agent.text
  %docs = "memory.load"(%q) {store = "notes", embed_model = "tiny-llama", name = "retrieve"} : (!agent.text) -> !agent.docs
  %a = "llm.call"(%q, %docs) {model = "tiny-llama", dtype = "fp32", input_tokens = 64 : i64, output_tokens = 64 : i64,
                               name = "answer"} : (!agent.text, !agent.docs) -> !agent.text
  %s = "tool.invoke"(%a) {tool = "web_search", name = "search"} : (!agent.text) -> !agent.json
  "agent.return"(%s) : (!agent.json) -> ()
}) {sym_name = "tiny_qa"} : () -> ()
"""
CROSS_PLAN = {
    "placements": {
        "answer.prefill": {"device": "h100-sxm"},
        "answer.decode": {"device": "mi300x"},
        "retrieve.embed": {"device": "gaudi3-oam"},
    }
}


@pytest.fixture(scope="session")
def registry():
    return Registry.load(["cpu", "cuda", "rocm", "gaudi"])


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return CompileCache(tmp_path_factory.mktemp("hetagent-cache"))


@pytest.fixture(scope="session")
def agent(tmp_path_factory):
    path = tmp_path_factory.mktemp("agent") / "tiny_qa.mlir"
    path.write_text(AGENT)
    return path


@pytest.fixture(scope="session")
def cpu_build(agent, registry, cache, tmp_path_factory):
    """The tiny agent compiled for the host CPU (cold: exports and compiles three kernels)."""
    out = tmp_path_factory.mktemp("cpu-build")
    start = time.perf_counter()
    manifest = compile_agent(agent, out, registry=registry, cache=cache).manifest
    return out, manifest, time.perf_counter() - start


@pytest.fixture(scope="session")
def cross_build(agent, registry, cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("cross-build")
    plan = Plan.from_dict(CROSS_PLAN, source="cross-plan")
    return out, compile_agent(agent, out, registry=registry, cache=cache, plan=plan).manifest


def kernel(manifest, function: str, device: str = "host-cpu") -> dict:
    return next(k for k in manifest["kernels"] if k["function"]["function"] == function and k["device"] == device)


class IreeKernel:
    """A compiled cpu kernel through the cpu backend's kernel runner (IREE local-sync): the weights, passed after
    the inputs, are bound as the artifact's IREE parameters."""

    def __init__(self, path, entry: dict, weights: dict):
        from hetagent.backend.iree import kernel_runner

        self.run = kernel_runner(path, entry["symbol"], "host-cpu")
        self.weights = [weights[name].numpy() for name in entry["signature"]["weights"]]

    def __call__(self, *inputs):
        return list(self.run(*[x.numpy() for x in inputs], *self.weights))


def relative_error(got, want) -> float:
    want = want.detach().numpy() if hasattr(want, "detach") else want
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="session")
def tiny_weights():
    return reference.random_weights(TINY, seed=1234)


def test_cpu_build_manifest(cpu_build):
    out, manifest, seconds = cpu_build
    functions = sorted(k["function"]["function"] for k in manifest["kernels"])
    assert functions == ["decode", "embed", "extend", "prefill"]
    for entry in manifest["kernels"]:
        assert (out / entry["artifact"]["file"]).stat().st_size == entry["artifact"]["bytes"] > 0
        assert entry["pipeline"]["stages"] == ["decode-in-place", "weights-as-parameters", "merge-projections",
                                              "torch-to-linalg", "drop-tensor-aliases", "iree-llvm-cpu"]
        assert entry["pipeline"]["target_options"]["target_cpu"]
    ops = {o["name"] or o["op"]: o for o in manifest["ops"]}
    assert ops["answer.prefill"]["kernel"] == "tiny_llama_prefill_fp32_b1_t64_s128"
    assert ops["answer.prefill"]["extend_kernel"] == "tiny_llama_extend_fp32_b1_t64_s128"  # the prefix cache's
    assert ops["answer.decode"]["kernel"] == "tiny_llama_decode_fp32_b1_s128"
    assert ops["search.compute"]["kernel"] is None  # a tool: runs in an executor
    assert json.loads((out / "manifest.json").read_text()) == manifest
    print(f"cold compile of the tiny agent for cpu: {seconds:.1f} s")


def test_prefill_matches_the_torch_reference(cpu_build, tiny_weights):
    out, manifest, _ = cpu_build
    entry = kernel(manifest, "prefill")
    generator = torch.Generator().manual_seed(int(time.time()))  # fresh inputs each run
    tokens = torch.randint(0, TINY.vocab_size, (1, 64), generator=generator)
    lengths = torch.randint(1, 65, (1,), generator=generator)
    logits, kv = IreeKernel(out / entry["artifact"]["file"], entry, tiny_weights)(tokens, lengths)
    want_logits, want_kv = reference.prefill(TINY, tiny_weights, tokens, lengths, 128)
    assert relative_error(logits, want_logits) <= RELATIVE_TOLERANCE
    assert relative_error(kv, want_kv) <= RELATIVE_TOLERANCE


def test_decode_matches_the_torch_reference(cpu_build, tiny_weights):
    out, manifest, _ = cpu_build
    entry = kernel(manifest, "decode")
    generator = torch.Generator().manual_seed(int(time.time()) + 1)
    tokens = torch.randint(0, TINY.vocab_size, (1, 64), generator=generator)
    length = int(torch.randint(1, 64, (1,), generator=generator))
    _, kv = reference.prefill(TINY, tiny_weights, tokens, torch.tensor([length]), 128)
    token, position = torch.randint(0, TINY.vocab_size, (1,), generator=generator), torch.tensor([length])
    logits, new_kv = IreeKernel(out / entry["artifact"]["file"], entry, tiny_weights)(token, position, kv)
    want_logits, want_kv = reference.decode(TINY, tiny_weights, token, position, kv)
    assert relative_error(logits, want_logits) <= RELATIVE_TOLERANCE
    assert relative_error(new_kv, want_kv) <= RELATIVE_TOLERANCE


def test_extend_over_a_cached_prefix_matches_the_torch_reference(cpu_build, tiny_weights):
    out, manifest, _ = cpu_build
    entry = kernel(manifest, "extend")
    generator = torch.Generator().manual_seed(int(time.time()) + 3)
    tokens = torch.randint(0, TINY.vocab_size, (1, 64), generator=generator)
    start = int(torch.randint(1, 64, (1,), generator=generator))
    _, kv = reference.prefill(TINY, tiny_weights, tokens, torch.tensor([start]), 128)
    chunk, length = torch.randint(0, TINY.vocab_size, (1, 64), generator=generator), torch.tensor([40])
    logits, new_kv = IreeKernel(out / entry["artifact"]["file"], entry, tiny_weights)(chunk, length,
                                                                                     torch.tensor([start]), kv)
    want_logits, want_kv = reference.extend(TINY, tiny_weights, chunk, length, torch.tensor([start]), kv)
    assert relative_error(logits, want_logits) <= RELATIVE_TOLERANCE
    assert relative_error(new_kv, want_kv) <= RELATIVE_TOLERANCE


def test_embedding_matches_the_torch_reference(cpu_build, tiny_weights):
    out, manifest, _ = cpu_build
    entry = kernel(manifest, "embed")
    generator = torch.Generator().manual_seed(int(time.time()) + 2)
    tokens = torch.randint(0, TINY.vocab_size, (1, 512), generator=generator)
    lengths = torch.randint(1, 513, (1,), generator=generator)
    (embedding,) = IreeKernel(out / entry["artifact"]["file"], entry, tiny_weights)(tokens, lengths)
    want = reference.embed(TINY, tiny_weights, tokens, lengths)
    assert relative_error(embedding, want) <= RELATIVE_TOLERANCE
    assert np.linalg.norm(embedding) == pytest.approx(1.0, rel=1e-5)


def test_a_second_compile_is_all_cache_hits(cpu_build, agent, registry, cache, tmp_path):
    _, first, _ = cpu_build
    start = time.perf_counter()
    second = compile_agent(agent, tmp_path, registry=registry, cache=cache).manifest
    seconds = time.perf_counter() - start
    assert {k["cache"] for k in second["kernels"]} == {"hit"}
    assert [k["artifact"]["sha256"] for k in second["kernels"]] == [k["artifact"]["sha256"] for k in first["kernels"]]
    assert seconds < 1.0, f"a cache hit took {seconds:.2f} s"


def test_artifacts_are_deterministic_for_a_given_hash(cpu_build, registry):
    """The decode kernel, cleaned again from the written partition and rebuilt outside the cache: same function
    hash, same bytes."""
    from hetagent.compiler.cache import digest
    from hetagent.compiler.lower import clean_module_text
    from hetagent.compiler.pipelines import find_pipeline, run_pipeline
    from hetagent.ir import load, parse

    out, manifest, _ = cpu_build
    decode = kernel(manifest, "decode")
    source = clean_module_text(load(out / "cpu.mlir"), decode["symbol"])
    assert digest(source) == decode["function_hash"]
    pipeline = find_pipeline(registry, "cpu", "host-cpu")
    assert pipeline.hash() == decode["pipeline"]["hash"]
    rebuilt = run_pipeline(pipeline, parse(source), "rebuilding the decode kernel")
    assert digest(rebuilt) == digest((out / decode["artifact"]["file"]).read_bytes())


def test_cross_compiled_cuda_and_rocm_artifacts_and_the_kv_cut(cross_build):
    import iree.runtime as rt

    out, manifest = cross_build
    prefill = kernel(manifest, "prefill", "h100-sxm")
    decode = kernel(manifest, "decode", "mi300x")
    assert prefill["pipeline"]["target_options"] == {"target": "sm_89"}
    assert decode["pipeline"]["target_options"] == {"target": "gfx942"}
    for entry in (prefill, decode):
        data = (out / entry["artifact"]["file"]).read_bytes()
        assert len(data) == entry["artifact"]["bytes"]
        module = rt.VmModule.copy_buffer(rt.VmInstance(), data)  # a valid IREE VM module (running it needs the GPU)
        assert entry["symbol"] in module.function_names
    assert set(manifest["partitions"]) == {"cpu", "cuda", "rocm", "gaudi"}
    crossing = {(t["from"], t["to"], t["payload"]) for t in manifest["transfers"]}
    assert {("cuda", "rocm", "kv"), ("cuda", "rocm", "tokens"), ("gaudi", "cpu", "embedding")} <= crossing


def test_gaudi_artifact_is_a_torch_graph_that_loads_and_matches(cross_build, tiny_weights):
    """The HPU compile itself needs a Gaudi node; here the saved graph is loaded by torch and run on the CPU."""
    from torch.export.passes import move_to_device_pass

    out, manifest = cross_build
    entry = kernel(manifest, "embed", "gaudi3-oam")
    assert entry["artifact"]["format"] == "pt2" and entry["pipeline"]["stages"] == ["torch-export"]
    program = move_to_device_pass(torch.export.load(out / entry["artifact"]["file"]), "cpu")
    tokens = torch.randint(0, TINY.vocab_size, (1, 512))
    lengths = torch.tensor([200])
    (got,) = program.module()(tokens, lengths, *[tiny_weights[n] for n in entry["signature"]["weights"]])
    assert relative_error(got.numpy(), reference.embed(TINY, tiny_weights, tokens, lengths)) <= RELATIVE_TOLERANCE


# ------------------------------------------------------------------------------------------------ the command


@pytest.fixture
def cached_cli(cli, cache, monkeypatch):
    monkeypatch.setenv("HETAGENT_CACHE_DIR", str(cache.root))
    return cli


def test_hetagent_compile_writes_artifacts_and_manifest(cached_cli, cpu_build, agent, tmp_path):
    code, out, err = cached_cli("--backends", "cpu,cuda,rocm,gaudi", "compile", str(agent), "-o", str(tmp_path), "--json")
    assert code == 0, err
    manifest = json.loads(out)
    assert {k["cache"] for k in manifest["kernels"]} == {"hit"}
    assert (tmp_path / "cpu.mlir").is_file() and (tmp_path / "manifest.json").is_file()
    code, out, err = cached_cli("--backends", "cpu", "compile", str(agent), "-o", str(tmp_path / "table"))
    assert code == 0, err
    assert "tiny_llama_decode_fp32_b1_s128" in out and "manifest.json" in out


def test_hetagent_compile_the_example_agents(cached_cli, tmp_path):
    """The paper's voice agent and the QA agent, with the tiny model standing in for Llama-3-8B at the session's
    shapes (so their kernels come from the cache): cpu artifacts that load, cuda and rocm artifacts listed."""
    import re

    import iree.runtime as rt

    from hetagent.backend.functions import PARAMETER_SCOPE
    from hetagent.models.weight_names import weight_shapes

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"placements": {"answer.prefill": {"device": "h100-sxm"}, "answer.decode": {"device": "mi300x"}}}))
    for example in ("voice_agent.mlir", "rag_qa.mlir"):
        source = (EXAMPLES / example).read_text().replace("llama-3-8b", "tiny-llama").replace("bf16", "fp32")
        source = re.sub(r"(input|output)_tokens = \d+ : i64", r"\1_tokens = 64 : i64", source)
        source = source.replace("mean = 1024.0 : f64, std = 256.0", "mean = 32.0 : f64, std = 8.0")
        (tmp_path / example).write_text(source)
        out = tmp_path / example.replace(".mlir", "")
        code, text, err = cached_cli("--backends", "cpu,cuda,rocm,gaudi", "compile", str(tmp_path / example),
                                     "--plan", str(plan), "-o", str(out), "--json")
        assert code == 0, err
        manifest = json.loads(text)
        devices = {(k["backend"], k["function"]["function"]) for k in manifest["kernels"]}
        if example == "rag_qa.mlir":  # its embedding model is a BERT encoder at full size: the encoder's embed
            embed = next(o for o in manifest["ops"] if o["op"] == "memory.embed")
            assert embed["kernel"] == "all_minilm_l6_v2_embed_fp32_b1_t512"
        assert {("cuda", "prefill"), ("rocm", "decode")} <= devices
        for entry in manifest["kernels"]:
            assert (out / entry["artifact"]["file"]).stat().st_size > 0
            if entry["backend"] == "cpu":  # its weights are IREE parameters: bind zeros of their shapes
                config = rt.Config("local-sync")
                index = rt.ParameterIndex()
                for i, shape in enumerate(weight_shapes(card(entry["function"]["model"])).values()):
                    index.add_buffer(str(i), np.zeros(shape, np.float32))
                parameters = rt.create_io_parameters_module(config.vm_instance, index.create_provider(scope=PARAMETER_SCOPE))
                module = rt.VmModule.copy_buffer(config.vm_instance, (out / entry["artifact"]["file"]).read_bytes())
                # loads the executables on the CPU and runs the initializer (packing the weights)
                context = rt.SystemContext(vm_modules=[parameters, module], config=config)
                assert entry["symbol"] in context.modules.module.vm_module.function_names


def test_hetagent_compile_bad_input(cached_cli, cpu_build, agent, tmp_path):
    code, _, err = cached_cli("--backends", "cpu", "compile", str(agent), "-o", str(tmp_path), "--target-option", "cpu.arch=znver4")
    assert code == 2 and "unknown target option(s) arch" in err and "target_cpu" in err
    code, _, err = cached_cli("--backends", "cpu", "compile", str(agent), "-o", str(tmp_path), "--target-option", "cpu")
    assert code == 2 and "BACKEND.OPTION=VALUE" in err
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"placements": {"search": {"device": "h100-sxm"}}}))
    code, _, err = cached_cli("--backends", "cpu,cuda", "compile", str(agent), "-o", str(tmp_path), "--plan", str(plan))
    assert code == 2 and "no cuda executor or lowering pipeline claims tool.lookup" in err
    code, _, err = cached_cli("--backends", "cpu", "compile", str(agent), "-o", str(tmp_path), "--plan", str(plan))
    assert code == 2 and "unknown device 'h100-sxm'" in err  # its backend is not loaded


def test_a_model_directory_with_a_missing_or_mismatched_tensor(cached_cli, agent, tiny_weights, tmp_path):
    from safetensors.torch import save_file

    directory = tmp_path / "tiny"
    directory.mkdir()
    partial = dict(tiny_weights)
    del partial["model.layers.1.mlp.up_proj.weight"]
    save_file(partial, str(directory / "model.safetensors"))
    code, _, err = cached_cli("--backends", "cpu", "compile", str(agent), "-o", str(tmp_path / "o"), "--weights", f"tiny-llama={directory}")
    assert code == 2 and "model.layers.1.mlp.up_proj.weight" in err and "missing" in err
    wrong = dict(tiny_weights, **{"model.norm.weight": torch.ones(3)})
    save_file(wrong, str(directory / "model.safetensors"))
    code, _, err = cached_cli("--backends", "cpu", "compile", str(agent), "-o", str(tmp_path / "o"), "--weights", f"tiny-llama={directory}")
    assert code == 2 and "'model.norm.weight' has shape [3]" in err
    save_file(dict(tiny_weights), str(directory / "model.safetensors"))
    loaded = reference.load_weights(TINY, directory)
    assert all(torch.equal(loaded[n], tiny_weights[n]) for n in tiny_weights)


def test_decode_writes_its_cache_in_place_rather_than_copying_it(tmp_path):
    """The cpu pipeline's decode scatters the step's rows into the cache it is given (`decode_in_place`): IREE's
    stream program then copies no cache-sized block on a call, where with the store's alias kept it copies the
    whole cache."""
    import dataclasses
    import re

    from iree.compiler import ir

    from hetagent.backend.functions import ModelFunction
    from hetagent.compiler.export import import_function
    from hetagent.compiler.pipelines import run_pipeline
    from hetagent.ir.context import new_context
    from hetagent_cpu import detect, lowering

    fn = ModelFunction("tiny-llama", "decode", "fp32", 2, capacity=128)
    model = card(fn.model)
    cache_bytes = model.num_layers * 2 * fn.batch * model.num_kv_heads * fn.capacity * model.head_size * 4
    pipeline = lowering.pipeline(detect.PROFILE, detect.cpu_info().arch)

    def copied(stages) -> list[int]:
        stages = [dataclasses.replace(s, action=s.action + " --compile-to=stream") if s.kind == "iree" else s
                  for s in stages]
        with new_context() as context, ir.Location.unknown(context):
            module = ir.Module.create()
        import_function(fn, module, CompileCache(tmp_path))
        stream = run_pipeline(dataclasses.replace(pipeline, stages=tuple(stages)), module, "test").decode()
        # a call's copies: the initializer's run once, at load (`merge_projections`' weight concatenations)
        calls = [part for part in re.split(r"\n  (?=util\.initializer|util\.func)", stream)
                 if not part.startswith("util.initializer")]
        return [int(n) for part in calls for n in re.findall(r"stream\.cmd\.copy .*, %c(\d+) :", part)]

    assert max(copied(pipeline.stages), default=0) < cache_bytes
    kept_alias = [s for s in pipeline.stages if s != lowering.DROP_TENSOR_ALIASES]
    assert cache_bytes in copied(kept_alias)  # what the check would see if the decode copied its cache


def test_merge_projections_makes_one_matmul_of_each_inputs_projections(tmp_path):
    """`merge_projections` turns a layer's q, k and v matmuls into one, and its MLP's gate and up into one, over
    the weights' concatenation (a computation on parameter globals, which IREE runs at load); the down projection
    and the LM head, each alone on its input, stay. Without parameter globals it refuses: the concatenation would
    then run on every call."""
    import re

    from iree.compiler import ir

    from hetagent.backend.functions import ModelFunction, decode_in_place, merge_projections, weights_as_parameters
    from hetagent.compiler.export import import_function
    from hetagent.errors import HetagentError
    from hetagent.ir.context import new_context

    fn = ModelFunction("tiny-llama", "decode", "fp32", 1, capacity=64)
    model = card(fn.model)

    def exported() -> ir.Module:
        with new_context() as context, ir.Location.unknown(context):
            module = ir.Module.create()
        import_function(fn, module, CompileCache(tmp_path))
        return decode_in_place(module)

    def matmul_widths(module) -> list[int]:  # the output width of each `x @ W.T`
        return [int(n) for n in re.findall(r"torch\.aten\.matmul .*-> !torch\.vtensor<\[1,1,(\d+)\],f32>", str(module))]

    before = matmul_widths(exported())
    merged = merge_projections(weights_as_parameters(exported()))
    after = matmul_widths(merged)
    qkv = (model.num_heads + 2 * model.num_kv_heads) * model.head_size
    layer = [model.hidden_size, model.num_kv_heads * model.head_size, model.num_kv_heads * model.head_size,
             model.hidden_size, model.intermediate_size, model.intermediate_size, model.hidden_size]
    assert before == layer * model.num_layers + [model.vocab_size]
    assert after == [qkv, model.hidden_size, 2 * model.intermediate_size, model.hidden_size] * model.num_layers + [
        model.vocab_size]
    merged.operation.verify()
    with pytest.raises(HetagentError, match="weights-as-parameters"):
        merge_projections(exported())
