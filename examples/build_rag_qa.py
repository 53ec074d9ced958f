"""The retrieval-augmented QA agent of rag_qa.mlir, written with the Python builder.

    python examples/build_rag_qa.py > /tmp/rag.mlir && hetagent ir verify /tmp/rag.mlir
"""

from hetagent.ir import AgentBuilder, to_text, verify


def build():
    b = AgentBuilder()
    with b.graph("rag_qa", sla_ms=2000.0, description="Retrieval-augmented QA over a document store") as g:
        query = g.op("input.query", tokens=48)
        docs = g.op("memory.load", query, store="handbook", embed_model="all-minilm-l6-v2", top_k=4, name="retrieve")
        answer = g.op(
            "llm.call", query, docs,
            model="llama-3-8b", dtype="bf16", input_tokens=1536, output_tokens=256, name="answer",
        )
        safe = g.op("data.transform", answer, fn="pii_redact", name="redact", result_types=["!agent.text"])
        g.ret(safe)
    return verify(b.module)


if __name__ == "__main__":
    print(to_text(build()))
