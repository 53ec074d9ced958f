"""The fixture agent tiers d and e run: a query and one LLM call (prefill, KV transfer, decode) on tiny-llama,
and the answers the oracle expects of it."""

from __future__ import annotations

from hetagent.plan import Placement, Plan

from hetagent_conformance.kernels import CAPACITY, MODEL, PROMPT
from hetagent_conformance.oracle import Decoder

OUTPUT_TOKENS = 6
AGENT = f"""\"agent.graph\"() ({{
  %q = \"input.query\"() {{tokens = 16 : i64}} : () -> !agent.text
  %a = \"llm.call\"(%q) {{model = \"{MODEL}\", dtype = \"fp32\", input_tokens = {PROMPT} : i64,
      output_tokens = {OUTPUT_TOKENS} : i64, name = \"answer\"}} : (!agent.text) -> !agent.text
  \"agent.return\"(%a) : (!agent.text) -> ()
}}) {{sym_name = \"conformance_chat\", sla_ms = 600000.0 : f64}} : () -> ()
"""


def everything_on(backend) -> Plan:
    """Every op of the agent on the backend's device (skips without one)."""
    device = backend.need_device()
    return Plan(default=Placement(device, backend.name), source=f"conformance: everything on {device}")


def run(backend, registry, agent, plan, *, cpu_partitions=1, requests=2):
    """Prepare (compile, cached) and run the agent on LocalEngine; returns (result, prepared, prompts)."""
    from hetagent.runtime.engine import EngineOptions, Request
    from hetagent.runtime.run import new_run_id, prepare, run_prepared

    prepared = prepare(agent, registry=registry, plan=plan, cpu_partitions=cpu_partitions, cache=backend.cache)
    options = EngineOptions(run_id=new_run_id(), cache_dir=str(backend.cache.root))
    prompts = [f"Conformance request {i}: answer me." for i in range(requests)]
    result = run_prepared(prepared, [Request(i, {"query": p}, 0.0, seed=i) for i, p in enumerate(prompts)],
                          registry=registry, options=options)
    return result, prepared, prompts


def expected_answers(backend, prompts: list[str]) -> list[str]:
    """The oracle's greedy answers (float64, the same random weights the workers load)."""
    from hetagent.models.catalog import card
    from hetagent.models.weight_names import weight_shapes
    from hetagent.backend import text
    from hetagent.backend.weights import load_weights, prepare_weights

    weights = load_weights(MODEL, prepare_weights(MODEL, "fp32", model_dir=None, cache_dir=backend.cache.root))
    oracle = Decoder(MODEL, {n: weights[n] for n in weight_shapes(card(MODEL))})
    return [text.decode(oracle.generate(text.encode(p), OUTPUT_TOKENS, CAPACITY)) for p in prompts]
