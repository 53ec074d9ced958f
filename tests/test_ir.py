"""The agent dialect: op table, builder, text/bytecode round trip, verifier messages, decompose."""

import re

import pytest

from hetagent.errors import IRError
from hetagent.ir import AgentBuilder, OPS, check, decompose, load, parse, to_bytecode, to_text, verify
from hetagent.ir.docgen import render

from conftest import EXAMPLES, ROOT

DESIGN_OPS = """agent.graph input.query input.audio audio.stt audio.tts memory.load memory.store llm.call tool.invoke
data.transform control.branch control.loop agent.return llm.prefill kv.transfer llm.decode tool.lookup tool.compute
memory.embed memory.search gate.select expert.tp.prefill expert.tp.decode merge.expert_outputs collective.allreduce
xfer.send xfer.recv""".split()

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.mlir"))


def test_op_table_covers_every_op_of_the_design():
    assert set(DESIGN_OPS) <= set(OPS)
    for op in OPS.values():
        assert op.summary and op.example, op.name
        assert op.level in ("high", "granular", "structural")
        for target in op.decomposes_to:
            assert OPS[target].level == "granular"


_SIGNATURE = re.compile(r'^(?:(%[\w#:]+(?:, %\w+)*) = )?"([\w.]+)"\(([^)]*)\)(?: \{.*\})? : \(([^)]*)\) -> (.*)$', re.S)


@pytest.mark.parametrize("name", [n for n, op in OPS.items() if not op.regions and not op.terminator and n != "agent.call"])
def test_every_spec_example_verifies(name):
    """Each op's example (from the table, printed in spec/dialect.md) verifies inside a graph whose block
    arguments stand for the example's free operands."""
    example = OPS[name].example
    match = _SIGNATURE.match(example)
    assert match, example
    operands = [o.strip() for o in match.group(3).split(",") if o.strip()]
    types = [t.strip() for t in match.group(4).split(",") if t.strip()]
    args = ", ".join(f"{o}: {t}" for o, t in zip(operands, types))
    text = f'"agent.graph"() ({{\n^bb0({args}):\n  {example}\n  "agent.return"() : () -> ()\n}}) {{sym_name = "t"}} : () -> ()'
    verify(parse(text))


def test_spec_dialect_md_is_generated_from_the_table():
    assert (ROOT / "spec" / "dialect.md").read_text() == render(), "run: python -m hetagent.ir.docgen > spec/dialect.md"


def build_voice():
    b = AgentBuilder()
    with b.graph("voice", sla_ms=2000.0) as g:
        audio = g.op("input.audio", sample_rate=16000)
        text = g.op("audio.stt", audio, model="whisper-large-v3")
        with g.loop(text, max_trips=3, expected_trips=1.5, until="no_tool_call") as loop:
            (ctx,) = loop.args
            thought = loop.op("llm.call", ctx, model="llama-3-8b", input_tokens=512, output_tokens=64, name="plan")
            hits = loop.op("tool.invoke", thought, tool="web_search", latency_ms=300.0, result_types=["!agent.json"])
            loop.yield_(loop.op("data.transform", ctx, thought, hits, fn="concat", result_types=["!agent.text"]))
        answer = g.op("llm.call", *loop.results, model="llama-3-8b", output_tokens={"mean": 256.0, "dist": "lognormal"})
        with g.branch(answer, predicate="is_safe", result_types=["!agent.text"], p_then=0.95) as br:
            br.then_.yield_(answer)
            br.else_.yield_(br.else_.op("data.transform", answer, fn="pii_redact", result_types=["!agent.text"]))
        g.ret(g.op("audio.tts", *br.results, model="kokoro-82m"))
    return b.module


def test_builder_output_verifies_and_round_trips_through_text_and_bytecode():
    module = verify(build_voice())
    text = to_text(module)
    assert to_text(parse(text)) == text
    assert to_text(parse(to_bytecode(module))) == text
    with_locations = to_text(module, debug_info=True)
    assert "test_ir.py" in with_locations  # builder ops carry the Python line that built them
    assert to_text(parse(with_locations), debug_info=True) == with_locations


def test_builder_rejects_unknown_ops_and_attributes():
    b = AgentBuilder()
    with b.graph("g") as g:
        with pytest.raises(IRError, match="did you mean 'llm.call'"):
            g.op("llm.cal")
        q = g.op("input.query")
        with pytest.raises(IRError, match="no attribute 'modle'.*model"):
            g.op("llm.call", q, modle="x")


def test_saved_bytecode_file_loads(tmp_path):
    from hetagent.ir import save

    module = load(EXAMPLES / "voice_agent.mlir")
    save(module, tmp_path / "voice.mlirbc")
    assert (tmp_path / "voice.mlirbc").read_bytes()[:4] == b"ML\xefR"
    assert to_text(load(tmp_path / "voice.mlirbc")) == to_text(module)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_examples_verify_and_decompose(path):
    module = verify(load(path))
    high = _count_ops(module)
    decompose(module)
    low = _count_ops(module)
    for op in ("llm.call", "tool.invoke", "memory.load"):
        assert low.get(op, 0) == 0
    assert low.get("llm.prefill", 0) == low.get("llm.decode", 0) == low.get("kv.transfer", 0) == high.get("llm.call", 0)
    assert low.get("tool.lookup", 0) == low.get("tool.compute", 0) == high.get("tool.invoke", 0)
    assert low.get("memory.embed", 0) == low.get("memory.search", 0) == high.get("memory.load", 0)
    assert high.get("llm.call", 0) >= 1


