"""Where a model's weights come from at run time, as numpy arrays (workers never import torch).

`--model-dir DIR` with `DIR/<model>/*.safetensors` gives real weights (checked against the card). Otherwise the
model's deterministic random weights (`hetagent.models.reference.random_weights`, seed 0) are generated once,
with torch, by the process that prepares the run, and cached as safetensors under the compile cache
(`weights/<model>-random-seed0-<dtype>.safetensors`), so every worker and every later run reads the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hetagent.errors import HetagentError
from hetagent.models.catalog import card
from hetagent.models.weights import locate_weights, weight_shapes

RANDOM_SEED = 0


def random_weights_file(cache_dir: Path, model: str, dtype: str) -> Path:
    return cache_dir / "weights" / f"{model}-random-seed{RANDOM_SEED}-{dtype}.safetensors"


def prepare_weights(model: str, dtype: str, *, model_dir: Path | None, cache_dir: Path) -> Path:
    """The directory or file workers load `model` from; random weights are written on first use."""
    if model_dir is not None and (model_dir / model).is_dir():
        locate_weights(card(model), model_dir / model)
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


def load_weights(model: str, source: Path) -> dict[str, np.ndarray]:
    """Every weight of `model` in call order, from a safetensors file or a HF directory of them."""
    from safetensors.numpy import load_file

    if source.is_dir():
        located = locate_weights(card(model), source)
        loaded: dict[str, np.ndarray] = {}
        for file in sorted(set(located.values())):
            try:
                loaded.update(load_file(str(file)))
            except TypeError as exc:  # numpy has no bfloat16
                raise HetagentError(f"{file}: cannot read as numpy ({exc}); convert the checkpoint to fp32 or fp16") from None
    else:
        loaded = load_file(str(source))
    return {name: loaded[name] for name in weight_shapes(card(model))}
