"""Whisper speech-to-text from a Hugging Face checkpoint, in numpy float32: transformers' short-form greedy
`generate` (audio of at most one window, no timestamps), token for token.

A checkpoint directory (`--model-dir DIR`, `DIR/<model>/`, `model_type` whisper) brings `config.json`, the
safetensors weights (`WhisperForConditionalGeneration`: `hetagent.models.weight_names.whisper_shapes`),
`preprocessor_config.json` (sampling rate, FFT size, hop, window length), `generation_config.json` and
`tokenizer.json`.

- features: as `WhisperFeatureExtractor`: audio padded or cut to the window, a centred STFT (Hann, reflect
  padding), power spectrum through a Slaney-normalised mel filter bank from 0 to 8 kHz, log10 floored at 1e-10,
  clamped to 8 below its maximum, scaled (x + 4) / 4.
- encoder: two GELU convolutions (the second of stride 2), learned positions, pre-norm layers, a final norm.
- decoder prompt: `decoder_start_token_id`, then `forced_decoder_ids` (language, task), or the language
  detected from the first step's logits over `lang_to_id` when the prompt leaves it open, then
  `no_timestamps_token_id`; then greedy steps with `suppress_tokens` masked everywhere and
  `begin_suppress_tokens` at the first step, until `eos_token_id`, the token limit, or the decoder's positions.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from hetagent.backend.weights import read_tensors
from hetagent.errors import HetagentError
from hetagent.models.catalog import card
from hetagent.models.hf_checkpoint import checkpoint_json
from hetagent.models.weight_names import checkpoint_tensors


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return (0.5 * x * (1.0 + erf(x / np.float32(np.sqrt(2.0))))).astype(np.float32)


def _layer_norm(x: np.ndarray, w: dict, name: str, eps: float = 1e-5) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]


def _linear(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    y = x @ w[name + ".weight"].T
    return y + w[name + ".bias"] if name + ".bias" in w else y


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def mel_filter_bank(bins: int, mels: int, sampling_rate: int, max_hz: float = 8000.0) -> np.ndarray:
    """[bins, mels] triangular filters on the Slaney mel scale, Slaney-normalised (librosa's and transformers')."""
    def to_mel(hz):
        hz = np.asarray(hz, dtype=np.float64)
        return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * 27.0 / np.log(6.4), 3.0 * hz / 200.0)

    def to_hz(mel):
        return np.where(mel >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0)), 200.0 * mel / 3.0)

    edges = to_hz(np.linspace(to_mel(0.0), to_mel(max_hz), mels + 2))
    fft_hz = np.linspace(0, sampling_rate // 2, bins)
    slopes = edges[None, :] - fft_hz[:, None]
    widths = np.diff(edges)
    down, up = -slopes[:, :-2] / widths[:-1], slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return filters * (2.0 / (edges[2:mels + 2] - edges[:mels]))[None, :]


class Whisper:
    """One Whisper checkpoint, loaded once: weights as fp32 arrays, its feature and generation settings."""

    def __init__(self, model: str, directory: Path):
        from hetagent.backend.tokenizer import tokenizer_for

        self.model, self.card = model, card(model)
        config = checkpoint_json(directory, "config.json", "model config")
        for encoder, decoder in (("encoder_attention_heads", "decoder_attention_heads"),
                                 ("encoder_ffn_dim", "decoder_ffn_dim")):
            if config.get(encoder, config.get(decoder)) != config.get(decoder):
                raise HetagentError(f"{directory / 'config.json'}: {encoder} {config[encoder]} differs from {decoder} "
                                    f"{config[decoder]}; hetagent runs Whisper stacks of one shape")
        if config.get("activation_function", "gelu") != "gelu":
            raise HetagentError(f"{directory / 'config.json'}: activation_function "
                                f"{config['activation_function']!r} is not supported for Whisper; supported: 'gelu'")
        self.embed_scale = np.float32(np.sqrt(self.card.hidden_size)) if config.get("scale_embedding") else np.float32(1)
        mels = int(config.get("num_mel_bins", 80))
        self.w = read_tensors(checkpoint_tensors(self.card, directory), "fp32")  # the architecture checked too
        features = checkpoint_json(directory, "preprocessor_config.json", "feature extractor config")
        self.rate = int(features.get("sampling_rate", 16000))
        self.n_fft, self.hop = int(features.get("n_fft", 400)), int(features.get("hop_length", 160))
        self.samples = int(features.get("n_samples", features.get("chunk_length", 30) * self.rate))
        if self.samples // self.hop != 2 * self.card.encoder_positions:
            raise HetagentError(f"{directory / 'preprocessor_config.json'}: a window of {self.samples} samples gives "
                                f"{self.samples // self.hop} frames; the encoder takes {2 * self.card.encoder_positions}")
        self.filters = mel_filter_bank(1 + self.n_fft // 2, mels, self.rate).astype(np.float32)
        self.window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.n_fft) / self.n_fft)).astype(np.float32)
        self.generation = checkpoint_json(directory, "generation_config.json", "generation config", required=False)
        self.tokenizer = tokenizer_for(model)

    # ------------------------------------------------------------------ features and encoder

    def features(self, audio: np.ndarray) -> np.ndarray:
        """[mels, frames] log-mel features of one window, as WhisperFeatureExtractor computes them."""
        audio = np.asarray(audio, dtype=np.float32)[: self.samples]
        audio = np.pad(audio, (0, self.samples - audio.size))
        half = self.n_fft // 2
        padded = np.pad(audio, (half, half), mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft)[:: self.hop] * self.window
        power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2  # [frames + 1, bins]
        log_spec = np.log10(np.maximum(self.filters.T @ power[:-1].T.astype(np.float32), 1e-10))
        return ((np.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0).astype(np.float32)

    def _conv(self, x: np.ndarray, name: str, stride: int) -> np.ndarray:
        """A kernel-3, padding-1 Conv1d over [channels, time] -> [time', out]."""
        padded = np.pad(x, ((0, 0), (1, 1)))
        taps = np.lib.stride_tricks.sliding_window_view(padded, 3, axis=1)[:, ::stride]  # [in, time', 3]
        return np.einsum("itk,oik->to", taps, self.w[name + ".weight"]) + self.w[name + ".bias"]

    def encode(self, features: np.ndarray) -> np.ndarray:
        w, p = self.w, "model.encoder."
        x = _gelu(self._conv(features, p + "conv1", 1))
        h = _gelu(self._conv(x.T, p + "conv2", 2)) + w[p + "embed_positions.weight"]
        for i in range(self.card.encoder_layers):
            layer = f"{p}layers.{i}."
            x = _layer_norm(h, w, layer + "self_attn_layer_norm")
            h = h + self._attend(x, x, layer + "self_attn", causal=False)
            h = h + self._mlp(h, layer)
        return _layer_norm(h, w, p + "layer_norm")

    # ------------------------------------------------------------------ attention, MLP

    def _split(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], self.card.num_heads, -1).transpose(1, 0, 2)  # [heads, time, head_dim]

    def _attention(self, q, k, v, prefix: str, mask=None) -> np.ndarray:
        scores = (q * np.float32(self.card.head_size ** -0.5)) @ k.transpose(0, 2, 1)
        if mask is not None:
            scores = np.where(mask, scores, np.float32(-np.inf))
        out = (_softmax(scores) @ v).transpose(1, 0, 2).reshape(q.shape[1], -1)
        return _linear(out, self.w, prefix + ".out_proj")

    def _attend(self, x, source, prefix: str, causal: bool) -> np.ndarray:
        q, k, v = (self._split(_linear(y, self.w, f"{prefix}.{n}_proj")) for y, n in ((x, "q"), (source, "k"), (source, "v")))
        mask = np.tri(x.shape[0], source.shape[0], dtype=bool) if causal else None
        return self._attention(q, k, v, prefix, mask)

    def _mlp(self, h, layer: str) -> np.ndarray:
        x = _layer_norm(h, self.w, layer + "final_layer_norm")
        return _linear(_gelu(_linear(x, self.w, layer + "fc1")), self.w, layer + "fc2")

    # ------------------------------------------------------------------ decoder

    def _decoder(self, encoded: np.ndarray):
        """A step function over the decoder with its caches: the cross-attention K/V of `encoded`, computed once,
        and the self-attention K/V growing by each fed token. step(token) -> logits of the next."""
        w, layers = self.w, range(self.card.num_layers)
        cross = [tuple(self._split(_linear(encoded, w, f"model.decoder.layers.{i}.encoder_attn.{n}_proj")) for n in ("k", "v"))
                 for i in layers]
        cache: list[list] = [[None, None] for _ in layers]
        position = [0]

        def step(token: int) -> np.ndarray:
            h = (w["model.decoder.embed_tokens.weight"][token] * self.embed_scale
                 + w["model.decoder.embed_positions.weight"][position[0]])[None]
            position[0] += 1
            for i in layers:
                p = f"model.decoder.layers.{i}."
                x = _layer_norm(h, w, p + "self_attn_layer_norm")
                q, k, v = (self._split(_linear(x, w, f"{p}self_attn.{n}_proj")) for n in ("q", "k", "v"))
                if cache[i][0] is not None:
                    k, v = np.concatenate((cache[i][0], k), axis=1), np.concatenate((cache[i][1], v), axis=1)
                cache[i] = [k, v]
                h = h + self._attention(q, k, v, p + "self_attn")
                x = _layer_norm(h, w, p + "encoder_attn_layer_norm")
                h = h + self._attention(self._split(_linear(x, w, p + "encoder_attn.q_proj")), *cross[i], p + "encoder_attn")
                h = h + self._mlp(h, p)
            h = _layer_norm(h, w, "model.decoder.layer_norm")
            return (h @ w["model.decoder.embed_tokens.weight"].T)[0]

        return step

    def prompt(self, step) -> tuple[list[int], np.ndarray]:
        """The decoder prompt (start, language, task, no-timestamps) fed through `step`; the last logits."""
        g = self.generation
        start = g.get("decoder_start_token_id", 50258)
        forced = dict((int(i), t) for i, t in g.get("forced_decoder_ids") or [])
        tokens = [start] + [forced[i] for i in range(1, len(forced) + 1) if i in forced]
        logits = step(start)
        for position, token in enumerate(tokens[1:], start=1):
            if token is None:  # the language is left open: detect it from the logits at this position
                languages = np.array(sorted((g.get("lang_to_id") or {}).values()), dtype=np.int64)
                if position != 1 or languages.size == 0:
                    raise HetagentError(f"{self.model}: generation_config.json leaves decoder prompt position "
                                        f"{position} open and gives no lang_to_id to detect the language")
                token = tokens[position] = int(languages[np.argmax(logits[languages])])
            logits = step(token)
        if len(tokens) == 1 and g.get("lang_to_id"):  # no forced ids: detect the language, then transcribe
            languages = np.array(sorted(g["lang_to_id"].values()), dtype=np.int64)
            tokens.append(int(languages[np.argmax(logits[languages])]))
            logits = step(tokens[-1])
            if "transcribe" in (g.get("task_to_id") or {}):
                tokens.append(g["task_to_id"]["transcribe"])
                logits = step(tokens[-1])
        no_timestamps = g.get("no_timestamps_token_id")
        if no_timestamps is not None and tokens[-1] != no_timestamps:
            tokens.append(no_timestamps)
            logits = step(no_timestamps)
        return tokens, logits

    def generate(self, audio: np.ndarray, limit: int) -> tuple[list[int], list[int]]:
        """(prompt ids, generated ids) for one clip: greedy, at most `limit` new tokens."""
        g = self.generation
        step = self._decoder(self.encode(self.features(audio)))
        prompt, logits = self.prompt(step)
        eos = g.get("eos_token_id")
        eos_ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set(self.tokenizer.eos_ids)
        suppress = np.array(g.get("suppress_tokens") or [], dtype=np.int64)
        begin = np.array(g.get("begin_suppress_tokens") or [], dtype=np.int64)
        limit = min(limit, self.card.max_position - len(prompt))
        generated: list[int] = []
        while len(generated) < limit:
            logits = logits.copy()
            logits[suppress] = -np.inf
            if not generated:
                logits[begin] = -np.inf
            token = int(np.argmax(logits))
            generated.append(token)
            if token in eos_ids or len(generated) == limit:
                break
            logits = step(token)
        return prompt, generated

    def transcribe(self, audio: np.ndarray, limit: int) -> str:
        return self.tokenizer.decode(self.generate(audio, limit)[1])


@lru_cache(maxsize=None)
def load(model: str, directory: Path) -> Whisper:
    return Whisper(model, directory)
