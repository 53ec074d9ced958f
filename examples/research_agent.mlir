// The research agent of the paper's Figure 7: query -> memory load -> LLM -> search tool -> calculator
// tool -> memory store, returning the LLM's final report.
"agent.graph"() ({
  %query = "input.query"() {tokens = 96 : i64} : () -> !agent.text
  %notes = "memory.load"(%query) {store = "research_notes", embed_model = "all-minilm-l6-v2", top_k = 8 : i64,
                                  name = "recall"} : (!agent.text) -> !agent.docs
  %plan = "llm.call"(%query, %notes) {model = "llama-3-70b", dtype = "fp8", input_tokens = 4096 : i64,
                                      output_tokens = 512 : i64, name = "plan"} : (!agent.text, !agent.docs) -> !agent.text
  %found = "tool.invoke"(%plan) {tool = "web_search", latency_ms = 400.0 : f64, timeout_ms = 3000.0 : f64, name = "search"}
      : (!agent.text) -> !agent.json
  %figures = "tool.invoke"(%plan, %found) {tool = "calculator", latency_ms = 2.0 : f64, name = "calculate"}
      : (!agent.text, !agent.json) -> !agent.json
  %report = "llm.call"(%query, %plan, %found, %figures) {model = "llama-3-70b", dtype = "fp8", input_tokens = 6144 : i64,
                                                        output_tokens = 1024 : i64, name = "report"}
      : (!agent.text, !agent.text, !agent.json, !agent.json) -> !agent.text
  "memory.store"(%report) {store = "research_notes", embed_model = "all-minilm-l6-v2", name = "remember"} : (!agent.text) -> ()
  "agent.return"(%report) : (!agent.text) -> ()
}) {sym_name = "research_agent", sla_ms = 60000.0 : f64, description = "Figure 7 of Asgar, Nguyen, Katti 2025"} : () -> ()
