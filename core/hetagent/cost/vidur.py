"""Vidur's measured GPU operator timings as `Measurement`s (data: `../shared/data/vidur`, MIT licence).

Each `<gpu>_<model>_mlp.csv` row times one layer's operators for one model shape, token count and TP degree;
we rebuild the same kernels from `hetagent.models.kernels`, so a row becomes up to ten (kernel, seconds) pairs.
`*_dgx_all_reduce.csv` / `*_dgx_send_recv.csv` time NCCL collectives inside one node by message size.
"""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from hetagent.cost.fit import Measurement
from hetagent.errors import HetagentError
from hetagent.models.card import ModelCard
from hetagent.models.kernels import Kernel, prefill_kernels

# Vidur's GPU names -> our device profiles
DEVICES = {"h100": "h100-sxm", "a100": "a100-80gb-sxm"}
# Vidur operator -> the kernel of ours it times
OPERATORS = {
    "emb": "embedding",
    "input_layernorm": "input_norm",
    "attn_pre_proj": "qkv_proj",
    "attn_rope": "rope",
    "attn_post_proj": "o_proj",
    "post_attention_layernorm": "post_attention_norm",
    "mlp_up_proj": "mlp_up",
    "mlp_act": "mlp_act",
    "mlp_down_proj": "mlp_down",
    "add": "residual_add",
}
DTYPE = "fp16"  # Vidur profiles fp16 weights and activations
MS = 1e-3


@dataclass(frozen=True)
class Row:
    """One measured operator of a Vidur table, with where it came from (for per-model and per-size figures)."""

    device: str
    model: str
    operator: str
    tokens: int
    tp: int
    measurement: Measurement


def load_operator_rows(directory: str | Path) -> list[Row]:
    """Every (operator, row) of every `<gpu>_<model>_mlp.csv` under `directory`."""
    rows: list[Row] = []
    for path in _tables(directory, "_mlp.csv"):
        gpu, model = path.name.removesuffix("_mlp.csv").split("_", 1)
        with path.open(newline="") as f:
            for record in csv.DictReader(f):
                rows += _operator_rows(DEVICES[gpu], model, record)
    return rows


def _operator_rows(device: str, model: str, record: dict[str, str]) -> list[Row]:
    heads, kv_heads, hidden = int(record["n_head"]), int(record["n_kv_head"]), int(record["n_embd"])
    card = ModelCard(
        name=model, kind="llm", hidden_size=hidden, intermediate_size=int(record["n_expanded_embd"]), num_layers=1,
        num_heads=heads, num_kv_heads=kv_heads, vocab_size=int(record["vocab_size"]),
        gated_mlp=record["use_gated_mlp"] == "True", default_dtype=DTYPE,
    )
    tokens, tp = int(record["num_tokens"]), int(record["num_tensor_parallel_workers"])
    kernels = {k.name: k for k in prefill_kernels(card, tokens, dtype=DTYPE, tp=tp)}
    rows = []
    for operator, name in OPERATORS.items():
        median = record.get(f"time_stats.{operator}.median")
        if median:
            # one launch: the table times one layer's operator, not the stack's
            measurement = Measurement(dataclasses.replace(kernels[name], count=1), DTYPE, float(median) * MS)
            rows.append(Row(device, model, operator, tokens, tp, measurement))
    return rows


def load_link_measurements(directory: str | Path) -> dict[str, list[Measurement]]:
    """Per device: all-reduces and point-to-point transfers with every participant inside one node."""
    found: dict[str, list[Measurement]] = {}
    for suffix, kind, column in (("_dgx_all_reduce.csv", "allreduce", "all_reduce"), ("_dgx_send_recv.csv", "transfer", "send_recv")):
        for path in _tables(directory, suffix):
            gpu = path.name.removesuffix(suffix)
            by_config: dict[tuple[int, int], list[float]] = {}
            with path.open(newline="") as f:
                for record in csv.DictReader(f):
                    workers = int(record["num_workers"])
                    if int(record["devices_per_node"]) != workers:
                        continue  # crosses nodes: not the scale-up link
                    by_config.setdefault((workers, int(record["size"])), []).append(float(record[f"time_stats.{column}.median"]))
            found.setdefault(DEVICES[gpu], []).extend(
                Measurement(Kernel(kind, kind, 0.0, float(size)), DTYPE, sorted(times)[len(times) // 2] * MS, tp=workers)
                for (workers, size), times in sorted(by_config.items())
            )
    return found


def _tables(directory: str | Path, suffix: str) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise HetagentError(f"{directory}: no such directory (expected Vidur's profiling tables, e.g. ../shared/data/vidur)")
    paths = sorted(p for p in directory.iterdir() if p.name.endswith(suffix) and p.name.split("_", 1)[0] in DEVICES)
    if not paths:
        raise HetagentError(f"{directory}: no *{suffix} tables of {', '.join(DEVICES)}")
    return paths
