"""BERT embeddings and Whisper transcription at production shapes, against transformers in the same run.

    .venv/bin/python benchmarks/bench_hf_encoders.py [--clip-seconds 3] [--tokens 48]

Checkpoints are built here with transformers (random init, `save_pretrained`; tokenizers trained on
examples/corpus), at all-MiniLM-L6-v2's shape (384 wide, 6 layers, 12 heads, 512 positions) and
openai/whisper-tiny's (384 wide, 4 + 4 layers, 30 s windows). Printed:

- BERT: `hetagent index examples/corpus --model-dir` (the encoder's embed compiled by IREE for llvm-cpu, run on
  local-task): cosine of every chunk's vector against transformers' mean-pooled, normalised BertModel output
  (target >= 0.9999), and the wall time of the index command (compile included) beside transformers' embedding
  of the same chunks.
- Whisper: the cpu backend's numpy transcription of a synthesized clip against transformers' greedy `generate`:
  tokens equal (target: all), the log-mel features' largest difference, and each side's time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def bench_bert(root: Path) -> list[tuple[str, str]]:
    import faiss
    import numpy as np
    import torch
    import transformers
    from hf_fixtures import BERT_MINILM, build_bert

    from hetagent.backend.stores import load_store

    name = "all-minilm-l6-v2"
    directory = build_bert(root / "models", name, shape=BERT_MINILM)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hetagent", "--backends", "cpu", "index", str(ROOT / "examples" / "corpus"),
                           "-o", str(root / "index"), "--embed-model", name, "--model-dir", str(root / "models"),
                           "--json"], capture_output=True, text=True)
    ours_s = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(done.stderr)
    meta = json.loads(done.stdout)
    index = faiss.read_index(str(root / "index" / meta["index"]))
    vectors = index.reconstruct_n(0, index.ntotal)
    texts = [d["text"] for d in load_store(root / "index").documents]
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = transformers.AutoModel.from_pretrained(directory, dtype=torch.float32).eval()
    start = time.perf_counter()
    with torch.no_grad():
        expected = []
        for i in range(0, len(texts), 32):
            batch = tokenizer(texts[i: i + 32], padding=True, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"][..., None].float()
            expected.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy())
    theirs_s = time.perf_counter() - start
    expected = np.concatenate(expected)
    cosine = (vectors * expected).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(expected, axis=1)
    return [("BERT (all-MiniLM-L6-v2 shape)", f"{len(texts)} chunks, {meta['dim']} dims"),
            ("  cosine vs transformers: min / mean", f"{cosine.min():.7f} / {cosine.mean():.7f} (target >= 0.9999)"),
            ("  hetagent index wall s (IREE compile included)", f"{ours_s:.1f}"),
            ("  transformers embedding s (batches of 32)", f"{theirs_s:.1f}")]


def bench_whisper(root: Path, seconds: float, tokens: int) -> list[tuple[str, str]]:
    import numpy as np
    import torch
    import transformers
    from hf_fixtures import WHISPER_TINY, build_whisper, synthesized_clip

    from hetagent.models.catalog import use_model_dir
    from hetagent_cpu import whisper

    name = "whisper-tiny-shape"
    directory = build_whisper(root / "models", name, shape=WHISPER_TINY)
    use_model_dir(root / "models")
    audio = synthesized_clip(seconds)
    extractor = transformers.WhisperFeatureExtractor.from_pretrained(directory)
    model = transformers.WhisperForConditionalGeneration.from_pretrained(directory, dtype=torch.float32).eval()
    start = time.perf_counter()
    features = extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        expected = model.generate(features, max_new_tokens=tokens, do_sample=False)[0].tolist()
    theirs_s = time.perf_counter() - start
    ours = whisper.load(name, directory)
    start = time.perf_counter()
    _, generated = ours.generate(audio, tokens)
    ours_s = time.perf_counter() - start
    same = sum(a == b for a, b in zip(generated, expected))
    feature_error = float(np.abs(ours.features(audio) - features[0].numpy()).max())
    return [("Whisper (whisper-tiny shape, 30 s window)", f"{seconds:g} s synthesized clip, up to {tokens} tokens"),
            ("  tokens equal to transformers' greedy generate", f"{same} of {len(expected)} "
             f"({'identical' if generated == expected else 'DIFFERENT'})"),
            ("  log-mel features: largest |difference|", f"{feature_error:.2e}"),
            ("  hetagent (numpy) s / transformers s", f"{ours_s:.2f} / {theirs_s:.2f}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip-seconds", type=float, default=3.0)
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    from hetagent.cli.output import print_table

    with tempfile.TemporaryDirectory() as tmp:
        rows = bench_bert(Path(tmp) / "bert") + bench_whisper(Path(tmp) / "whisper", args.clip_seconds, args.tokens)
    print_table("Hugging Face encoders against transformers", ["", ""], rows)


if __name__ == "__main__":
    main()
