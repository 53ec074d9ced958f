"""The retrieval-augmented QA agent of ../rag_qa.mlir, written with the Python front-end.

    hetagent run examples/python/rag_qa.py:rag_qa
"""

from hetagent.agent import Query, agent, llm, memory, transform


@agent(sla_ms=2000.0, description="Retrieval-augmented QA over a document store")
def rag_qa(query=Query(tokens=48)):
    docs = memory.search("handbook", query, embed_model="all-minilm-l6-v2", top_k=4, name="retrieve")
    answer = llm(query, docs, model="llama-3-8b", dtype="bf16", input_tokens=1536, output_tokens=256, name="answer")
    return transform("pii_redact", answer, name="redact")
