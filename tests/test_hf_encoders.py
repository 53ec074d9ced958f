"""BERT embeddings and Whisper transcription from Hugging Face checkpoints built here, against transformers.

BERT: `hetagent index --model-dir` embeds with the encoder's IREE-compiled embed kernel; every chunk's vector
matches transformers' mean-pooled, normalised BertModel output (cosine >= 0.9999), and the RAG agent retrieves
with the same kernel. Whisper: the cpu backend's transcription is transformers' greedy `generate`, token for
token, for a clip synthesized here, with the language forced or detected.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
faiss = pytest.importorskip("faiss")

from conftest import ROOT, run_hetagent  # noqa: E402
from hf_fixtures import build_bert, build_whisper, synthesized_clip  # noqa: E402

from hetagent.backend.stores import load_store  # noqa: E402
from hetagent.errors import HetagentError  # noqa: E402
from hetagent.models.catalog import use_model_dir  # noqa: E402

BERT = "all-minilm-l6-v2"  # the RAG agent's embedding model, here a checkpoint of that name built at test size


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert")
    build_bert(root / "models", BERT)
    index = root / "index"
    done = run_hetagent("--backends", "cpu", "index", str(ROOT / "examples" / "corpus"), "-o", str(index),
                        "--embed-model", BERT, "--model-dir", str(root / "models"), "--json")
    assert done.returncode == 0, done.stderr
    return root / "models", index, json.loads(done.stdout)


def _transformers_embeddings(directory, texts) -> np.ndarray:
    """sentence-transformers' recipe for all-MiniLM-L6-v2: mean of the last hidden states over real tokens,
    normalised."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = transformers.AutoModel.from_pretrained(directory, dtype=torch.float32).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


def test_index_embeddings_match_transformers(bert):
    models, index, meta = bert
    assert (meta["embed_model"], meta["dim"]) == (BERT, 64)
    stored = faiss.read_index(str(index / meta["index"]))
    vectors = stored.reconstruct_n(0, stored.ntotal)
    texts = [d["text"] for d in load_store(index).documents]
    expected = _transformers_embeddings(models / BERT, texts)
    cosine = (vectors * expected).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.9999, f"lowest cosine {cosine.min():.6f} (chunk {cosine.argmin()})"
    _, found = stored.search(expected[[3, 17]], 1)  # transformers' embedding of a chunk finds that chunk
    assert found[:, 0].tolist() == [3, 17]


def test_rag_agent_retrieves_with_the_checkpoint(bert):
    models, index, _ = bert
    done = run_hetagent("--backends", "cpu", "run", str(ROOT / "examples" / "rag_qa.mlir"), "--model-dir", str(models),
                        "--store", f"handbook={index}", "--requests", "1", "--max-tokens", "4", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert BERT not in report["substitutions"]  # the checkpoint embeds the query, no stand-in
    assert report["summary"]["ok"] == 1
    ops = {o["kind"]: o for o in report["ops"]}
    assert ops["memory.embed"]["calls"] == 1 and ops["memory.search"]["failed"] == 0


def test_bert_card_and_bad_activation(bert, tmp_path):
    import shutil

    from hetagent.models.weight_names import locate_weights

    from hetagent.models.hf_checkpoint import checkpoint_card

    models, _, _ = bert
    model = checkpoint_card(models / BERT)  # not registered: the built-in card of that name stays as it is
    hf = transformers.AutoModel.from_pretrained(models / BERT)
    pooler = sum(p.numel() for n, p in hf.named_parameters() if n.startswith("pooler."))
    assert model.kind == "embedding" and model.param_count() == sum(p.numel() for p in hf.parameters()) - pooler
    broken = tmp_path / BERT
    shutil.copytree(models / BERT, broken)
    config = json.loads((broken / "config.json").read_text())
    config["hidden_act"] = "relu"
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(HetagentError, match="config.json: hidden_act 'relu' is not supported for BERT"):
        locate_weights(model, broken)


# ---------------------------------------------------------------------------------------------- Whisper


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    root = tmp_path_factory.mktemp("whisper") / "models"
    build_whisper(root, "whisper-test")
    build_whisper(root, "whisper-detect", seed=1, language=None)
    use_model_dir(root)
    return root


def _transformers_transcription(directory, audio, limit):
    processor = transformers.WhisperFeatureExtractor.from_pretrained(directory)
    model = transformers.WhisperForConditionalGeneration.from_pretrained(directory, dtype=torch.float32).eval()
    features = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        out = model.generate(features, max_new_tokens=limit, do_sample=False)
    return features[0].numpy(), out[0].tolist()


@pytest.mark.parametrize("name", ["whisper-test", "whisper-detect"])
def test_whisper_transcribes_as_transformers(whisper, name):
    from hetagent_cpu import whisper as ours

    audio, limit = synthesized_clip(), 24
    features, expected = _transformers_transcription(whisper / name, audio, limit)
    model = ours.load(name, whisper / name)
    assert np.abs(model.features(audio) - features).max() < 1e-4
    prompt, generated = model.generate(audio, limit)
    assert len(generated) >= 8  # enough tokens to be a test
    assert generated == expected  # transformers' short-form generate returns the tokens after the prompt
    assert prompt[-1] == model.generation["no_timestamps_token_id"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(whisper / name)
    assert model.transcribe(audio, limit) == tokenizer.decode(generated, skip_special_tokens=True)


def test_speech_agent_runs_the_checkpoint(whisper, tmp_path):
    agent = tmp_path / "stt.mlir"
    agent.write_text(""""agent.graph"() ({
  %a = "input.audio"() {duration_s = 1.0 : f64, sample_rate = 16000 : i64} : () -> !agent.audio
  %t = "audio.stt"(%a) {model = "whisper-test", output_tokens = 16 : i64, name = "stt"} : (!agent.audio) -> !agent.text
  "agent.return"(%t) : (!agent.text) -> ()
}) {sym_name = "stt"} : () -> ()
""")
    done = run_hetagent("--backends", "cpu", "run", str(agent), "--model-dir", str(whisper), "--requests", "1", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "whisper-test" not in report["substitutions"] and report["summary"]["ok"] == 1

    import shutil

    from safetensors.numpy import load_file, save_file

    broken = tmp_path / "models" / "whisper-test"
    shutil.copytree(whisper / "whisper-test", broken)
    tensors = load_file(str(broken / "model.safetensors"))
    del tensors["model.decoder.layers.1.encoder_attn.q_proj.weight"]
    save_file(tensors, str(broken / "model.safetensors"))
    done = run_hetagent("--backends", "cpu", "run", str(agent), "--model-dir", str(tmp_path / "models"), "--json")
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
    assert "missing: model.decoder.layers.1.encoder_attn.q_proj.weight" in done.stderr