def test_voice_agent_has_the_papers_shape():
    counts = _count_ops(load(EXAMPLES / "voice_agent.mlir"))
    for op in ("input.audio", "audio.stt", "control.loop", "llm.call", "tool.invoke", "audio.tts"):
        assert counts.get(op, 0) >= 1, op


def test_decompose_carries_the_workload_descriptor():
    module = decompose(build_voice())
    text = to_text(module)
    prefill = re.search(r'"llm.prefill"\(%arg0\) \{([^}]*)\}', text).group(1)
    assert 'model = "llama-3-8b"' in prefill and "input_tokens = 512" in prefill and 'name = "plan.prefill"' in prefill
    assert "output_tokens" not in prefill  # prefill does not accept it
    decode = re.search(r'"llm.decode"\([^)]*\) \{([^}]*)\}', text).group(1)
    assert "output_tokens = 64" in decode and 'name = "plan.decode"' in decode
    assert '"tool.compute"' in text and "latency_ms = 3.000000e+02" in text
    # The granular ops sit inside the loop body, where the llm.call was.
    loop_body = text[text.index('"control.loop"') : text.index("control.yield")]
    assert "llm.prefill" in loop_body and "tool.lookup" in loop_body


def test_decompose_drops_placement_and_is_idempotent():
    text = (EXAMPLES / "rag_qa.mlir").read_text().replace(
        'name = "answer"', 'name = "answer", placement = {device = "h100-sxm", backend = "cuda"}'
    )
    module = decompose(parse(text))
    assert "placement" not in to_text(module)
    once = to_text(module)
    assert to_text(decompose(module)) == once


def test_decomposed_check_rejects_high_level_ops():
    module = load(EXAMPLES / "rag_qa.mlir")
    messages = [d.message for d in check(module, decomposed=True)]
    assert any("run decompose" in m and "llm.prefill" in m for m in messages)


# ----------------------------------------------------------------------------------------- bad input

GRAPH = '"agent.graph"() ({{\n  %q = "input.query"() : () -> !agent.text\n{body}\n}}) {{sym_name = "g"}} : () -> ()'


@pytest.mark.parametrize(
    "body, expected",
    [
        ('  %a = "llm.cal"(%q) {model = "m"} : (!agent.text) -> !agent.text\n  "agent.return"(%a) : (!agent.text) -> ()',
         "'llm.cal' op is unknown; did you mean 'llm.call'?"),
        ('  %a = "foo.bar"(%q) : (!agent.text) -> !agent.text\n  "agent.return"(%a) : (!agent.text) -> ()',
         "'foo.bar' op is unknown"),
        ('  %a = "llm.call"(%q) {model = "m", temprature = 1.0} : (!agent.text) -> !agent.text\n  "agent.return"(%a) : (!agent.text) -> ()',
         "unknown attribute 'temprature'"),
        ('  %a = "llm.call"(%q) : (!agent.text) -> !agent.text\n  "agent.return"(%a) : (!agent.text) -> ()',
         "missing required attribute 'model'"),
        ('  %a = "llm.call"(%q) {model = 7 : i64} : (!agent.text) -> !agent.text\n  "agent.return"(%a) : (!agent.text) -> ()',
         "attribute 'model' must be a string"),
        ('  %a = "llm.call"(%q) {model = "m", dtype = "bf17"} : (!agent.text) -> !agent.text\n  "agent.return"(%a) : (!agent.text) -> ()',
         'attribute \'dtype\' is "bf17"; valid dtypes'),
        ('  %a = "llm.call"(%q) {model = "m", output_tokens = {std = 3.0}} : (!agent.text) -> !agent.text\n  "agent.return"(%a) : (!agent.text) -> ()',
         "needs a numeric 'mean'"),
        ('  %a = "audio.tts"(%q) {model = "t"} : (!agent.text) -> !agent.audio\n  %b = "audio.stt"(%q) {model = "w"} : (!agent.text) -> !agent.text\n  "agent.return"(%a) : (!agent.audio) -> ()',
         "operand #0 ('audio') has type !agent.text; expected !agent.audio"),
        ('  %a = "llm.call"() {model = "m"} : () -> !agent.text\n  "agent.return"(%a) : (!agent.text) -> ()',
         "takes at least 1 operand(s)"),
        ('  %a = "llm.call"(%q, %b) {model = "m"} : (!agent.text, !agent.json) -> !agent.text\n'
         '  %b = "tool.invoke"(%a) {tool = "s"} : (!agent.text) -> !agent.json\n  "agent.return"(%a) : (!agent.text) -> ()',
         "dependency cycle: 'llm.call'"),
        ('  %c = "control.loop"(%q) ({\n  ^bb0(%x: !agent.text):\n    "control.yield"(%x) : (!agent.text) -> ()\n'
         '  }) {expected_trips = 2.0} : (!agent.text) -> !agent.text\n  "agent.return"(%c) : (!agent.text) -> ()',
         "missing required attribute 'max_trips'"),
        ('  %c = "control.loop"(%q) ({\n  ^bb0(%x: !agent.text):\n    "control.yield"(%x) : (!agent.text) -> ()\n'
         '  }) {max_trips = 2 : i64, expected_trips = 3.0} : (!agent.text) -> !agent.text\n  "agent.return"(%c) : (!agent.text) -> ()',
         "expected_trips = 3 exceeds max_trips = 2"),
        ('  %c = "control.loop"(%q) ({\n  ^bb0(%x: !agent.text):\n    %j = "data.transform"(%x) {fn = "f"} : (!agent.text) -> !agent.json\n'
         '    "control.yield"(%j) : (!agent.json) -> ()\n  }) {max_trips = 2 : i64, expected_trips = 1.0} : (!agent.text) -> !agent.text\n'
         '  "agent.return"(%c) : (!agent.text) -> ()',
         "region 'body' yields (!agent.json); expected (!agent.text)"),
        ('  "agent.return"(%q) : (!agent.text) -> ()\n  %a = "data.transform"(%q) {fn = "f"} : (!agent.text) -> !agent.text',
         "must end with agent.return"),
        ('  %a = "agent.call"(%q) {callee = @nosuch} : (!agent.text) -> !agent.text\n  "agent.return"(%a) : (!agent.text) -> ()',
         "calls '@nosuch', which is no agent.graph"),
        ('  %a = "llm.call"(%q) {model = "m", placement = {device = "h100-sxm"}} : (!agent.text) -> !agent.text\n  "agent.return"(%a) : (!agent.text) -> ()',
         "missing field 'backend'"),
    ],
    ids=[
        "unknown-op", "foreign-op", "unknown-attr", "missing-attr", "attr-type", "dtype", "token-dist", "operand-type",
        "operand-count", "cycle", "unbounded-loop", "trips", "yield-type", "terminator", "callee", "placement",
    ],
)
def test_verifier_explains_bad_input(body, expected):
    with pytest.raises(IRError) as info:
        verify(parse(GRAPH.format(body=body)))
    message = str(info.value)
    assert expected in message
    assert re.search(r"-:\d+:\d+: error: '", message), message  # every problem carries file:line:col and the op


