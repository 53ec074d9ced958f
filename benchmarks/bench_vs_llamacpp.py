"""hetagent against llama.cpp, the best CPU peer, on the same Hugging Face checkpoint (issue 17, item 6):

    .venv/bin/pip install -e '.[llamacpp]'      # builds llama-cpp-python here (a few minutes)
    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/llamacpp && \\
        tar xzf /tmp/llamacpp/llama_cpp_python-0.3.36.tar.gz -C /tmp/llamacpp
    .venv/bin/python benchmarks/bench_vs_llamacpp.py \\
        --convert /tmp/llamacpp/llama_cpp_python-0.3.36/vendor/llama.cpp/convert_hf_to_gguf.py

The checkpoint: a Llama-architecture model of ~140 M parameters (vocabulary 32000, hidden 768, 12 layers, GQA),
random weights, fp32, written with `transformers`' `save_pretrained`, with a SentencePiece tokenizer trained here
on examples/corpus (`tokenizer.model`, as Llama checkpoints ship it, and the `tokenizer.json` transformers derives).
llama.cpp reads it after its own `convert_hf_to_gguf.py` turns it into an f32 GGUF (the script comes with the
llama-cpp-python source release whose library is installed; nothing is downloaded at run time).

Figures, both engines with the same thread count (every core this process may use), one run:
- **decode**: median seconds per step at batch 1, over a 64-token greedy continuation of a 512-token prompt.
  hetagent: the median gap between tokens of a request through the runtime (a LocalEngine worker running the
  compiled IREE decode); llama.cpp: `Llama.eval` of one token (its logits copied out, as a server does).
- **prefill**: seconds to prefill 512 tokens. hetagent: the prefill op's run time in its worker (median over the
  requests, prefix cache off); llama.cpp: `Llama.eval` of the 512 tokens (one ubatch), median of three.
- the ratio llama.cpp time / hetagent time (> 1: hetagent faster); targets: decode ≥ 1.0, prefill ≥ 0.8.
- a same-model check: the last prompt position's logits, llama.cpp against transformers on the same token ids.

The machine's load average is printed: figures taken while other processes run are not comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hetagent.hardware.machine_load import load_warning

ROOT = Path(__file__).resolve().parent.parent
CORES = len(os.sched_getaffinity(0))
NAME = "bench-llama"
PROMPT_TOKENS, NEW_TOKENS = 512, 64
CONFIG = dict(vocab_size=32000, hidden_size=768, intermediate_size=2560, num_hidden_layers=12, num_attention_heads=12,
              num_key_value_heads=4, max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
              tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
AGENT = f""""agent.graph"() ({{
  %q = "input.query"() : () -> !agent.text
  %a = "llm.call"(%q) {{model = "{NAME}", input_tokens = {PROMPT_TOKENS} : i64, output_tokens = {NEW_TOKENS} : i64,
      name = "answer"}} : (!agent.text) -> !agent.text
  "agent.return"(%a) : (!agent.text) -> ()
}}) {{sym_name = "bench"}} : () -> ()
"""


def corpus_text() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "examples" / "corpus").rglob("*")) if p.is_file())


def build_checkpoint(root: Path) -> Path:
    """The checkpoint directory: fp32 safetensors, config.json, tokenizer.model and tokenizer.json."""
    import sentencepiece
    import torch
    import transformers

    directory = root / NAME
    directory.mkdir(parents=True)
    corpus = root / "corpus.txt"
    corpus.write_text(corpus_text())
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(root / "sp"), vocab_size=2000, model_type="bpe", byte_fallback=True,
        hard_vocab_limit=False, bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2)
    (directory / "tokenizer.model").write_bytes((root / "sp.model").read_bytes())
    # from_pretrained reads tokenizer.model; transformers 5's `LlamaTokenizer(vocab_file=...)` ignores the file and
    # builds an empty vocabulary (every text -> no ids). add_bos_token: the tokenizer.json hetagent reads adds BOS.
    tokenizer = transformers.LlamaTokenizer.from_pretrained(directory, add_bos_token=True)
    if len(tokenizer) != 2000:
        sys.exit(f"the tokenizer built from {directory / 'tokenizer.model'} has {len(tokenizer)} tokens, not 2000")
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**CONFIG)
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(directory)
    return directory


def prompt_ids(tokenize) -> list[int]:
    """The first PROMPT_TOKENS tokens of the corpus (repeated if short), BOS first."""
    ids = tokenize(corpus_text())
    if len(ids) < 2 or ids[0] != CONFIG["bos_token_id"]:  # else the doubling below never ends
        sys.exit(f"the checkpoint's tokenizer turned the corpus into {ids[:8]}: expected BOS then tokens")
    while len(ids) < PROMPT_TOKENS:
        ids = ids + ids
    return ids[:PROMPT_TOKENS]


def convert(directory: Path, script: Path) -> Path:
    out = directory.parent / f"{NAME}-f32.gguf"
    done = subprocess.run([sys.executable, str(script), str(directory), "--outtype", "f32", "--outfile", str(out)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"convert_hf_to_gguf.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return out


def hetagent_figures(root: Path, work: Path, prompt: str) -> dict:
    from hetagent.backend import Registry
    from hetagent.plan import Plan
    from hetagent.compiler.cache import CompileCache
    from hetagent.runtime.engine import EngineOptions, Request
    from hetagent.runtime.run import new_run_id, prepare, run_prepared

    agent = work / "bench.mlir"
    agent.write_text(AGENT)
    registry = Registry.load(["cpu"])
    plan = Plan.from_dict({"placements": {"answer.decode": {"device": "host-cpu", "batch": 1}}}, source="bench")
    cache = CompileCache()
    start = time.perf_counter()
    prepared = prepare(agent, registry=registry, plan=plan, model_dir=root, cache=cache)
    compile_s = time.perf_counter() - start  # exports and IREE compiles of its kernels, unless the cache has them
    # one request at a time (arrivals further apart than a request lasts): a gap is a decode step, nothing else
    requests = [Request(i, {"query": prompt}, 6.0 * i, seed=i) for i in range(3)]
    # the prefix cache off: the same prompt three times would otherwise prefill only its last token after the first
    options = EngineOptions(run_id=new_run_id(), cache_dir=str(cache.root), model_dir=str(root), prefix_cache_mb=0)
    result = run_prepared(prepared, requests, registry=registry, options=options)
    assert [r.status for r in result.records] == ["ok"] * len(requests), [r.error for r in result.records]
    prefill = next(o for o in result.ops if o["kind"] == "llm.prefill")
    return {"decode_step_s": statistics.median(g for r in result.records for g in r.gaps),
            "prefill_s": prefill["run_ms_p50"] / 1000, "prompt_tokens": [r.prompt_tokens for r in result.records],
            "compile_s": compile_s}


def llamacpp_figures(gguf: Path, ids: list[int]) -> dict:
    import llama_cpp
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=1024, n_batch=PROMPT_TOKENS, n_ubatch=PROMPT_TOKENS, n_threads=CORES,
                n_threads_batch=CORES, verbose=False)

    def logits():  # the last evaluated token's: with logits_all off, Llama.eval leaves Llama.scores unwritten
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(llm.n_vocab(),)).copy()

    prefills = []
    for _ in range(3):
        llm.reset()
        start = time.perf_counter()
        llm.eval(ids)
        last = logits()
        prefills.append(time.perf_counter() - start)
    steps, token = [], int(np.argmax(last))
    for _ in range(NEW_TOKENS):
        start = time.perf_counter()
        llm.eval([token])
        token = int(np.argmax(logits()))
        steps.append(time.perf_counter() - start)
    return {"decode_step_s": statistics.median(steps), "prefill_s": statistics.median(prefills), "last_logits": last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--convert", type=Path, required=True, help="llama.cpp's convert_hf_to_gguf.py")
    args = parser.parse_args()
    if not args.convert.is_file():
        sys.exit(f"--convert {args.convert}: no such file (llama.cpp's convert_hf_to_gguf.py; see the docstring)")
    import numpy as np
    import torch
    import transformers

    work = Path(tempfile.mkdtemp(prefix="hetagent-bench-llamacpp-"))
    load_start = os.getloadavg()[0]
    directory = build_checkpoint(work)
    gguf = convert(directory, args.convert)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    ids = prompt_ids(lambda text: tokenizer(text)["input_ids"])
    prompt = tokenizer.decode(ids[1:])

    ours = hetagent_figures(work, work, prompt)
    theirs = llamacpp_figures(gguf, ids)
    with torch.no_grad():
        model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
        expected = model(torch.tensor([ids])).logits[0, -1].numpy()
    logit_error = float(np.abs(theirs.pop("last_logits") - expected).max() / np.abs(expected).max())
    params = sum(p.numel() for p in model.parameters())
    figures = {
        "cores": CORES, "params_m": params / 1e6, "threads": CORES, "prompt_tokens": PROMPT_TOKENS,
        "hetagent": ours, "llamacpp": theirs,
        "decode_speed_vs_llamacpp": theirs["decode_step_s"] / ours["decode_step_s"],
        "prefill_speed_vs_llamacpp": theirs["prefill_s"] / ours["prefill_s"],
        "llamacpp_logits_vs_transformers_rel_error": logit_error,
        "load_average_start": load_start, "load_average_end": os.getloadavg()[0],
    }
    print(json.dumps(figures, indent=2))
    print(f"decode step (batch 1): hetagent {ours['decode_step_s'] * 1e3:.1f} ms, llama.cpp "
          f"{theirs['decode_step_s'] * 1e3:.1f} ms = {figures['decode_speed_vs_llamacpp']:.2f}x llama.cpp's speed "
          f"(target >= 1.0x)")
    print(f"prefill of {PROMPT_TOKENS} tokens: hetagent {ours['prefill_s'] * 1e3:.0f} ms, llama.cpp "
          f"{theirs['prefill_s'] * 1e3:.0f} ms = {figures['prefill_speed_vs_llamacpp']:.2f}x (target >= 0.8x)")
    print(f"same model: llama.cpp's last-position logits vs transformers', max relative error {logit_error:.1e}")
    warning = load_warning(load_start, figures["load_average_end"], "the figures")
    if warning:
        print(f"warning: {warning}")


if __name__ == "__main__":
    main()
