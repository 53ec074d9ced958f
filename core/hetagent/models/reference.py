"""The reference Llama-architecture decoder in torch, driven by a `ModelCard`, with an explicit KV cache.

Three pure functions of (weights, inputs), one per granular op the compiler exports and the runtime runs:

    prefill(tokens[B,T], lengths[B])          -> logits[B,V] at each prompt's last token, kv[L,2,B,Hkv,S,D]
    decode(token[B], positions[B], kv[, store]) -> logits[B,V] for the next token, kv (or store) with slot
                                                  `positions` written
    extend(tokens[B,C], lengths[B], starts[B], kv) -> logits[B,V] at each chunk's last real token, kv with
                                                  slots [start, start + length) written (a prefill that resumes
                                                  over a cached prefix: the prefix cache's kernel)
    embed(tokens[B,T], lengths[B])            -> unit-length embedding[B,H] (mean of the final hidden states)

Shapes are static: T is the prompt capacity, S the KV-cache capacity; `lengths` and `positions` say what is
real. Padding is handled with masks and `where` rather than dynamic indexing, so the exported graphs are plain
elementwise/matmul/reduction code that every IREE target compiles. Weights carry Hugging Face Llama names
(`model.layers.0.self_attn.q_proj.weight`) so a HF safetensors directory loads as is, and the rotary embedding
follows HF's rotate-half convention, which HF's q/k projection layout assumes.

This module needs torch (`pip install 'hetagent[torch]'`); nothing imports it unless a model function is built.
"""

from __future__ import annotations

import math
from pathlib import Path

from hetagent.errors import HetagentError
from hetagent.models.card import ModelCard
from hetagent.models.weight_names import locate_weights, weight_shapes

try:
    import torch
except ImportError as exc:  # the core runs without torch; only building or checking model functions needs it
    raise HetagentError(
        f"the reference model functions need torch, which is not installed ({exc}); "
        "install it with `pip install 'hetagent[torch]'` (a CPU build pinned to torch==2.13.0)"
    ) from None

Weights = dict[str, "torch.Tensor"]
_TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp64": torch.float64}


def torch_dtype(model: ModelCard, dtype: str | None = None) -> "torch.dtype":
    dtype = dtype or model.default_dtype
    if dtype not in _TORCH_DTYPES:
        raise HetagentError(
            f"model {model.name!r}: the reference decoder runs in {', '.join(_TORCH_DTYPES)}, not {dtype!r}"
        )
    return _TORCH_DTYPES[dtype]


def random_weights(model: ModelCard, *, seed: int = 0, dtype: str | None = None) -> Weights:
    """Deterministic random weights: the same (card, seed) gives the same tensors on every machine.

    Projections are scaled by 1/sqrt(fan_in) so activations keep unit scale through the layers (numerical
    comparisons then test the arithmetic, not denormals); norm weights sit near 1.
    """
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in weight_shapes(model).items():
        values = torch.randn(shape, generator=generator, dtype=torch.float32)
        if name.lower().endswith("norm.weight"):
            values = 1.0 + 0.1 * values
        elif name.endswith(".bias"):
            values = 0.1 * values
        elif "embed" not in name:  # embedding tables keep unit scale
            values = values / shape[-1] ** 0.5
        weights[name] = values.to(torch_dtype(model, dtype))
    return weights


def load_weights(model: ModelCard, directory: str | Path, *, dtype: str | None = None) -> Weights:
    """Weights from a Hugging Face-layout directory of `*.safetensors` files, checked against the card."""
    from safetensors import safe_open

    located = locate_weights(model, directory)
    weights = {}
    for file in sorted(set(located.values())):
        with safe_open(str(file), framework="pt") as f:
            for name in (n for n, where in located.items() if where == file):
                weights[name] = f.get_tensor(name).to(torch_dtype(model, dtype))
    return {name: weights[name] for name in located}


# ---------------------------------------------------------------------------------------------- the decoder


def _rms_norm(x, weight, eps: float):
    variance = x.pow(2).mean(-1, keepdim=True)
    return x * torch.rsqrt(variance + eps) * weight


