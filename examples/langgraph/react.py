"""A ReAct agent in LangGraph: a chat model that may call two tools (calculator, web search) in a loop.

    hetagent import langgraph examples/langgraph/react.py:graph -o react.mlir
    hetagent run examples/langgraph/react.py:graph --prompt "What is 12 * 7?" --requests 1
    python examples/langgraph/react.py "What is 12 * 7?"      # LangGraph's own run, same stand-ins
"""

import sys
from pathlib import Path

from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

sys.path.insert(0, str(Path(__file__).parent))
from standins import StandinChatModel, calculator, web_search  # noqa: E402

tools = [calculator, web_search]
model = StandinChatModel(model_name="llama-3-8b", max_tokens=24).bind_tools(tools)


def agent(state: MessagesState):
    return {"messages": [model.invoke(state["messages"])]}


builder = StateGraph(MessagesState)
# short prompts keep the stand-in's compiled kernels small (a 64-token prompt, a 128-token cache)
builder.add_node("agent", agent, metadata={"hetagent": {"input_tokens": 64, "expected_trips": 1.5}})
builder.add_node("tools", ToolNode(tools), metadata={"hetagent": {"latency_ms": 50.0}})
builder.add_edge(START, "agent")
builder.add_conditional_edges("agent", tools_condition)
builder.add_edge("tools", "agent")
graph = builder.compile().with_config(recursion_limit=9)


if __name__ == "__main__":
    final = graph.invoke({"messages": [("user", sys.argv[1] if len(sys.argv) > 1 else "What is 12 * 7?")]})
    print(final["messages"][-1].content)
