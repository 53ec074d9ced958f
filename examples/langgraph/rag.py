"""Retrieval-augmented generation in LangGraph: a retriever, then a chat model answering from what it found.

    hetagent import langgraph examples/langgraph/rag.py:graph -o rag.mlir
    hetagent index examples/corpus -o /tmp/handbook --embed-model tiny-llama
    hetagent run examples/langgraph/rag.py:graph --store handbook=/tmp/handbook --model-map all-minilm-l6-v2=tiny-llama
"""

import sys
from pathlib import Path

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph

sys.path.insert(0, str(Path(__file__).parent))
from standins import CorpusRetriever, StandinChatModel  # noqa: E402

retriever = CorpusRetriever(k=2)
model = StandinChatModel(model_name="llama-3-8b", max_tokens=32)


def retrieve(state: MessagesState):
    docs = retriever.invoke(state["messages"][-1].content)
    return {"messages": [HumanMessage("\n".join(d.page_content for d in docs))]}


def generate(state: MessagesState):
    return {"messages": [model.invoke(state["messages"])]}


builder = StateGraph(MessagesState)
builder.add_node("retrieve", retrieve, metadata={"hetagent": {"store": "handbook"}})
builder.add_node("generate", generate, metadata={"hetagent": {"input_tokens": 64}})  # the prompt's tail
builder.add_edge(START, "retrieve")
builder.add_edge("retrieve", "generate")
builder.add_edge("generate", END)
graph = builder.compile()
