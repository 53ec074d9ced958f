"""Real checkpoints: Hugging Face model directories, tokenizers, chat templates and sampling against transformers.

Checkpoints are built here (`hf_fixtures`): Llama 3 (GQA, llama3 rope scaling, untied, sharded), Qwen2 (q/k/v
biases, tied embeddings) and Mistral (bf16 on disk), with a BPE tokenizer trained on examples/corpus. The
reference decoder (what the compiler exports kernels from) must match transformers' logits through a prefill
and 32 decode steps and its greedy tokens for 64 steps; bad checkpoints are refused naming file and tensor.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_fixtures import VARIANTS, build_checkpoint, train_tokenizer  # noqa: E402

from hetagent.backend import text  # noqa: E402
from hetagent.backend.chat_template import Chat  # noqa: E402
from hetagent.backend.tokenizer import tokenizer_for  # noqa: E402
from hetagent.backend.weights import load_weights  # noqa: E402
from hetagent.errors import HetagentError  # noqa: E402
from hetagent.models import reference# noqa: E402
from hetagent.models.catalog import card, use_model_dir  # noqa: E402
from hetagent.models.weight_names import locate_weights  # noqa: E402

DECODE_STEPS = 32
GREEDY_TOKENS = 64
PROMPT = "How long should pasta boil before it is served?"


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("checkpoints")
    for name in VARIANTS:
        build_checkpoint(root, name, tokenizer)
    use_model_dir(root)
    return root


def _hf_model(model_dir, name):
    return transformers.AutoModelForCausalLM.from_pretrained(model_dir / name, dtype=torch.float32).eval()


def _our_weights(model_dir, name):
    return {k: torch.tensor(v) for k, v in load_weights(name, model_dir / name, "fp32").items()}


def _relative(ours, theirs) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_card_comes_from_the_config(model_dir, name):
    model = card(name)
    config = json.loads((model_dir / name / "config.json").read_text())
    assert model.name == name and model.kind == "llm"
    assert (model.hidden_size, model.num_layers, model.num_kv_heads) == (
        config["hidden_size"], config["num_hidden_layers"], config["num_key_value_heads"])
    assert model.qkv_bias == (name == "qwen-small") and model.tie_embeddings == (name == "qwen-small")
    assert dict(model.rope_scaling).get("rope_type", "default") == ("llama3" if name == "my-llama3" else "default")
    hf = _hf_model(model_dir, name)
    assert model.param_count() == sum(p.numel() for p in hf.parameters())  # tied tables counted once


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_prefill_and_decode_match_transformers(model_dir, tokenizer, name):
    hf = _hf_model(model_dir, name)
    model, weights = card(name), _our_weights(model_dir, name)
    prompt = tokenizer.encode(PROMPT).ids
    with torch.no_grad():
        # transformers' greedy continuation, end of sequence ignored so that all 64 tokens exist
        ids = torch.tensor([prompt])
        generated = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=GREEDY_TOKENS,
                                min_new_tokens=GREEDY_TOKENS, do_sample=False, eos_token_id=None,
                                pad_token_id=hf.config.eos_token_id)[0]
        expected = hf(generated[None]).logits[0]  # every position's logits, one forward pass
        length, capacity = len(prompt), len(prompt) + GREEDY_TOKENS + 1
        logits, kv = reference.prefill(model, weights, torch.tensor([prompt]), torch.tensor([length]), capacity)
        assert _relative(logits[0], expected[length - 1]) < 1e-4
        ours = [int(logits[0].argmax())]
        for step in range(GREEDY_TOKENS - 1):
            position = length + step
            fed = generated[position] if step < DECODE_STEPS else torch.tensor(ours[-1])
            logits, kv = reference.decode(model, weights, fed[None], torch.tensor([position]), kv)
            if step < DECODE_STEPS:  # teacher-forced: the same inputs on both sides
                assert _relative(logits[0], expected[position]) < 1e-4, f"decode step {step}"
            ours.append(int(logits[0].argmax()))
    assert ours == generated[length:].tolist()


def test_bf16_on_disk_widens_exactly(model_dir):
    from safetensors.torch import load_file

    on_disk = load_file(str(next((model_dir / "mistral-small").glob("*.safetensors"))))
    ours = load_weights("mistral-small", model_dir / "mistral-small", "fp32")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert on_disk[name].dtype == torch.bfloat16
    assert np.array_equal(ours[name], on_disk[name].float().numpy())


def test_sharded_checkpoint_is_read_through_its_index(model_dir):
    directory = model_dir / "my-llama3"
    assert (directory / "model.safetensors.index.json").is_file()
    files = set(locate_weights(card("my-llama3"), directory).values())
    assert len(files) > 1


# ---------------------------------------------------------------------------------------------- tokenizers

@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_chat_template_renders_as_transformers(model_dir, name):
    hf = transformers.AutoTokenizer.from_pretrained(model_dir / name)
    ours = tokenizer_for(name)
    conversations = [
        [{"role": "user", "content": PROMPT}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! Über café?"},
         {"role": "user", "content": "Sí — 日本語 too"}],
    ]
    if name != "mistral-small":
        conversations.append([{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}])
    for messages in conversations:
        expected = hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert ours.template.render(messages) == expected
        ids = hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        assert ours.prompt_ids([Chat(messages)]) == list(ids)
    assert ours.encode(PROMPT) == hf(PROMPT)["input_ids"]  # plain text: the tokenizer's own BOS
    assert ours.eos_ids == {hf.eos_token_id}


def test_template_errors_are_named(model_dir):
    with pytest.raises(HetagentError, match="roles must alternate"):
        tokenizer_for("mistral-small").prompt_ids([Chat([{"role": "assistant", "content": "x"}])])


def test_incremental_detokenization_of_multibyte_characters(model_dir):
    ours = tokenizer_for("my-llama3")
    sentence = "Crème brûlée — 日本語 and emoji 🍝 done."
    ids = ours.encode(sentence, special=False)
    detokenizer = text.IncrementalDetokenizer(ours.decode)
    deltas = [detokenizer.push([i]) for i in ids]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) + detokenizer.finish(ours.decode(ids)) == sentence


def test_stop_strings_are_held_back_while_streaming():
    detokenizer = text.IncrementalDetokenizer(stop=("END",))
    streamed = "".join(detokenizer.push(text.encode(c)[1:]) for c in "abc EN")
    assert streamed == "abc "  # "EN" may begin the stop string
    assert detokenizer.push(text.encode("D")[1:]) == ""
    assert detokenizer.finish("abc ") == ""


def test_top_k_and_top_p_restrict_the_draw():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    draws = {text.sample(logits, 1.0, 7, step, vocab=4, banned=()) for step in range(200)}
    assert draws == {0, 1, 2, 3}
    assert {text.sample(logits, 1.0, 7, step, top_k=2, vocab=4, banned=()) for step in range(200)} == {0, 1}
    assert {text.sample(logits, 1.0, 7, step, top_p=0.7, vocab=4, banned=()) for step in range(200)} == {0, 1}
    assert text.sample(logits, 0.0, 7, 0, vocab=4, banned=()) == 0


def test_greedy_picks_each_rows_best_allowed_id_as_sample_does():
    rows = np.array([[0.1, 0.9, 0.3, 5.0], [2.0, 0.5, 0.7, 0.0], [0.2, 0.1, 0.4, 0.3]], dtype=np.float32)
    # id 3 is past the vocabulary and id 0 is banned: neither is picked however likely
    assert text.greedy(rows, vocab=3, banned=(0,)).tolist() == [1, 2, 2]
    assert [text.sample(row, 0.0, 7, 0, vocab=3, banned=(0,)) for row in rows] == [1, 2, 2]


# ---------------------------------------------------------------------------------------------- bad input

def _copy(model_dir, tmp_path, name="my-llama3"):
    target = tmp_path / name
    shutil.copytree(model_dir / name, target)
    return target


def test_missing_tensor_names_the_tensor(model_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    directory = _copy(model_dir, tmp_path, "qwen-small")
    file = directory / "model.safetensors"
    tensors = load_file(str(file))
    del tensors["model.layers.1.self_attn.k_proj.bias"]
    save_file(tensors, str(file))
    with pytest.raises(HetagentError, match=r"model\.layers\.1\.self_attn\.k_proj\.bias"):
        locate_weights(card("qwen-small"), directory)


def test_wrong_shape_names_file_and_tensor(model_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    directory = _copy(model_dir, tmp_path, "qwen-small")
    file = directory / "model.safetensors"
    tensors = load_file(str(file))
    tensors["model.norm.weight"] = np.ones(3, dtype=np.float32)
    save_file(tensors, str(file))
    with pytest.raises(HetagentError, match=r"model\.safetensors: tensor 'model\.norm\.weight' has shape \[3\]"):
        locate_weights(card("qwen-small"), directory)


def test_broken_index_names_the_missing_shard(model_dir, tmp_path):
    directory = _copy(model_dir, tmp_path)
    index = directory / "model.safetensors.index.json"
    shard = sorted(directory.glob("*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(HetagentError, match=f"{index.name}.*{shard.name}"):
        locate_weights(card("my-llama3"), directory)


def test_unsupported_architecture_is_refused(model_dir, tmp_path):
    directory = _copy(model_dir, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["architectures"] = ["GPTNeoXForCausalLM"]
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(HetagentError, match="config.json: architectures.*GPTNeoXForCausalLM.*not supported"):
        locate_weights(card("my-llama3"), directory)


def test_unsupported_rope_scaling_is_refused(tmp_path, model_dir):
    directory = _copy(model_dir, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config.pop("rope_parameters", None)
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
    (directory / "config.json").write_text(json.dumps(config))
    from hetagent.models.hf_checkpoint import checkpoint_card

    with pytest.raises(HetagentError, match="rope_scaling type 'yarn'"):
        checkpoint_card(directory)


def test_cli_refuses_a_broken_checkpoint_with_exit_2(model_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    from conftest import run_hetagent

    directory = _copy(model_dir, tmp_path / "models", "qwen-small")
    file = directory / "model.safetensors"
    tensors = load_file(str(file))
    tensors["model.layers.0.mlp.up_proj.weight"] = tensors["model.layers.0.mlp.up_proj.weight"][:, :8].copy()
    save_file(tensors, str(file))
    agent = tmp_path / "chat.mlir"
    agent.write_text(""""agent.graph"() ({
  %q = "input.query"() : () -> !agent.text
  %a = "llm.call"(%q) {model = "qwen-small", dtype = "fp32", input_tokens = 64 : i64, output_tokens = 8 : i64}
      : (!agent.text) -> !agent.text
  "agent.return"(%a) : (!agent.text) -> ()
}) {sym_name = "chat"} : () -> ()
""")
    done = run_hetagent("--backends", "cpu", "run", str(agent), "--model-dir", str(tmp_path / "models"), "--json")
    assert done.returncode == 2 and done.stdout == ""
    assert "model.safetensors: tensor 'model.layers.0.mlp.up_proj.weight' has shape [128, 8]" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name", ["qwen-small", "my-llama3"])
def test_compile_takes_a_checkpoint_by_any_name(model_dir, tokenizer, tmp_path, name):
    """`hetagent compile --weights NAME=DIR`; the IREE kernels it builds then match transformers' logits through a
    prefill and 32 decode steps (fp32, 1e-4 relative), run on the local-task driver with the checkpoint's weights."""
    from conftest import run_hetagent
    from hetagent.backend.devices import device_runner, runner_context
    from hetagent.backend.iree import IreeDevice

    agent = tmp_path / "chat.mlir"
    agent.write_text(""""agent.graph"() ({
  %q = "input.query"() : () -> !agent.text
  %a = "llm.call"(%q) {model = "support-bot", dtype = "fp32", input_tokens = 64 : i64, output_tokens = 48 : i64}
      : (!agent.text) -> !agent.text
  "agent.return"(%a) : (!agent.text) -> ()
}) {sym_name = "chat"} : () -> ()
""")
    out = tmp_path / "out"
    done = run_hetagent("--backends", "cpu", "compile", str(agent), "-o", str(out), "--weights",
                        f"support-bot={model_dir / name}", "--json")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"] == {"support-bot": str((model_dir / name).resolve())}
    kernels = {k["function"]["function"]: k for k in manifest["kernels"]}
    biased = "model.layers.0.self_attn.q_proj.bias" in kernels["prefill"]["signature"]["weights"]
    assert biased == (name == "qwen-small")  # the card is the checkpoint's, whatever the agent calls it

    device = IreeDevice(runner_context("host-cpu"), "local-task")
    prefill, decode = (device_runner(device, out / kernels[f]["artifact"]["file"], kernels[f]["symbol"])
                       for f in ("prefill", "decode"))
    weights = load_weights(name, model_dir / name, "fp32")
    args = [weights[n] for n in kernels["prefill"]["signature"]["weights"]]
    hf = _hf_model(model_dir, name)
    prompt = tokenizer.encode(PROMPT).ids
    ids = torch.tensor([prompt])
    with torch.no_grad():
        generated = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=DECODE_STEPS + 1,
                                min_new_tokens=DECODE_STEPS + 1, do_sample=False, eos_token_id=None,
                                pad_token_id=hf.config.eos_token_id)[0]
        expected = hf(generated[None]).logits[0]
    tokens = np.zeros((1, kernels["prefill"]["function"]["prompt"]), dtype=np.int64)
    tokens[0, : len(prompt)] = prompt
    logits, kv = prefill(tokens, np.array([len(prompt)]), *args)
    assert _relative(torch.from_numpy(logits[0]), expected[len(prompt) - 1]) < 1e-4
    for step in range(DECODE_STEPS):
        position = len(prompt) + step
        logits, kv = decode(np.array([int(generated[position])]), np.array([position]), kv, *args)
        assert _relative(torch.from_numpy(logits[0]), expected[position]) < 1e-4, f"decode step {step}"
