"""The research agent of the paper's Figure 7 (../research_agent.mlir), written with the Python front-end.

    hetagent plan examples/problems/research_agent.toml --agent examples/python/research_agent.py:research_agent
"""

from hetagent.agent import JSON, Query, agent, llm, memory, tool

NOTES, EMBED = "research_notes", "all-minilm-l6-v2"
BIG = dict(model="llama-3-70b", dtype="fp8")


@agent(sla_ms=60000.0, description="Figure 7 of Asgar, Nguyen, Katti 2025")
def research_agent(query=Query(tokens=96)):
    notes = memory.search(NOTES, query, embed_model=EMBED, top_k=8, name="recall")
    plan = llm(query, notes, **BIG, input_tokens=4096, output_tokens=512, name="plan")
    found = tool("web_search", plan, latency_ms=400.0, timeout_ms=3000.0, name="search")
    figures = tool("calculator", plan, found, returns=JSON, latency_ms=2.0, name="calculate")
    report = llm(query, plan, found, figures, **BIG, input_tokens=6144, output_tokens=1024, name="report")
    memory.store(NOTES, report, embed_model=EMBED, name="remember")
    return report
