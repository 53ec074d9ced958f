"""`hetagent serve --model-dir` on Hugging Face checkpoints, driven by the official openai client: the chat
template applied, greedy answers equal to transformers' `generate`, and the OpenAI sampling parameters honoured.

The checkpoints and tokenizer are built here (`hf_fixtures`); the server compiles the model's kernels with IREE
and runs them in its workers, so this is the whole path: config -> card -> kernels -> weights -> tokenizer ->
template -> sampling -> detokenizer.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from hf_fixtures import build_checkpoint, train_tokenizer  # noqa: E402
from test_serve import Server  # noqa: E402

OUTPUT_TOKENS = 48
AGENT = """"agent.graph"() ({
  %q = "input.query"() {tokens = 32 : i64} : () -> !agent.text
  %a = "llm.call"(%q) {model = "MODEL", dtype = "fp32", input_tokens = 64 : i64, output_tokens = OUT : i64,
      name = "answer"} : (!agent.text) -> !agent.text
  "agent.return"(%a) : (!agent.text) -> ()
}) {sym_name = "chat", sla_ms = 120000.0 : f64} : () -> ()
"""
MESSAGES = [{"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "How long should pasta boil?"}]


@pytest.fixture(scope="module", params=["my-llama3", "qwen-small"])
def served(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    build_checkpoint(root / "models", request.param, train_tokenizer())
    agent = root / "chat.mlir"
    agent.write_text(AGENT.replace("MODEL", request.param).replace("OUT", str(OUTPUT_TOKENS)))
    server = Server(str(agent), "--model-dir", str(root / "models"))
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    yield request.param, root / "models" / request.param, client
    assert server.stop() == 0, "".join(server.output)


def _greedy(directory, messages, max_new_tokens):
    """transformers' answer: the chat-templated prompt, greedy generate, special tokens skipped."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    ids = torch.tensor([prompt["input_ids"]])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False)
    new = out[0, ids.shape[1]:].tolist()
    return tokenizer.decode(new, skip_special_tokens=True), ids.shape[1], new, model.generation_config.eos_token_id


def _ask(client, **kwargs):
    return client.chat.completions.create(model="chat", messages=kwargs.pop("messages", MESSAGES), **kwargs)


def test_greedy_answer_equals_transformers_generate(served):
    name, directory, client = served
    expected, prompt_tokens, new, eos = _greedy(directory, MESSAGES, OUTPUT_TOKENS)
    completion = _ask(client, temperature=0)
    choice = completion.choices[0]
    assert choice.message.content == expected
    assert completion.usage.prompt_tokens == prompt_tokens
    assert completion.usage.completion_tokens == len(new)
    ended = new[-1] in (eos if isinstance(eos, list) else [eos])
    assert choice.finish_reason == ("stop" if ended else "length")
    streamed = _ask(client, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected


def test_max_tokens_and_stop_end_the_answer(served):
    name, directory, client = served
    expected, _, _, _ = _greedy(directory, MESSAGES, 6)
    short = _ask(client, temperature=0, max_tokens=6)
    assert short.choices[0].message.content == expected and short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == 6
    full = _ask(client, temperature=0).choices[0].message.content
    stop = full[8:11]
    assert len(stop) == 3
    cut = _ask(client, temperature=0, stop=[stop, "never appears"])
    assert cut.choices[0].message.content == full[: full.find(stop)] and cut.choices[0].finish_reason == "stop"
    streamed = _ask(client, temperature=0, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == full[: full.find(stop)]


def test_temperature_seed_and_top_p(served):
    name, directory, client = served
    greedy = _ask(client, temperature=0).choices[0].message.content
    first = _ask(client, temperature=1.5, seed=11).choices[0].message.content
    assert _ask(client, temperature=1.5, seed=11).choices[0].message.content == first  # reproducible
    assert first != greedy
    assert _ask(client, temperature=1.5, seed=12).choices[0].message.content != first
    # top_p this small keeps only the most likely token: sampling becomes greedy
    assert _ask(client, temperature=1.5, seed=11, top_p=1e-6).choices[0].message.content == greedy


@pytest.mark.parametrize("field, value", [("n", 2), ("logprobs", True), ("temperature", 3.0), ("top_p", 0.0),
                                          ("presence_penalty", 0.5), ("max_tokens", 0)])
def test_unsupported_values_are_refused_naming_the_field(served, field, value):
    _, _, client = served
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(client, **{field: value})
    assert caught.value.body["param"] == field


def test_run_applies_the_template_and_the_sampling_flags(served):
    """`hetagent run --model-dir` on the same checkpoint: the prompt is chat-templated, --max-tokens and --stop
    end the answer (exit 2 for a value out of range)."""
    import json

    from conftest import run_hetagent

    name, directory, _ = served
    agent, models = directory.parent.parent / "chat.mlir", str(directory.parent)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    question = "How long should pasta boil?"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           tokenize=True, return_dict=True)["input_ids"]
    done = run_hetagent("--backends", "cpu", "run", str(agent), "--model-dir", models, "--requests", "1",
                        "--prompt", question, "--max-tokens", "5", "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["requests"]
    assert (row["prompt_tokens"], row["completion_tokens"], row["finish_reason"]) == (len(prompt), 5, "length")
    bad = run_hetagent("--backends", "cpu", "run", str(agent), "--model-dir", models, "--top-p", "0", "--json")
    assert bad.returncode == 2 and "--top-p 0" in bad.stderr and bad.stdout == ""


def test_mistral_answer_equals_transformers_generate(tmp_path):
    """A Mistral checkpoint (bf16 on disk, untied, the template that refuses a system message) through `hetagent
    serve`: the greedy answer is transformers' `generate` on the templated prompt, with its usage and finish."""
    build_checkpoint(tmp_path / "models", "mistral-small", train_tokenizer())
    agent = tmp_path / "chat.mlir"
    agent.write_text(AGENT.replace("MODEL", "mistral-small").replace("OUT", str(OUTPUT_TOKENS)))
    server = Server(str(agent), "--model-dir", str(tmp_path / "models"))
    try:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        messages = [{"role": "user", "content": "How long should pasta boil?"}]
        expected, prompt_tokens, new, eos = _greedy(tmp_path / "models" / "mistral-small", messages, OUTPUT_TOKENS)
        completion = _ask(client, messages=messages, temperature=0)
        assert completion.choices[0].message.content == expected
        assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (prompt_tokens, len(new))
        assert completion.choices[0].finish_reason == ("stop" if new[-1] == eos else "length")
        with pytest.raises(openai.BadRequestError, match="alternate") as refused:  # the template's own error
            _ask(client, messages=MESSAGES, temperature=0)
        assert refused.value.body["param"] == "messages"
    finally:
        assert server.stop() == 0, "".join(server.output)
