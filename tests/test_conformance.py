"""The conformance suite (conformance/, `hetagent conformance`): it passes the cpu reference, passes a backend
`hetagent plugins new` generates (pip-installed, discovered), and catches exactly the faults of a deliberately
broken backend (tests/conformance_broken) — the suite can fail.

Runs go through `python -m hetagent conformance` in fresh processes, sharing one compile cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from test_plugin_discovery import _can_build_without_isolation

pytest.importorskip("hetagent_conformance")
pytest.importorskip("torch")

BROKEN_SRC = ROOT / "tests" / "conformance_broken"


@pytest.fixture(scope="session")
def site(tmp_path_factory, cache_dir):
    """A folder with two backends pip-installed into it: one `hetagent plugins new acme` wrote, and the broken one."""
    from hetagent.cli.plugin_template import write_backend

    work = tmp_path_factory.mktemp("backends")
    generated = write_backend("acme", work)
    target = work / "site"
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--quiet", "--target", str(target)]
    if _can_build_without_isolation():
        command.append("--no-build-isolation")
    # pip builds in place; copies keep build/ and *.egg-info out of the source tree
    broken = work / "broken"
    subprocess.run(["cp", "-r", str(BROKEN_SRC), str(broken)], check=True)
    result = subprocess.run([*command, str(generated), str(broken)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    return target


def conformance(site, cache_dir, tmp_path, *args):
    """`hetagent conformance ARGS --report ...` in a fresh process; returns (exit status, report, output)."""
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k not in ("HETAGENT_BACKENDS", "HETAGENT_DISABLE_PLUGIN_AUTOLOAD")}
    env.update(HETAGENT_CACHE_DIR=str(cache_dir), NO_COLOR="1", COLUMNS="250",
               PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-m", "hetagent", "conformance", *args, "--report", str(report)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    output = result.stdout + result.stderr
    assert report.exists(), output
    (backend,) = json.loads(report.read_text())["backends"]
    return result.returncode, backend, output


def outcomes(backend: dict) -> dict[str, str]:
    return {t["id"]: t["outcome"] for t in backend["tests"]}


def test_cpu_reference_passes(site, cache_dir, tmp_path):
    # tier b is the generated backend's test (the same IREE llvm-cpu flow); tier e is tests/test_ray.py's cluster
    code, report, output = conformance(site, cache_dir, tmp_path, "cpu", "--tier", "a,c,d", "--dtype", "fp32")
    assert code == 0, output
    got = outcomes(report)
    assert set(got.values()) <= {"pass", "unsupported"}, output
    assert got["a/test_records_match_their_schemas[cost_models]"] == "unsupported"  # an optional hook
    assert {"c/test_gemm[fp32-matvec]", "c/test_kv_import[fp32]", "d/test_kv_cache_handed_to_another_worker"} <= set(got)
    numeric = [t for t in report["tests"] if t["id"].startswith(("c/test_gemm", "c/test_prefill", "c/test_decode"))]
    assert numeric and all(0 <= t["max_error"] < 1e-4 for t in numeric)
    assert report["device"] == "host-cpu" and report["ops"]["claimed"] >= 9
    assert any(c["kernel"].startswith("tiny_llama_prefill_fp32") for c in report["compiles"])


def test_generated_backend_is_discovered_and_passes_tiers_a_and_b(site, cache_dir, tmp_path):
    code, report, output = conformance(site, cache_dir, tmp_path, "acme", "--tier", "a,b")
    assert code == 0, output
    assert report["version"] == "0.0.1" and report["device"] is None  # planned for, not present
    assert set(outcomes(report).values()) <= {"pass", "unsupported"}, output
    assert outcomes(report)["b/test_artifacts_are_deterministic"] == "pass"


def test_broken_backend_fails_exactly_the_tests_that_check_its_faults(site, cache_dir, tmp_path):
    code, report, output = conformance(site, cache_dir, tmp_path, "broken", "--tier", "a,c", "--dtype", "fp32")
    assert code == 1, output
    got = outcomes(report)
    failed = {test for test, outcome in got.items() if outcome == "fail"}
    assert failed == {
        "a/test_records_match_their_schemas[cost_models]",  # the bad record
        "c/test_gemm[fp32-matvec]",  # the wrong numerics
        "c/test_vector_search",  # the crashing executor
    }, output
    reasons = {t["id"]: t["reason"] for t in report["tests"]}
    assert "sorted by size" in reasons["a/test_records_match_their_schemas[cost_models]"]
    assert "simulated executor crash" in reasons["c/test_vector_search"]
    assert "exceeds the tolerance" in reasons["c/test_gemm[fp32-matvec]"]
    assert got["c/test_gemm[fp32-matmul]"] == "unexpected pass"  # the stale manifest entry is reported
    assert got["c/test_prefill[fp32]"] == "skipped" and "covered by the cpu" in reasons["c/test_prefill[fp32]"]
    assert {o for t, o in got.items() if t not in failed} <= {"pass", "skipped", "unexpected pass", "unsupported"}


def test_command_errors_exit_2(cli, monkeypatch):
    code, _, err = cli("conformance", "cpu", "--tier", "a,z")
    assert code == 2 and "--tier" in err and "choose from" in err
    code, _, err = cli("conformance", "nosuch")
    assert code == 2 and "'nosuch' is not installed" in err
    monkeypatch.setitem(sys.modules, "hetagent_conformance", None)  # as if not installed
    code, _, err = cli("conformance", "cpu")
    assert code == 2 and "pip install hetagent-conformance" in err


def test_plugins_new_refuses_bad_names_and_existing_directories(cli, tmp_path):
    code, _, err = cli("plugins", "new", "Acme", "-o", str(tmp_path))
    assert code == 2 and "backend id 'Acme'" in err
    assert cli("plugins", "new", "acme", "-o", str(tmp_path))[0] == 0
    assert {p.name for p in (tmp_path / "hetagent-acme" / "hetagent_acme").iterdir()} >= {
        "__init__.py", "profiles.py", "detect.py", "lowering.py", "executors.py", "conformance.toml"}
    code, _, err = cli("plugins", "new", "acme", "-o", str(tmp_path))
    assert code == 2 and "already exists" in err


def test_a_test_can_tighten_a_tolerance_but_never_loosen_it():
    from hetagent_conformance.oracle import TOLERANCES, compare, tolerance

    table = TOLERANCES["gemm"]["fp16"]
    assert tolerance("gemm", "fp16", atol=1e-9) == type(table)(1e-9, table.rtol)
    assert tolerance("gemm", "fp16", atol=1.0, rtol=1.0) == table
    assert compare("x", [1.0, 2.0], [1.0, 2.0 + 1e-3], table).ok
    assert not compare("x", [1.0, 2.0], [1.0, 2.0 + 1e-3], tolerance("gemm", "fp16", atol=1e-6, rtol=1e-6)).ok


def test_manifest_globs_take_brackets_literally():
    from hetagent_conformance.subject import Manifest

    manifest = Manifest("test", xfail={"c/test_gemm[fp16-*]": "slow fp16"}, skip={"d/*": "no executors yet"})
    assert manifest.expectation("c/test_gemm[fp16-matvec]") == ("xfail", "c/test_gemm[fp16-*]", "slow fp16")
    assert manifest.expectation("c/test_gemm[fp32-matvec]") is None
    assert manifest.expectation("c/test_gemm[f]") is None  # not a character class
    assert manifest.expectation("d/test_agent_end_to_end")[0] == "skip"
