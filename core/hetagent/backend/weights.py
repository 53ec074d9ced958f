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

DISK_NUMPY = {"BF16": "<u2", "F16": "<f2", "F32": "<f4"}  # safetensors dtype -> how numpy reads its bytes
from hetagent.models.weight_names import locate_weights, weight_shapes

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

    A tensor already in the wanted dtype is a read-only view of the memory-mapped file (no copy); one that needs
    converting is read into a buffer of its own and converted once, so loading holds at most the converted
    weights plus the tensor being converted (figures: benchmarks/bench_weights.py)."""
    if source.is_dir():
        located = locate_tensors(source, weight_shapes(card(model)), model)
    else:
        header, _ = read_header(source)
        located = {name: (source, header[name]) for name in weight_shapes(card(model))}
    return read_tensors(located, dtype)


def read_tensors(located: dict[str, tuple[Path, dict]], dtype: str | None = None) -> dict[str, np.ndarray]:
    """The tensors `locate_tensors` found (name -> file, header entry), as numpy arrays of `dtype` (see
    `load_weights`: views of the mapping where no conversion is needed)."""
    target = np.dtype(NUMPY_DTYPES[dtype]) if dtype in NUMPY_DTYPES else None
    files: dict[Path, tuple] = {}
    weights = {}
    try:
        for name, (file, entry) in located.items():
            if file not in files:
                handle = open(file, "rb")
                files[file] = (handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ), read_header(file)[1])
            handle, mapping, data = files[file]
            start, end = (data + offset for offset in entry["data_offsets"])
            disk = np.dtype(DISK_NUMPY[entry["dtype"]])
            wanted = np.dtype(np.float32) if entry["dtype"] == "BF16" else disk
            if target is not None:
                wanted = target
            if wanted == disk:
                array = np.frombuffer(mapping, dtype=disk, count=(end - start) // disk.itemsize, offset=start)
            else:  # one bulk read (page faults on a mapping are slower), then the conversion
                raw = np.empty((end - start) // disk.itemsize, dtype=disk)
                handle.seek(start)
                handle.readinto(memoryview(raw).cast("B"))
                if entry["dtype"] == "BF16":  # the high half of an fp32: widen by shifting the bits up (one pass)
                    raw = np.left_shift(raw, 16, dtype=np.uint32).view(np.float32)
                array = raw.astype(wanted, copy=False)
            weights[name] = array.reshape(entry["shape"])
    finally:
        for handle, _, _ in files.values():
            handle.close()  # the mappings stay open while views of them are alive
    return weights
