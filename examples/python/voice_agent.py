"""The paper's voice agent (../voice_agent.mlir), written with the Python front-end: audio in -> speech to text
-> LLM <-> web search in a bounded loop -> final answer -> text to speech.

    hetagent run examples/python/voice_agent.py:voice_agent
"""

from hetagent.agent import Audio, agent, llm, loop, stt, tool, transform, tts


@agent(sla_ms=3000.0, sla_percentile=99.0, description="Voice assistant with web search (Asgar, Nguyen, Katti 2025)")
def voice_agent(audio=Audio(sample_rate=16000, duration_s=8.0)):
    question = stt(audio, model="whisper-large-v3", dtype="fp16", output_tokens=48, name="transcribe")

    # Reason-and-act: the LLM decides whether to search; results are folded into the context.
    with loop(question, max_trips=3, expected_trips=1.6, until="no_tool_call") as trip:
        thought = llm(trip.carried, model="llama-3-8b", dtype="bf16", input_tokens=512, output_tokens=64, name="plan")
        hits = tool("web_search", thought, latency_ms=350.0, timeout_ms=2000.0, name="search")
        trip.yield_(transform("concat", trip.carried, thought, hits))

    answer = llm(trip.result, model="llama-3-8b", dtype="bf16",
                 input_tokens={"mean": 1024.0, "std": 256.0, "dist": "lognormal"}, output_tokens=256, name="answer")
    return tts(answer, model="kokoro-82m", name="speak")
