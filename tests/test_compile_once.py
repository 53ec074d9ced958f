"""Compile once: `hetagent run` and `serve` load, decompose and place an agent once, and build their program from
the `CompiledAgent`; ops are matched by their ids (never by position) across the manifest, the program, the run
report and the trace."""

import json
import sys
from collections import Counter

import pytest

pytest.importorskip("torch")

AGENT = """"agent.graph"() ({
  %q = "input.query"() {tokens = 32 : i64} : () -> !agent.text
%OPS%
  "agent.return"(%r) : (!agent.text) -> ()
}) {sym_name = "twice", sla_ms = 60000.0 : f64} : () -> ()
"""
LONG = """  %a = "llm.call"(%q) {model = "llama-3-8b", input_tokens = 64 : i64, output_tokens = 24 : i64, name = "answer"}
      : (!agent.text) -> !agent.text"""
SHORT = """  %b = "llm.call"(%q) {model = "llama-3-8b", input_tokens = 200 : i64, output_tokens = 8 : i64, name = "NAME"}
      : (!agent.text) -> !agent.text"""
TOOL = """  %h = "tool.invoke"(%q) {tool = "calculator", timeout_ms = 300.0 : f64} : (!agent.text) -> !agent.json"""
JOIN = """  %r = "data.transform"(%a, %b) {fn = "pii_redact"} : (!agent.text, !agent.text) -> !agent.text"""
JOIN3 = """  %r = "data.transform"(%a, %b, %h) {fn = "pii_redact"} : (!agent.text, !agent.text, !agent.json) -> !agent.text"""


def _agent(tmp_path, name, *ops):
    path = tmp_path / f"{name}.mlir"
    path.write_text(AGENT.replace("%OPS%", "\n".join(ops)))
    return path


def _prepare(agent, registry, cache_dir):
    from hetagent.compiler.cache import CompileCache
    from hetagent.runtime.run import prepare

    return prepare(agent, registry=registry, cache=CompileCache(cache_dir))


def _matched(prepared) -> dict:
    """Every compute node of the program against the manifest entry of its id: same op, device and kernel."""
    from hetagent.runtime.program import is_compute

    manifest = json.loads((prepared.compiled.out_dir / "manifest.json").read_text())
    by_id = {o["id"]: o for o in manifest["ops"]}
    assert len(by_id) == len(manifest["ops"]), "ids are unique"
    nodes = {n.label: n for n in prepared.program.nodes() if is_compute(n)}
    assert set(nodes) == set(by_id)
    for label, node in nodes.items():
        entry = by_id[label]
        assert (entry["op"], entry["device"]) == (node.op, node.placement.device)
        assert entry["kernel"] == (node.kernel.symbol if node.kernel else None)
        if node.op == "llm.prefill":  # the kernel is the one built for this op's own prompt length
            assert node.kernel.function["prompt"] >= node.attrs["input_tokens"] > node.kernel.function["prompt"] // 2
    return nodes


def test_ids_match_across_renamed_reordered_and_added_ops(tmp_path, registry, cache_dir):
    first = _matched(_prepare(_agent(tmp_path, "first", LONG, SHORT.replace("NAME", "summary"), JOIN),
                              registry, cache_dir))
    assert {"answer.prefill", "answer.kv", "answer.decode", "summary.prefill", "input.query#1",
            "data.transform#1"} <= set(first)
    # the summary renamed, the two calls swapped, a tool call added in front of them
    second = _matched(_prepare(_agent(tmp_path, "second", TOOL, SHORT.replace("NAME", "brief"), LONG, JOIN3),
                               registry, cache_dir))
    assert "summary.prefill" not in second and {"brief.prefill", "tool.lookup#1", "tool.compute#1"} <= set(second)
    assert second["answer.prefill"].kernel.symbol == first["answer.prefill"].kernel.symbol
    assert second["brief.prefill"].kernel.symbol == first["summary.prefill"].kernel.symbol
    assert second["brief.prefill"].kernel.symbol != second["answer.prefill"].kernel.symbol


def test_report_and_trace_name_ops_by_their_ids(registry, cache_dir, agent_files):
    from hetagent.runtime.engine import EngineOptions, Request
    from hetagent.runtime.run import new_run_id, run_prepared

    prepared = _prepare(agent_files["calculator"], registry, cache_dir)
    manifest = json.loads((prepared.compiled.out_dir / "manifest.json").read_text())
    ids = {o["id"] for o in manifest["ops"]}
    result = run_prepared(prepared, [Request(0, {"query": "what is 2 + 3?"}, 0.0, seed=1)], registry=registry,
                          options=EngineOptions(run_id=new_run_id(), cache_dir=str(cache_dir)))
    assert result.records[0].status == "ok"
    reported = {o["op"] for o in result.ops}
    assert {"answer.prefill", "answer.decode", "lookup.compute", "redact"} <= reported <= ids
    spans = {s["name"] for r in result.trace["resourceSpans"] for ss in r["scopeSpans"] for s in ss["spans"]
             if "parentSpanId" in s}
    assert spans == reported


def _count_calls(monkeypatch, functions) -> Counter:
    """Count calls of each of `functions`, wherever a module bound it by name."""
    counts: Counter = Counter()
    for function in functions:
        def wrapper(*args, __function=function, **kwargs):
            counts[__function.__name__] += 1
            return __function(*args, **kwargs)

        for module in list(sys.modules.values()):
            if getattr(module, "__name__", "").startswith("hetagent"):
                for name, value in list(vars(module).items()):
                    if value is function:
                        monkeypatch.setattr(module, name, wrapper)
    return counts


@pytest.mark.parametrize("command", ["run", "serve"])
def test_run_and_serve_decompose_and_place_once(command, monkeypatch, registry, cache_dir, agent_files):
    import hetagent.cli.engine_args as engine_args
    import hetagent.runtime.run  # noqa: F401  (bound before counting)
    from hetagent.agent.loader import load_agent
    from hetagent.cli import build_parser
    from hetagent.compiler.cache import CompileCache
    from hetagent.compiler.place import place
    from hetagent.errors import HetagentError
    from hetagent.ir.passes.decompose import decompose

    agent = agent_files["calculator"]
    args = build_parser().parse_args([command, str(agent)])
    counts = _count_calls(monkeypatch, [load_agent, decompose, place])
    prepared = engine_args.prepare_agent(agent, args, registry=registry, cache=CompileCache(cache_dir))
    assert prepared.program.nodes()
    assert counts == {"load_agent": 1, "decompose": 1, "place": 1}  # warm or cold cache alike
    # the start-up resource check is part of that one load: a tool the options do not give fails it
    counts.clear()
    missing = _agent(agent.parent, f"missing-{command}", TOOL.replace("calculator", "no-such-tool"),
                     """  %r = "data.transform"(%h) {fn = "pii_redact"} : (!agent.json) -> !agent.text""")
    with pytest.raises(HetagentError, match="tool 'no-such-tool'.*--tool no-such-tool=URL"):
        engine_args.prepare_agent(missing, build_parser().parse_args([command, str(missing)]), registry=registry,
                                  cache=CompileCache(cache_dir))
    assert counts == {"load_agent": 1}
