"""A supervisor routing between two worker agents in LangGraph: the supervisor's model names the next worker
(or FINISH); each worker answers and hands back to the supervisor.

    hetagent import langgraph examples/langgraph/supervisor.py:graph -o supervisor.mlir
    hetagent plan examples/problems/voice_agent.toml --agent examples/langgraph/supervisor.py:graph
"""

import sys
from pathlib import Path
from typing import Literal

from langgraph.graph import END, START, MessagesState, StateGraph

sys.path.insert(0, str(Path(__file__).parent))
from standins import StandinChatModel  # noqa: E402

supervisor_model = StandinChatModel(model_name="llama-3-8b", max_tokens=8)
researcher_model = StandinChatModel(model_name="llama-3-70b", max_tokens=64)
coder_model = StandinChatModel(model_name="llama-3-8b", max_tokens=64)


def supervisor(state: MessagesState):
    return {"messages": [supervisor_model.invoke(state["messages"])]}


def route(state: MessagesState) -> Literal["researcher", "coder", "__end__"]:
    said = state["messages"][-1].content.lower()
    return "researcher" if "research" in said else "coder" if "code" in said else END


def researcher(state: MessagesState):
    return {"messages": [researcher_model.invoke(state["messages"])]}


def coder(state: MessagesState):
    return {"messages": [coder_model.invoke(state["messages"])]}


builder = StateGraph(MessagesState)
# short prompts keep the stand-ins' compiled kernels small (a 64-token prompt, a 128-token cache)
builder.add_node("supervisor", supervisor, metadata={"hetagent": {"input_tokens": 64, "expected_trips": 2.0}})
builder.add_node("researcher", researcher, metadata={"hetagent": {"input_tokens": 64}})
builder.add_node("coder", coder, metadata={"hetagent": {"input_tokens": 64}})
builder.add_edge(START, "supervisor")
builder.add_conditional_edges("supervisor", route)
builder.add_edge("researcher", "supervisor")
builder.add_edge("coder", "supervisor")
graph = builder.compile().with_config(recursion_limit=12)
