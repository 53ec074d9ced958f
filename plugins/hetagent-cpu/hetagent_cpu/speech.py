"""Speech models on the CPU: Whisper checkpoints for speech-to-text, and tiny random-weight stand-ins.

A speech-to-text op whose model is a Whisper checkpoint (`--model-dir DIR` holding `DIR/<model>/`) runs it
(`hetagent_cpu.whisper`: transformers' greedy transcription, in numpy). Every other model is a stand-in that does
the real kind of tensor work of its production counterpart, at a small size, in numpy; its weights are random
(seeded, the same on every machine), so what it says and hears means nothing. Loading real Kokoro (TTS) weights
is not implemented.

- tiny-stt: 16 kHz audio -> 25 ms Hann frames every 10 ms -> |FFT| -> log of 80 random filterbank bands ->
  4× time pooling -> two pre-norm residual MLP blocks (width 256) -> byte logits per frame -> greedy CTC
  collapse (id 0 is the blank) -> at most `output_tokens` bytes of text.
- tiny-tts: text bytes -> 128-wide embeddings -> two residual MLP blocks -> 160 samples (10 ms at 16 kHz) per
  byte through tanh -> a waveform.
"""

from __future__ import annotations

import numpy as np

from hetagent.backend import text
from hetagent.backend.executor import Call, OneShotExecutor
from hetagent.backend.transforms import render
from hetagent.models.catalog import checkpoint_dir, use_model_dir

SAMPLE_RATE = 16000
FRAME, HOP, BANDS, POOL = 400, 160, 80, 4
WIDTH = 256
TTS_WIDTH, SAMPLES_PER_BYTE = 128, 160


def _layer_norm(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)


def _gelu(x: np.ndarray) -> np.ndarray:
    # x * x * x, not x**3: numpy raises float32 arrays to a power element by element through pow, 18x slower
    # (a 1 KB sentence's speech took 131 ms, 80 % of it here)
    return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * (x * x * x))))


def _blocks(rng: np.random.Generator, width: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(rng.standard_normal((width, 4 * width), dtype=np.float32) / np.sqrt(width),
             rng.standard_normal((4 * width, width), dtype=np.float32) / np.sqrt(4 * width)) for _ in range(count)]


def _run_blocks(x: np.ndarray, blocks) -> np.ndarray:
    for up, down in blocks:
        x = x + _gelu(_layer_norm(x) @ up) @ down
    return x


class SpeechExecutor(OneShotExecutor):
    def __init__(self, context):
        super().__init__(context)
        if context.model_dir:
            use_model_dir(context.model_dir)
        rng = np.random.default_rng(0)
        self.filterbank = np.abs(rng.standard_normal((FRAME // 2 + 1, BANDS), dtype=np.float32)) / FRAME
        self.stt_in = rng.standard_normal((BANDS, WIDTH), dtype=np.float32) / np.sqrt(BANDS)
        self.stt_blocks = _blocks(rng, WIDTH, 2)
        self.stt_head = rng.standard_normal((WIDTH, text.VOCAB_USED), dtype=np.float32) / np.sqrt(WIDTH)
        self.tts_embed = rng.standard_normal((256, TTS_WIDTH), dtype=np.float32)
        self.tts_blocks = _blocks(rng, TTS_WIDTH, 2)
        self.tts_out = rng.standard_normal((TTS_WIDTH, SAMPLES_PER_BYTE), dtype=np.float32) / np.sqrt(TTS_WIDTH)
        self.window = np.hanning(FRAME).astype(np.float32)

    def run_one(self, call: Call) -> tuple:
        if call.op == "audio.tts":
            return (self.speak(render(call.inputs[0])),)
        limit = int(call.attrs.get("output_tokens", 64))
        model = call.attrs.get("model", "tiny-stt")
        directory = checkpoint_dir(model)
        if directory is not None:  # a Whisper checkpoint (--model-dir)
            from hetagent_cpu import whisper

            return (whisper.load(model, directory).transcribe(call.inputs[0], limit),)
        return (self.transcribe(call.inputs[0], limit),)

    def transcribe(self, audio: np.ndarray, limit: int) -> str:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.size < FRAME:
            return ""
        count = 1 + (audio.size - FRAME) // HOP
        frames = np.lib.stride_tricks.sliding_window_view(audio, FRAME)[::HOP][:count] * self.window
        features = np.log(np.abs(np.fft.rfft(frames, axis=-1)).astype(np.float32) @ self.filterbank + 1e-6)
        pooled = features[: len(features) // POOL * POOL].reshape(-1, POOL, BANDS).mean(1)
        ids = (_run_blocks(pooled @ self.stt_in, self.stt_blocks) @ self.stt_head).argmax(-1)
        collapsed = [int(t) for i, t in enumerate(ids) if t != text.PAD and (i == 0 or t != ids[i - 1])]
        return text.decode(collapsed[:limit])

    def speak(self, sentence: str) -> np.ndarray:
        ids = np.frombuffer(sentence.encode(), dtype=np.uint8)
        if ids.size == 0:
            return np.zeros(0, dtype=np.float32)
        hidden = _run_blocks(self.tts_embed[ids], self.tts_blocks)
        return np.tanh(hidden @ self.tts_out).reshape(-1).astype(np.float32)
