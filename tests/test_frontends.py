"""Front-ends (spec/frontends.md): Python agents traced into the IR, LangGraph graphs imported, and the one loader
every command uses for its AGENT argument."""

import json
import textwrap

import pytest
from conftest import EXAMPLES

from hetagent.errors import HetagentError, IRError

LANGGRAPH = EXAMPLES / "langgraph"


def _write(tmp_path, source: str, name: str = "user_agent.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def _line_of(path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# ------------------------------------------------------------------------------------------------ Python front-end


@pytest.mark.parametrize("name", ["rag_qa", "research_agent", "voice_agent"])
def test_python_examples_trace_to_the_mlir_examples(name):
    from hetagent.agent import load_agent
    from hetagent.ir import load, to_text, verify

    traced = verify(load_agent(f"{EXAMPLES}/python/{name}.py:{name}"))
    assert to_text(traced) == to_text(load(EXAMPLES / f"{name}.mlir"))


def test_traced_ops_point_at_the_users_lines(tmp_path, cli):
    from hetagent.agent import load_agent
    from hetagent.ir import verify
    from hetagent.ir.context import location_of

    path = _write(tmp_path, """
        from hetagent.agent import Query, agent, llm, stt

        @agent(sla_ms=100.0)
        def wrong(question=Query(tokens=8)):
            heard = stt(question, model="whisper-large-v3")  # text where audio belongs
            return llm(heard, model="llama-3-8b")
    """)
    module = load_agent(f"{path}:wrong")
    graph = module.body.operations[0]
    stt_op = graph.regions[0].blocks[0].operations[1]
    assert location_of(stt_op) == f"{path}:{_line_of(path, 'heard = stt')}:1"
    with pytest.raises(IRError) as caught:
        verify(module, what=str(path))
    assert f"{path}:{_line_of(path, 'heard = stt')}" in str(caught.value) and "audio.stt" in str(caught.value)
    code, out, err = cli("ir", "verify", f"{path}:wrong")
    assert code == 2 and f"{path}:{_line_of(path, 'heard = stt')}" in err and "Traceback" not in err


@pytest.mark.parametrize("body, needle, message", [
    ('return llm("just text", model="llama-3-8b")', "just text", "not a traced value"),
    ('return tool("web_search", question, top_k="four")', "top_k", "'tool.invoke' has no attribute 'top_k'"),
    ("with loop(question, max_trips=2, expected_trips=1.0) as trip:\n    llm(trip.carried, model='m')\n"
     "return trip.result", "with loop", "does not end with yield_"),
    ("return 1 / 0", "1 / 0", "ZeroDivisionError"),
])
def test_tracing_mistakes_name_the_users_line(tmp_path, body, needle, message):
    from hetagent.agent import load_agent

    path = _write(tmp_path, "from hetagent.agent import Query, agent, llm, loop, tool\n\n\n"
                  "@agent\ndef broken(question=Query()):\n" + textwrap.indent(body, "    ") + "\n")
    with pytest.raises(HetagentError) as caught:
        load_agent(f"{path}:broken")
    assert f"{path}:{_line_of(path, needle)}" in str(caught.value) and message in str(caught.value)


def test_operations_outside_an_agent_are_an_error():
    from hetagent.agent import llm

    with pytest.raises(HetagentError, match="outside a traced agent"):
        llm(model="llama-3-8b")


def test_branch_and_plain_functions_trace(tmp_path):
    from hetagent.agent import load_agent
    from hetagent.ir import to_text, verify

    path = _write(tmp_path, """
        from hetagent.agent import branch, llm, transform

        def guarded(question):
            answer = llm(question, model="llama-3-8b", output_tokens=16)
            with branch(answer, predicate="is_safe", p_then=0.9) as choice:
                with choice.then:
                    choice.yield_(answer)
                with choice.otherwise:
                    choice.yield_(transform("pii_redact", answer))
            return choice.result
    """)
    text = to_text(verify(load_agent(f"{path}:guarded")))
    assert '"control.branch"' in text and 'predicate = "is_safe"' in text and 'sym_name = "guarded"' in text


@pytest.mark.parametrize("agent, message", [
    ("no/such/file.py:agent", "no such file 'no/such/file.py'"),
    (f"{EXAMPLES}/python/rag_qa.py:nothing", "has no 'nothing'; agents and graphs there: rag_qa"),
    ("no_such_module_xyz:agent", "no module named 'no_such_module_xyz'"),
    (f"{EXAMPLES}/python/voice_agent.py:EMBED", "voice_agent.py has no 'EMBED'"),
    (f"{EXAMPLES}/python/research_agent.py:EMBED", "EMBED is a str; expected an @agent function"),
])
def test_bad_agent_arguments_exit_2(cli, agent, message):
    code, out, err = cli("ir", "verify", agent)
    assert code == 2 and message in err and "Traceback" not in err


def test_module_form_and_commands_take_python_agents(cli, tmp_path, monkeypatch, cache_dir):
    _write(tmp_path, """
        from hetagent.agent import Query, agent, llm

        @agent(sla_ms=60000.0)
        def chat(question=Query(tokens=16)):
            return llm(question, model="tiny-llama", input_tokens=64, output_tokens=24, name="answer")
    """, "my_agents.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = cli("ir", "verify", "my_agents:chat", "--json")
    assert code == 0, err
    assert json.loads(out)["graphs"] == ["chat"]
    code, out, err = cli("--backends", "cpu", "compile", "my_agents.py:chat", "-o", str(tmp_path / "out"), "--json")
    assert code == 0, err
    assert {o["name"] for o in json.loads(out)["ops"]} >= {"answer.prefill", "answer.decode"}
    code, out, err = cli("--backends", "cpu", "run", "my_agents:chat", "--requests", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["agent"] == "chat" and json.loads(out)["summary"]["ok"] == 1


def test_problem_files_and_plan_take_python_and_langgraph_agents(cli, tmp_path):
    problem = tmp_path / "problem.toml"
    problem.write_text(f'name = "py"\nagent = "{EXAMPLES}/python/rag_qa.py:rag_qa"\n'
                       f'fleet = "{EXAMPLES}/fleets/paper.toml"\n[workload]\nrate_rps = 1.0\n[sla]\ne2e_ms = 20000\n')
    from hetagent.planner.problem import load_problem

    assert load_problem(problem).agent == f"{EXAMPLES}/python/rag_qa.py:rag_qa"
    for agent, steps in ((None, {"answer.prefill", "retrieve.search"}),
                         (f"{LANGGRAPH}/react.py:graph", {"agent.decode", "agent.route", "tools.calculator.compute",
                                                          "tools.web_search.compute"}),
                         (f"{LANGGRAPH}/rag.py:graph", {"retrieve.search", "generate.prefill"}),
                         (f"{LANGGRAPH}/supervisor.py:graph", {"supervisor.decode", "researcher.prefill", "coder.decode"})):
        plan = tmp_path / "plan.json"
        code, out, err = cli("plan", str(problem), *(["--agent", agent] if agent else []), "--no-baselines",
                             "--out", str(plan))
        assert code == 0, err
        assert steps <= set(json.loads(plan.read_text())["placements"])
    code, out, err = cli("plan", str(problem), "--agent", "nowhere.py:x")
    assert code == 2 and "no such file 'nowhere.py'" in err


# ------------------------------------------------------------------------------------------------ LangGraph


def _ops(module) -> list:
    found = []

    def visit(op):
        found.append(op.operation)
        from iree.compiler import ir

        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found


def _attrs(op) -> dict:
    from hetagent.runtime.program import python_value

    return {op.attributes[i].name: python_value(op.attributes[i].attr) for i in range(len(op.attributes))}


def test_langgraph_graphs_import_and_verify():
    from hetagent.agent import load_agent
    from hetagent.ir import verify

    notes = []
    react = verify(load_agent(f"{LANGGRAPH}/react.py:graph", on_note=notes.append))
    ops = {(op.name, _attrs(op).get("name")): _attrs(op) for op in _ops(react)}
    assert ops[("llm.call", "agent")] == {"model": "llama-3-8b", "input_tokens": 64, "output_tokens": 24,
                                          "name": "agent"}
    assert ops[("tool.invoke", "tools.calculator")]["tool"] == "calculator"
    assert ops[("tool.invoke", "tools.web_search")]["latency_ms"] == 50.0
    loop = next(a for (name, _), a in ops.items() if name == "control.loop")
    assert loop["max_trips"] == 4 and loop["expected_trips"] == 1.5  # recursion limit 9, two steps a trip
    assert any("node 'tools' -> tool.invoke of calculator, web_search" in n for n in notes)
    assert any("cycle agent -> tools -> agent -> control.loop" in n for n in notes)

    rag = verify(load_agent(f"{LANGGRAPH}/rag.py:graph", on_note=notes.append))
    load = next(op for op in _ops(rag) if op.name == "memory.load")
    assert _attrs(load) == {"store": "handbook", "embed_model": "all-minilm-l6-v2", "top_k": 2, "name": "retrieve"}
    assert "assumed embed_model = 'all-minilm-l6-v2' for node 'retrieve'" in " ".join(notes)

    supervisor = verify(load_agent(f"{LANGGRAPH}/supervisor.py:graph"))
    names = [op.name for op in _ops(supervisor)]
    assert names.count("llm.call") == 3 and names.count("control.branch") == 2 and names.count("control.loop") == 1


def test_import_command_writes_a_module_and_says_how(cli, tmp_path):
    out_file = tmp_path / "react.mlir"
    code, out, err = cli("import", "langgraph", f"{LANGGRAPH}/react.py:graph", "-o", str(out_file))
    assert code == 0, err
    assert "llm.call llama-3-8b" in out and "tools_condition" in out and f"wrote {out_file}" in out
    code, out, err = cli("ir", "verify", str(out_file), "--json")
    assert code == 0 and json.loads(out)["graphs"] == ["react"]
    code, out, err = cli("import", "langgraph", f"{LANGGRAPH}/rag.py:graph", "--json")
    report = json.loads(out)
    assert [n["kind"] for n in report["nodes"]] == ["memory", "llm"] and '"memory.load"' in report["module"]


def test_langgraph_routing_functions_run_as_hetagent_predicates():
    from hetagent.agent.langgraph import reference
    from hetagent.backend.transforms import predicate, transform

    route = transform(f"langgraph:{LANGGRAPH}/react.py:graph#route:agent")
    asks = 'let me check <tool_call>{"tool": "calculator", "arguments": {"expression": "12*7"}}</tool_call>'
    assert route(asks) == "tools" and route("84") == "__end__"
    assert predicate("langgraph:calls=calculator")((asks,), {}) and not predicate("langgraph:calls=web_search")((asks,), {})
    assert predicate("langgraph:route=tools")(("tools",), {}) and reference("langgraph:route=__end__")(("x", "__end__"), {})
    with pytest.raises(HetagentError, match="unknown predicate"):
        predicate("no_such_predicate")


@pytest.mark.parametrize("build, message", [
    ("b.add_node('a', a)\nb.add_node('b', a)\nb.add_edge(START, 'a')\nb.add_edge('a', 'b')\nb.add_edge('a', END)\n"
     "b.add_edge('b', END)", "node 'a' has edges to"),
    ("b.add_node('a', a)\nb.add_edge(START, 'a')\nb.add_conditional_edges('a', lambda s: END)",
     "does not declare its destinations"),
    ("b.add_node('a', a)\nb.add_node('b', a)\nb.add_edge(START, 'a')\nb.add_edge('a', 'b')\n"
     "b.add_conditional_edges('b', pick, {'a': 'a', END: END})", "enters at node 'a', which has no conditional edge"),
    ("b.add_node('a', go, destinations=('a', END))\nb.add_edge(START, 'a')", "node 'a' routes with Command"),
])
def test_unsupported_langgraph_constructs_name_the_node(tmp_path, cli, build, message):
    path = _write(tmp_path, "from typing import Literal\nfrom langgraph.graph import END, START, MessagesState, "
                  "StateGraph\nfrom langgraph.types import Command\n\n"
                  "def a(state):\n    return {'messages': []}\n\n"
                  "def pick(state):\n    return END\n\n"
                  "def go(state) -> Command[Literal['a', '__end__']]:\n    return Command(goto=END)\n\n"
                  "b = StateGraph(MessagesState)\n" + build + "\ngraph = b.compile()\n", "odd_graph.py")
    code, out, err = cli("import", "langgraph", f"{path}:graph")
    assert code == 2 and message in err and "Traceback" not in err


def _run(agent: str, prompts: list[str], registry, cache_dir, **options):
    from hetagent.compiler.cache import CompileCache
    from hetagent.runtime.engine import EngineOptions, Request
    from hetagent.runtime.run import new_run_id, prepare, run_prepared

    cache = CompileCache()
    prepared = prepare(agent, registry=registry, cache=cache, model_overrides=options.pop("model_map", {}))
    requests = [Request(i, {"query": p}, 0.0) for i, p in enumerate(prompts)]
    result = run_prepared(prepared, requests, registry=registry,
                          options=EngineOptions(run_id=new_run_id(), cache_dir=str(cache.root),
                                                corpus=str(EXAMPLES / "corpus"), **options))
    assert [r.status for r in result.records] == ["ok"] * len(prompts), [r.error for r in result.records]
    return [r.outputs[0] for r in result.records]


def test_react_graph_answers_as_langgraph_does(registry, cache_dir):
    from hetagent.agent.source import load_object

    prompts = ["hello", "Where does water boil on Mount Everest?"]
    answers = _run(f"{LANGGRAPH}/react.py:graph", prompts, registry, cache_dir)
    graph = load_object(f"{LANGGRAPH}/react.py:graph")
    expected = [graph.invoke({"messages": [("user", p)]})["messages"][-1].content for p in prompts]
    assert answers == expected and answers[0] != answers[1]


def test_rag_and_supervisor_graphs_run(registry, cache_dir, cli, tmp_path):
    answers = _run(f"{LANGGRAPH}/supervisor.py:graph", ["route this"], registry, cache_dir)
    assert isinstance(answers[0], str) and answers[0]
    index = tmp_path / "index"
    code, out, err = cli("--backends", "cpu", "index", str(EXAMPLES / "corpus"), "-o", str(index), "--json")
    assert code == 0, err
    answers = _run(f"{LANGGRAPH}/rag.py:graph", ["where does water boil"], registry, cache_dir,
                   model_map={"all-minilm-l6-v2": "tiny-llama"}, stores={"handbook": str(index)})
    assert isinstance(answers[0], str) and answers[0]


SCRIPTED_REACT = f'''
"""ReAct whose agent is plain Python (a scripted stand-in model): it asks the calculator, then answers."""
import json
import re
import sys

from langchain_core.messages import AIMessage
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

sys.path.insert(0, {str(LANGGRAPH)!r})
from standins import calculator, web_search  # noqa: E402

from hetagent.agent.langgraph import tool_calls


def agent(state: MessagesState):
    said = "\\n\\n".join(str(m.content) for m in state["messages"])
    found = re.search(r'"result": (-?[\\d.]+)', said)
    if found:
        text = f"The answer is {{found.group(1)}}."
    else:
        expression = re.search(r"[\\d(][\\d\\s+*/().-]*[\\d)]", said).group(0).strip()
        text = "<tool_call>" + json.dumps({{"tool": "calculator", "arguments": {{"expression": expression}}}}) + "</tool_call>"
    return {{"messages": [AIMessage(content=text, tool_calls=tool_calls(text))]}}


builder = StateGraph(MessagesState)
builder.add_node("agent", agent)
builder.add_node("tools", ToolNode([calculator, web_search]))
builder.add_edge(START, "agent")
builder.add_conditional_edges("agent", tools_condition)
builder.add_edge("tools", "agent")
graph = builder.compile().with_config(recursion_limit=9)
'''


def test_python_nodes_and_tools_run_as_in_langgraph(tmp_path, registry, cache_dir):
    from hetagent.agent import load_agent
    from hetagent.agent.source import load_object

    path = _write(tmp_path, SCRIPTED_REACT, "scripted_react.py")
    notes = []
    load_agent(f"{path}:graph", on_note=notes.append)
    assert any("node 'agent' -> data.transform running the node's Python on CPU" in n for n in notes)
    prompts = ["What is 12 * 7?", "And what is (3 + 4) * 5?"]
    answers = _run(f"{path}:graph", prompts, registry, cache_dir)
    graph = load_object(f"{path}:graph")
    expected = [graph.invoke({"messages": [("user", p)]})["messages"][-1].content for p in prompts]
    assert answers == expected == ["The answer is 84.", "The answer is 35."]
