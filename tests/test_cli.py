"""The `hetagent` command: listings, IR commands, and bad input (exit 2, one clear message, no traceback)."""

import json
import shutil

import pytest

from conftest import EXAMPLES, run_hetagent

BACKENDS = {"cpu", "cuda", "rocm", "gaudi"}

# Dense vendor figures (DESIGN §5): device -> {dtype: TFLOPS}
DENSE = {
    "h100-sxm": {"bf16": 989, "fp8": 1979},
    "h200-sxm": {"bf16": 989, "fp8": 1979},
    "b200": {"bf16": 2250, "fp8": 4500},
    "a100-80gb-sxm": {"bf16": 312},
    "a40": {"bf16": 149.7},
    "l40s": {"bf16": 362, "fp8": 733},
    "l4": {"bf16": 121, "fp8": 242},
    "mi300x": {"bf16": 1307, "fp8": 2615},
    "mi325x": {"bf16": 1307, "fp8": 2615},
    "gaudi3-oam": {"bf16": 1835, "fp8": 1835},
    "gaudi3-pcie": {"bf16": 1678},
}
CPUS = {"xeon-6980p", "epyc-9654", "host-cpu"}


def test_plugins_lists_the_four_backends(cli):
    code, out, err = cli("--backends", "cpu,cuda,rocm,gaudi", "plugins", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == BACKENDS
    for row in rows.values():
        assert row["status"] == "ok" and row["plugin_api"] == "2.2" and row["version"]


def test_plugins_table(cli):
    code, out, _ = cli("--backends", "cpu,cuda", "plugins")
    assert code == 0 and "cpu" in out and "cuda" in out and "plugin API" in out


def test_devices_lists_every_profile_with_dense_figures(cli):
    code, out, err = cli("--backends", "cpu,cuda,rocm,gaudi", "devices", "--json")
    assert code == 0, err
    devices = {d["name"]: d for d in json.loads(out)}
    assert set(DENSE) | CPUS <= set(devices)
    for name, figures in DENSE.items():
        for dtype, tflops in figures.items():
            assert devices[name]["peak_tflops"][dtype] == pytest.approx(tflops, abs=0.5), (name, dtype)
    assert devices["host-cpu"]["present"] == 1
    for device in devices.values():
        assert device["sources"], device["name"]


def test_devices_filters_by_vendor_and_prints_a_table(cli):
    code, out, _ = cli("--backends", "cpu,cuda,rocm,gaudi", "devices", "--vendor", "amd", "--kind", "gpu", "--json")
    assert code == 0 and {d["name"] for d in json.loads(out)} == {"mi300x", "mi325x"}
    code, out, _ = cli("--backends", "cpu,cuda,rocm,gaudi", "devices", "--vendor", "amd", "--json")
    assert code == 0 and {"mi300x", "epyc-9654"} <= {d["name"] for d in json.loads(out)}
    code, out, _ = cli("--backends", "cpu,cuda", "devices")
    assert code == 0 and "h100-sxm" in out and "989" in out
    code, _, err = cli("--backends", "cpu", "devices", "--vendor", "nvida")
    assert code == 2 and "no device of that vendor" in err


def test_doctor_says_why_a_backend_is_unavailable(cli):
    code, out, err = cli("--backends", "cpu,cuda,rocm,gaudi", "doctor", "--json")
    assert code == 0, err
    report = json.loads(out)
    by_name = {b["name"]: b for b in report["backends"]}
    assert by_name["cpu"]["available"] and by_name["cpu"]["devices"][0]["profile"] == "host-cpu"
    if not shutil.which("nvidia-smi"):
        assert not by_name["cuda"]["available"] and by_name["cuda"]["reason"] and by_name["cuda"]["hint"]
    code, out, _ = cli("--backends", "cpu,cuda,rocm,gaudi", "doctor")
    assert code == 0 and "to fix" in out


def test_ir_verify_and_decompose_examples(cli, tmp_path):
    for path in EXAMPLES.glob("*.mlir"):
        code, out, err = cli("ir", "verify", str(path))
        assert code == 0 and out.startswith("ok"), err
    code, out, _ = cli("ir", "decompose", str(EXAMPLES / "voice_agent.mlir"))
    assert code == 0 and '"llm.prefill"' in out and '"llm.call"' not in out
    target = tmp_path / "voice.mlirbc"
    code, _, _ = cli("ir", "decompose", str(EXAMPLES / "voice_agent.mlir"), "-o", str(target))
    assert code == 0
    code, out, _ = cli("ir", "verify", str(target), "--json")
    assert code == 0 and json.loads(out)["op_counts"]["llm.decode"] == 2


BAD = {
    "malformed": ('"agent.graph"() ({\n  %a = "llm.call"(%q {model = "m"} : (!agent.text) -> !agent.text\n}) : () -> ()\n',
                  "malformed MLIR"),
    "unknown-op": ('"agent.graph"() ({\n  %q = "input.qeury"() : () -> !agent.text\n  "agent.return"(%q) : (!agent.text) -> ()\n}) {sym_name = "g"} : () -> ()\n',
                   "did you mean 'input.query'"),
    "unknown-attr": ('"agent.graph"() ({\n  %q = "input.query"() {tokenz = 3 : i64} : () -> !agent.text\n  "agent.return"(%q) : (!agent.text) -> ()\n}) {sym_name = "g"} : () -> ()\n',
                     "unknown attribute 'tokenz'"),
    "missing-attr": ('"agent.graph"() ({\n  %q = "input.query"() : () -> !agent.text\n  %a = "llm.call"(%q) : (!agent.text) -> !agent.text\n  "agent.return"(%a) : (!agent.text) -> ()\n}) {sym_name = "g"} : () -> ()\n',
                     "missing required attribute 'model'"),
    "operand-type": ('"agent.graph"() ({\n  %q = "input.query"() : () -> !agent.text\n  %a = "audio.tts"(%q) {model = "t"} : (!agent.text) -> !agent.audio\n  %t = "audio.stt"(%q) {model = "w"} : (!agent.text) -> !agent.text\n  "agent.return"(%a) : (!agent.audio) -> ()\n}) {sym_name = "g"} : () -> ()\n',
                     "expected !agent.audio"),
    "cycle": ('"agent.graph"() ({\n  %a = "llm.call"(%b) {model = "m"} : (!agent.json) -> !agent.text\n  %b = "tool.invoke"(%a) {tool = "s"} : (!agent.text) -> !agent.json\n  "agent.return"(%a) : (!agent.text) -> ()\n}) {sym_name = "g"} : () -> ()\n',
              "dependency cycle"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("action", ["verify", "decompose"])
def test_bad_modules_exit_2_with_a_clear_message(cli, tmp_path, case, action):
    text, expected = BAD[case]
    path = tmp_path / f"{case}.mlir"
    path.write_text(text)
    code, out, err = cli("ir", action, str(path))
    assert code == 2 and out == ""
    assert err.startswith("error:") and expected in err and str(path) in err
    assert "Traceback" not in err


def test_missing_file_and_unknown_backend_exit_2(cli):
    code, _, err = cli("ir", "verify", "no/such/agent.mlir")
    assert code == 2 and "no such file" in err
    code, _, err = cli("--backends", "cpu,nosuch", "plugins")
    assert code == 2 and "backend 'nosuch' is not installed" in err and "cpu" in err
    code, _, err = cli("--backends", "cpu,cpu", "plugins")
    assert code == 2 and "named twice" in err


def test_usage_errors_exit_2(cli):
    code, _, err = cli("ir", "frobnicate")
    assert code == 2 and "invalid choice" in err


def test_the_installed_command_runs_in_a_fresh_process():
    result = run_hetagent("ir", "verify", str(EXAMPLES / "voice_agent.mlir"))
    assert result.returncode == 0 and "voice_agent" in result.stdout
    result = run_hetagent("ir", "verify", "nope.mlir")
    assert result.returncode == 2 and "Traceback" not in result.stderr
