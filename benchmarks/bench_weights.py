"""Checkpoint loading: time and peak resident memory of hetagent's weight loader against a plain safetensors read
of the same files, for a Llama-architecture checkpoint of at least 500 MB, stored fp32 and stored bf16.

    .venv/bin/python benchmarks/bench_weights.py [--layers-fp32 8] [--layers-bf16 18]

Each load runs in a fresh process, which reports its wall time and the growth of its peak resident set over the
imports (`VmHWM` after the load minus `VmRSS` before it, the peak reset through `/proc/self/clear_refs`). Every tensor's pages are touched after loading (as an upload to a device reads
them), so a lazily mapped load is not counted as free. hetagent: `hetagent.backend.weights.load_weights` into
fp32 (the kernels' dtype): memory-mapped, fp32 tensors as views, bf16 widened once per tensor,
 read into a buffer of its own. Baseline: `safetensors.numpy.load_file` (fp32) and `safetensors.torch.load_file` + `.float()`
(bf16, which numpy cannot hold). Target: hetagent's peak ≤ 1.5 × the size of the weights it returns.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 1024,
          "intermediate_size": 2816, "num_attention_heads": 16, "num_key_value_heads": 4, "vocab_size": 32000,
          "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu",
          "tie_word_embeddings": False}

LOAD = r"""
import json, sys, time
from pathlib import Path
import numpy as np
root, name, how = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
if how == "hetagent":
    from hetagent.backend.weights import load_weights
    from hetagent.models.catalog import use_model_dir
    use_model_dir(root)
else:
    import safetensors.numpy, safetensors.torch, torch
def status(key):  # kB, from the kernel's own accounting of this process
    return int(open("/proc/self/status").read().split(key + ":")[1].split()[0])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current resident set
before = status("VmRSS")
start = time.perf_counter()
if how == "hetagent":
    weights = load_weights(name, root / name, "fp32")
elif how == "numpy":
    weights = {}
    for f in sorted((root / name).glob("*.safetensors")):
        weights.update(safetensors.numpy.load_file(str(f)))
else:
    weights = {}
    for f in sorted((root / name).glob("*.safetensors")):
        weights.update({k: v.float().numpy() for k, v in safetensors.torch.load_file(str(f)).items()})
touched = sum(int(a.reshape(-1).view(np.uint8)[::4096].sum()) for a in weights.values())
seconds = time.perf_counter() - start
peak = status("VmHWM") - before
print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024, "bytes": sum(a.nbytes for a in weights.values())}))
"""


def build(root: Path, name: str, layers: int, dtype: str) -> int:
    import torch
    from safetensors.torch import save_file

    from hetagent.models.hf_checkpoint import checkpoint_card
    from hetagent.models.weight_names import weight_shapes

    directory = root / name
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({**CONFIG, "num_hidden_layers": layers}))
    shapes = weight_shapes(checkpoint_card(directory))
    generator = torch.Generator().manual_seed(0)
    tensors = {n: (torch.randn(s, generator=generator) * 0.02).to(getattr(torch, dtype)) for n, s in shapes.items()}
    names, shard, index, size = list(tensors), 0, {}, 0
    per_shard = (len(names) + 2) // 3  # three shards and an index, as large checkpoints come
    for i in range(0, len(names), per_shard):
        file = f"model-{shard + 1:05d}-of-00003.safetensors"
        save_file({n: tensors[n] for n in names[i:i + per_shard]}, str(directory / file))
        index.update({n: file for n in names[i:i + per_shard]})
        shard += 1
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": index}))
    size = sum(f.stat().st_size for f in directory.glob("*.safetensors"))
    return size


def measure(root: Path, name: str, how: str) -> dict:
    done = subprocess.run([sys.executable, "-c", LOAD, str(root), name, how], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers-fp32", type=int, default=8)
    parser.add_argument("--layers-bf16", type=int, default=18)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hetagent-bench-weights-"))
    try:
        rows = []
        for name, layers, dtype, baseline in (("ckpt-fp32", args.layers_fp32, "float32", "numpy"),
                                              ("ckpt-bf16", args.layers_bf16, "bfloat16", "torch")):
            disk = build(root, name, layers, dtype)
            for how in ("hetagent", baseline, "hetagent", baseline):  # twice each: the second with a warm page cache
                rows.append((name, disk, how, measure(root, name, how)))
        print(f"{'checkpoint':<11} {'on disk MB':>10} {'loader':<18} {'seconds':>8} {'peak MB':>8} {'fp32 MB':>8} "
              f"{'peak/fp32':>9}")
        for name, disk, how, r in rows:
            loader = {"hetagent": "hetagent", "numpy": "safetensors.numpy", "torch": "safetensors.torch"}[how]
            fp32 = r["bytes"] / 2**20
            print(f"{name:<11} {disk / 2**20:>10.0f} {loader:<18} {r['seconds']:>8.2f} {r['peak_mb']:>8.0f} "
                  f"{fp32:>8.0f} {r['peak_mb'] / fp32:>9.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
