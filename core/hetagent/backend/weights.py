"""Where a model's weights come from at run time, as numpy arrays (workers never import torch).

`--model-dir DIR` with the Hugging Face directory `DIR/<model>/` gives real weights (checked against the card;
memory-mapped, each tensor converted once to the kernel's dtype). Otherwise the
model's deterministic random weights (`hetagent.models.reference.random_weights`, seed 0) are generated once,
with torch, by the process that prepares the run, and cached as safetensors under the compile cache
(`weights/<model>-random-seed0-<dtype>.safetensors`), so every worker and every later run reads the same bytes.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np

from hetagent.backend.kv_format import NUMPY_DTYPES
from hetagent.models.catalog import card
from hetagent.models.hf_checkpoint import locate_tensors, read_header
from hetagent.models.weights import locate_weights, weight_shapes

RANDOM_SEED = 0


def random_weights_file(cache_dir: Path, model: str, dtype: str) -> Path:
    return cache_dir / "weights" / f"{model}-random-seed{RANDOM_SEED}-{dtype}.safetensors"


def prepare_weights(model: str, dtype: str, *, model_dir: Path | None, cache_dir: Path) -> Path:
    """The directory or file workers load `model` from; random weights are written on first use."""
    if model_dir is not None and (model_dir / model).is_dir():
        locate_weights(card(model), model_dir / model)
        if (model_dir / model / "config.json").is_file():  # a checkpoint brings its tokenizer: check it now
            from hetagent.backend.tokenizer import tokenizer_for

            tokenizer_for(model)
        return model_dir / model
    target = random_weights_file(cache_dir, model, dtype)
    if not target.exists():
        from safetensors.numpy import save_file

        from hetagent.models import reference

        weights = reference.random_weights(card(model), seed=RANDOM_SEED, dtype=dtype)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".tmp")
        save_file({name: t.numpy() for name, t in weights.items()}, str(temporary))
        temporary.replace(target)
    return target


def load_weights(model: str, source: Path, dtype: str | None = None) -> dict[str, np.ndarray]:
    """Every weight of `model` in call order, from a safetensors file or a HF directory of them (one file or
    shards), as the kernel's `dtype` (fp32/fp16; bf16 on disk widens exactly to fp32).

    The files are memory-mapped: a tensor already in the wanted dtype is a read-only view of the mapping (no
    copy); one that needs converting is converted once, and its pages of the mapping are then released, so
    loading holds at most the converted weights plus the tensor being converted (benchmarks/bench_weights.py)."""
    if source.is_dir():
        located = locate_tensors(source, weight_shapes(card(model)), model)
    else:
        header, _ = read_header(source)
        located = {name: (source, header[name]) for name in weight_shapes(card(model))}
    target = np.dtype(NUMPY_DTYPES[dtype]) if dtype in NUMPY_DTYPES else None
    maps: dict[Path, tuple[mmap.mmap, int]] = {}
    weights = {}
    for name, (file, entry) in located.items():
        if file not in maps:
            with open(file, "rb") as f:  # the mapping outlives the file object
                maps[file] = (mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), read_header(file)[1])
        mapping, data = maps[file]
        start, end = (data + offset for offset in entry["data_offsets"])
        page = mmap.PAGESIZE
        first = start // page * page
        mapping.madvise(mmap.MADV_WILLNEED, first, end - first)  # read ahead: one fault per page is slow
        disk = np.dtype({"BF16": "<u2", "F16": "<f2", "F32": "<f4"}[entry["dtype"]])
        raw = np.frombuffer(mapping, dtype=disk, count=(end - start) // disk.itemsize, offset=start)
        if entry["dtype"] == "BF16":  # the high half of an fp32: widen by shifting the bits up, in place
            widened = raw.astype(np.uint32)
            widened <<= 16
            array = widened.view(np.float32)
        else:
            array = raw
        if target is not None and array.dtype != target:
            array = array.astype(target)
        if array is not raw:  # converted: the mapped pages are not needed any more
            mapping.madvise(mmap.MADV_DONTNEED, first, end - first)
        weights[name] = array.reshape(entry["shape"])
    return weights
