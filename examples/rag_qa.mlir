// Retrieval-augmented question answering: query -> retrieve from a vector store -> LLM answer,
// with a PII-redacting filter on the way out.
"agent.graph"() ({
  %query = "input.query"() {tokens = 48 : i64} : () -> !agent.text
  %docs = "memory.load"(%query) {store = "handbook", embed_model = "all-minilm-l6-v2", top_k = 4 : i64, name = "retrieve"}
      : (!agent.text) -> !agent.docs
  %answer = "llm.call"(%query, %docs) {model = "llama-3-8b", dtype = "bf16", input_tokens = 1536 : i64,
                                       output_tokens = 256 : i64, name = "answer"} : (!agent.text, !agent.docs) -> !agent.text
  %safe = "data.transform"(%answer) {fn = "pii_redact", name = "redact"} : (!agent.text) -> !agent.text
  "agent.return"(%safe) : (!agent.text) -> ()
}) {sym_name = "rag_qa", sla_ms = 2000.0 : f64, description = "Retrieval-augmented QA over a document store"} : () -> ()
