// The paper's voice agent: audio in -> speech-to-text -> LLM <-> web-search tool in a bounded loop
// -> final answer -> text-to-speech. Everything but the LLM is expected to land on CPUs.
//   hetagent ir verify examples/voice_agent.mlir
//   hetagent ir decompose examples/voice_agent.mlir
"agent.graph"() ({
  %audio = "input.audio"() {sample_rate = 16000 : i64, duration_s = 8.0 : f64} : () -> !agent.audio
  %question = "audio.stt"(%audio) {model = "whisper-large-v3", dtype = "fp16", output_tokens = 48 : i64, name = "transcribe"}
      : (!agent.audio) -> !agent.text

  // Reason-and-act: the LLM decides whether to search; results are folded into the context.
  // Bounded: at most 3 trips, 1.6 on average (a cycle written any other way does not verify).
  %context = "control.loop"(%question) ({
  ^bb0(%ctx: !agent.text):
    %thought = "llm.call"(%ctx) {model = "llama-3-8b", dtype = "bf16", input_tokens = 512 : i64,
                                 output_tokens = 64 : i64, name = "plan"} : (!agent.text) -> !agent.text
    %hits = "tool.invoke"(%thought) {tool = "web_search", latency_ms = 350.0 : f64, timeout_ms = 2000.0 : f64,
                                     name = "search"} : (!agent.text) -> !agent.json
    %next = "data.transform"(%ctx, %thought, %hits) {fn = "concat"} : (!agent.text, !agent.text, !agent.json) -> !agent.text
    "control.yield"(%next) : (!agent.text) -> ()
  }) {max_trips = 3 : i64, expected_trips = 1.6 : f64, until = "no_tool_call"} : (!agent.text) -> !agent.text

  %answer = "llm.call"(%context) {model = "llama-3-8b", dtype = "bf16",
                                   input_tokens = {mean = 1024.0 : f64, std = 256.0 : f64, dist = "lognormal"},
                                   output_tokens = 256 : i64, name = "answer"} : (!agent.text) -> !agent.text
  %speech = "audio.tts"(%answer) {model = "kokoro-82m", name = "speak"} : (!agent.text) -> !agent.audio
  "agent.return"(%speech) : (!agent.audio) -> ()
}) {sym_name = "voice_agent", sla_ms = 3000.0 : f64, sla_percentile = 99.0 : f64,
    description = "Voice assistant with web search (Asgar, Nguyen, Katti 2025)"} : () -> ()