def test_malformed_mlir_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.mlir"
    path.write_text('"agent.graph"() ({\n  %a = "llm.call"(%q {model = "m"} : (!agent.text) -> !agent.text\n}) : () -> ()\n')
    with pytest.raises(IRError, match=r"broken.mlir:2:\d+: error: expected"):
        load(path)


def test_agent_ops_outside_a_graph_and_empty_modules_are_rejected():
    messages = str(pytest.raises(IRError, verify, parse('"llm.call"() {model = "m"} : () -> !agent.text')).value)
    assert "must be inside an agent.graph" in messages and "contains no agent.graph" in messages


def test_sub_agent_calls_check_signatures():
    text = """
"agent.graph"() ({
^bb0(%t: !agent.text):
  %s = "llm.call"(%t) {model = "m"} : (!agent.text) -> !agent.text
  "agent.return"(%s) : (!agent.text) -> ()
}) {sym_name = "summarise"} : () -> ()
"agent.graph"() ({
  %q = "input.query"() : () -> !agent.text
  %a = "agent.call"(%q) {callee = @summarise} : (!agent.text) -> !agent.text
  %b = "agent.call"(%a) {callee = @summarise} : (!agent.text) -> !agent.json
  "agent.return"(%a) : (!agent.text) -> ()
}) {sym_name = "main"} : () -> ()
"""
    problems = [d.message for d in check(parse(text))]
    assert problems == ["expects results (!agent.json) but '@summarise' returns (!agent.text)"]


def _count_ops(module):
    from iree.compiler import ir

    counts = {}

    def visit(op):
        counts[op.operation.name] = counts.get(op.operation.name, 0) + 1
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return counts


def test_decompose_puts_ops_in_dataflow_order():
    """A graph region may be written in any order; after decompose, producers come before consumers."""
    text = """
"agent.graph"() ({
  %s = "audio.tts"(%a) {model = "t"} : (!agent.text) -> !agent.audio
  %a = "llm.call"(%d, %q) {model = "m", name = "answer"} : (!agent.docs, !agent.text) -> !agent.text
  %d = "memory.load"(%q) {store = "s", embed_model = "e"} : (!agent.text) -> !agent.docs
  %q = "input.query"() : () -> !agent.text
  "agent.return"(%s) : (!agent.audio) -> ()
}) {sym_name = "backwards"} : () -> ()
"""
    module = decompose(parse(text))
    names = [op.operation.name for op in module.body.operations[0].regions[0].blocks[0].operations]
    assert names == ["input.query", "memory.embed", "memory.search", "llm.prefill", "kv.transfer", "llm.decode",
                     "audio.tts", "agent.return"]