def _inverse_frequencies(model: ModelCard):
    """RoPE's per-pair frequencies, scaled as the config's `rope_scaling` says (HF's `rope_init_fn`s)."""
    dim = model.head_size
    inv_freq = 1.0 / (model.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    scaling = dict(model.rope_scaling)
    kind = scaling.get("rope_type", "default")
    if kind == "linear":
        return inv_freq / scaling["factor"]
    if kind == "llama3":  # long wavelengths slowed by `factor`, short ones kept, a smooth blend between
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        wavelength = 2 * math.pi / inv_freq
        smooth = (old / wavelength - low) / (high - low)
        blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        # nested selects rather than boolean `&`, which IREE's torch lowering does not legalize
        return torch.where(wavelength < old / high, inv_freq,
                           torch.where(wavelength > old / low, inv_freq / factor, blended))
    return inv_freq


def _rotary(model: ModelCard, positions, dtype):
    """cos and sin for `positions` (any shape), HF layout: the half-dimension frequencies repeated twice."""
    inv_freq = _inverse_frequencies(model)
    freqs = positions.to(torch.float32)[..., None] * inv_freq
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _heads(x, count: int, head_dim: int):
    """[B, T, count·head_dim] -> [B, count, T, head_dim]."""
    batch, length, _ = x.shape
    return x.view(batch, length, count, head_dim).transpose(1, 2)


def _attend(model: ModelCard, q, k, v, allowed):
    """Grouped-query attention of q [B,H,T,D] over k, v [B,Hkv,S,D] where `allowed` [B or 1, 1, T, S] lets it.

    Query head h reads kv head h // group (HF's repeat_kv); the group's query heads are stacked as rows of one
    matmul against their kv head instead of repeating k and v per query head: the compiled kernel then reads the
    cache once, not `group` times through a materialised copy (most of a decode step's attention time).

    Matmuls and a softmax, not `scaled_dot_product_attention`: IREE (3.13) lowers that to its fused attention op,
    whose CPU code measured 14 % faster for tiny-llama's batch-16 decode but 5x slower for one sequence of
    bench-llama's shape (4 kv heads of 64, 576 slots) and 10x slower over a 512-token prompt."""
    batch, _, length, dim = q.shape
    group = model.num_heads // model.num_kv_heads
    q = q.reshape(batch, model.num_kv_heads, group * length, dim)
    scores = ((q @ k.transpose(-1, -2)) * model.head_size ** -0.5).view(batch, model.num_kv_heads, group, length, -1)
    scores = torch.where(allowed[:, :, None], scores, torch.finfo(q.dtype).min)  # [B, Hkv, G, T, S]
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    out = probs.view(batch, model.num_kv_heads, group * length, -1) @ v  # [B, Hkv, G·T, D]
    return out.view(batch, model.num_heads, length, dim).transpose(1, 2).reshape(batch, length, model.num_heads * dim)


def _linear(w: Weights, name: str, x):
    """x @ W.T (+ b where the checkpoint has a bias for this projection)."""
    y = x @ w[name + ".weight"].T
    return y + w[name + ".bias"] if name + ".bias" in w else y


def _mlp(w: Weights, prefix: str, x):
    gate = torch.nn.functional.silu(_linear(w, prefix + "mlp.gate_proj", x))
    return _linear(w, prefix + "mlp.down_proj", gate * _linear(w, prefix + "mlp.up_proj", x))


def _layer(model: ModelCard, w: Weights, i: int, h, cos, sin, attend):
    """One decoder layer; `attend(q, k, v)` is its attention, given this step's rotated queries, keys and values
    (over themselves, or over a cache as well). Returns the hidden states and this step's keys and values."""
    p = f"model.layers.{i}."
    x = _rms_norm(h, w[p + "input_layernorm.weight"], model.norm_eps)
    q = _rotate(_heads(_linear(w, p + "self_attn.q_proj", x), model.num_heads, model.head_size), cos, sin)
    k = _rotate(_heads(_linear(w, p + "self_attn.k_proj", x), model.num_kv_heads, model.head_size), cos, sin)
    v = _heads(_linear(w, p + "self_attn.v_proj", x), model.num_kv_heads, model.head_size)
    h = h + _linear(w, p + "self_attn.o_proj", attend(q, k, v))
    h = h + _mlp(w, p, _rms_norm(h, w[p + "post_attention_layernorm.weight"], model.norm_eps))
    return h, k, v


def _logits(model: ModelCard, w: Weights, h):
    head = w["model.embed_tokens.weight"] if model.tie_embeddings else w["lm_head.weight"]
    return _rms_norm(h, w["model.norm.weight"], model.norm_eps) @ head.T


def _prompt(model: ModelCard, w: Weights, tokens, keep):
    """Run a padded prompt through every layer; `keep(k, v)` sees each layer's keys and values."""
    batch, length = tokens.shape
    h = w["model.embed_tokens.weight"][tokens]
    cos, sin = _rotary(model, torch.arange(length), h.dtype)
    causal = torch.ones(length, length, dtype=torch.bool).tril()[None, None]
    for i in range(model.num_layers):
        h, k, v = _layer(model, w, i, h, cos, sin, lambda q, k, v: _attend(model, q, k, v, causal))
        keep(k, v)
    return h


def prefill(model: ModelCard, w: Weights, tokens, lengths, capacity: int):
    """Logits of each prompt's last real token, and the KV cache (capacity `capacity`) the prompt fills."""
    batch, length = tokens.shape
    layers = []
    h = _prompt(model, w, tokens, lambda k, v: layers.append(torch.stack((k, v))))
    pad = (0, 0, 0, capacity - length)  # pad the sequence axis of [2, B, Hkv, T, D] up to the capacity
    kv = torch.stack([torch.nn.functional.pad(layer, pad) for layer in layers])
    last = torch.arange(length)[None, :, None] == (lengths - 1)[:, None, None]  # a mask, not a dynamic index
    h_last = torch.where(last, h, 0.0).sum(dim=1, keepdim=True)
    return _logits(model, w, h_last)[:, 0], kv


def _attend_step(model: ModelCard, q, k, v, layer, before):
    """One decode step's attention: q [B,H,1,D] over the cache `layer` [2,B,Hkv,S,D]'s slots where `before`
    [B,1,1,S] (those strictly before each position) and over the step's own k, v [B,Hkv,1,D], one softmax (fp32)
    across both. The cache is only read, never at a sequence's own slot, so the step's rows can be written into it
    after (or while) every layer attends: see `decode`."""
    batch, heads, _, dim = q.shape
    scale = model.head_size ** -0.5
    q = q.reshape(batch, model.num_kv_heads, heads // model.num_kv_heads, dim)  # [B, Hkv, G, D]: see `_attend`
    keys, values = layer[0], layer[1]
    if torch.compiler.is_exporting():
        # Traced for a compiler, the cache's slots from each position on are zeroed (their weights are 0 either
        # way): IREE's cpu backend then packs each layer's K and V for its matmuls straight from the cache, where
        # a plain slice of it was first copied whole (small-llama decode step -4 %). Run eagerly, the select would
        # be one more pass over the cache (the torch baseline of benchmarks/bench_runtime.py: +8 % per step).
        slots = before.view(batch, 1, -1, 1)  # [B, 1, S, 1]
        keys, values = torch.where(slots, keys, 0.0), torch.where(slots, values, 0.0)
    scores = torch.where(before, (q @ keys.transpose(-1, -2)) * scale, torch.finfo(q.dtype).min).float()
    own = ((q @ k.transpose(-1, -2)) * scale).float()  # [B, Hkv, G, 1]
    top = torch.maximum(scores.amax(dim=-1, keepdim=True), own)
    weights, own = torch.exp(scores - top), torch.exp(own - top)
    total = weights.sum(dim=-1, keepdim=True) + own
    out = (weights / total).to(q.dtype) @ values + (own / total).to(q.dtype) * v  # [B, Hkv, G, D]
    return out.reshape(batch, 1, heads * dim)


def decode(model: ModelCard, w: Weights, token, positions, kv, store=None):
    """One step: the token at `positions` (one per sequence, each below the capacity) attends over the cache's
    slots before its own and over itself; returns the logits and `store` (default: `kv`) with the step's K and V
    written at `positions`.

    Every layer only reads `kv`, and the step's rows of all layers are written by one scatter at the end, into
    `store`: an IREE backend passes the same device buffer as both and gets the cache updated in place, since no
    read of `kv` touches a slot the scatter writes (`hetagent.backend.functions.decode_in_place`). Returning a
    fresh cache instead costs a copy of all of it on every step, which for a 14 MB cache was as long as the rest of
    a batch-1 step's attention. (Writing the rows with a select per layer, then stacking the layers, compiled to a
    copy 8x slower than a plain one.)"""
    layers, _, batch, heads, capacity, dim = kv.shape
    store = kv if store is None else store
    h = w["model.embed_tokens.weight"][token][:, None]  # [B, 1, H]
    cos, sin = _rotary(model, positions[:, None, None], h.dtype)  # [B, 1, 1, D]: broadcast over heads
    before = (torch.arange(capacity)[None, :] < positions[:, None])[:, None, None, :]  # [B, 1, 1, S]
    steps = []
    for i in range(model.num_layers):
        def attend(q, k, v, i=i):
            steps.append(torch.stack((k, v)))  # [2, B, Hkv, 1, D]
            return _attend_step(model, q, k, v, kv[i], before)

        h, _, _ = _layer(model, w, i, h, cos, sin, attend)
    # the cache as rows of D, one per (layer, k/v, sequence, head, slot): the step's row of each
    rows = (torch.arange(layers * 2 * batch * heads).view(layers, 2, batch, heads) * capacity
            + positions[None, None, :, None]).reshape(-1)
    written = torch.index_put(store.reshape(-1, dim), (rows,), torch.stack(steps).reshape(-1, dim))
    return _logits(model, w, h)[:, 0], written.view(kv.shape)


def extend(model: ModelCard, w: Weights, tokens, lengths, starts, kv):
    """Prefill a chunk over a cache already holding slots [0, start): chunk token j sits at position start + j
    and attends over the cache's slots up to its own. The chunk's keys and values are scattered into the cache
    with a one-hot matmul (exact: each slot receives one value times 1.0), not dynamic indexing."""
    batch, length = tokens.shape
    capacity = kv.shape[4]
    h = w["model.embed_tokens.weight"][tokens]  # [B, C, H]
    positions = starts[:, None] + torch.arange(length)[None, :]  # [B, C]
    cos, sin = _rotary(model, positions[:, None, :], h.dtype)  # [B, 1, C, D]: broadcast over heads
    slots = torch.arange(capacity)
    # selects and products rather than boolean ops, which IREE's torch-to-linalg does not legalize
    real = torch.where(torch.arange(length)[None, :] < lengths[:, None], 1.0, 0.0)  # [B, C]
    onehot = torch.where(slots[None, None, :] == positions[:, :, None], 1.0, 0.0) * real[:, :, None]  # [B, C, S]
    scatter = onehot.transpose(1, 2)[:, None].to(h.dtype)  # [B, 1, S, C]
    written = (onehot.sum(dim=1) > 0)[:, None, :, None]  # [B, 1, S, 1]
    allowed = (slots[None, None, :] <= positions[:, :, None])[:, None]  # [B, 1, C, S]
    layers = []
    for i in range(model.num_layers):
        def attend(q, k, v, i=i):
            k, v = torch.where(written, scatter @ k, kv[i, 0]), torch.where(written, scatter @ v, kv[i, 1])
            layers.append(torch.stack((k, v)))
            return _attend(model, q, k, v, allowed)

        h, _, _ = _layer(model, w, i, h, cos, sin, attend)
    last = torch.arange(length)[None, :, None] == (lengths - 1)[:, None, None]
    h_last = torch.where(last, h, 0.0).sum(dim=1, keepdim=True)
    return _logits(model, w, h_last)[:, 0], torch.stack(layers)


def embed(model: ModelCard, w: Weights, tokens, lengths):
    """A unit-length text embedding: the mean of the final (normalised) hidden states over real tokens."""
    h = _prompt(model, w, tokens, lambda k, v: None)
    h = _rms_norm(h, w["model.norm.weight"], model.norm_eps).float()  # pool in fp32 whatever the model dtype
    real = torch.arange(tokens.shape[1])[None, :, None] < lengths[:, None, None]
    mean = torch.where(real, h, 0.0).sum(dim=1) / lengths[:, None].float()
    return (mean / mean.norm(dim=-1, keepdim=True)).to(w["model.norm.weight"].dtype)
