"""End-to-end backend discovery: the dummy backend (tests/dummy_backend) is really `pip install`ed into a
folder, and the `hetagent` command finds it through its entry points in a fresh process.

The dummy distribution declares two backends: `dummy` (one fake NPU) and `dummy-broken` (raises at import).
Assertions never depend on which real backends (cpu, cuda, ...) happen to be installed, except where noted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

DUMMY_SRC = Path(__file__).resolve().parent / "dummy_backend"
ENV_VARS = ("HETAGENT_BACKENDS", "HETAGENT_DISABLE_PLUGIN_AUTOLOAD")


def _can_build_without_isolation() -> bool:
    """Whether this interpreter can build the dummy's wheel itself (`pip install --no-build-isolation`).

    That takes setuptools >= 61 (reads [project]) and a `bdist_wheel` command: setuptools' own from 70.1 on,
    else the `wheel` package's. A venv made by `python -m venv` on Python 3.11 has setuptools 65.5 and no
    `wheel`; there pip builds in an isolated environment instead, fetching setuptools from the package index.
    """
    try:
        major = int(metadata.version("setuptools").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return major >= 61 and any(
        ep.name == "bdist_wheel" for ep in metadata.entry_points(group="distutils.commands")
    )


@pytest.fixture(scope="session")
def dummy_site(tmp_path_factory) -> Path:
    """A folder holding the installed dummy backend (its modules and its .dist-info)."""
    work = tmp_path_factory.mktemp("dummy-backend")
    src = work / "src"  # build from a copy, so the build leaves no build/ or *.egg-info in the source tree
    shutil.copytree(DUMMY_SRC, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--quiet", "--target", str(target)]
    if _can_build_without_isolation():
        command.append("--no-build-isolation")
    result = subprocess.run([*command, str(src)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"pip install of the dummy backend failed:\n{result.stdout}\n{result.stderr}"
    assert list(target.glob("hetagent_dummy-*.dist-info")), sorted(p.name for p in target.iterdir())
    return target


@pytest.fixture(scope="session")
def hetagent(dummy_site, tmp_path_factory):
    """Run `python -m hetagent.cli ARGS` with the dummy on PYTHONPATH; returns the CompletedProcess."""
    cwd = tmp_path_factory.mktemp("cwd")

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        environ = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(dummy_site), os.environ.get("PYTHONPATH")]))
        environ.update(NO_COLOR="1", TERM="dumb", COLUMNS="200")
        environ.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "hetagent.cli", *args],
            capture_output=True,
            text=True,
            env=environ,
            cwd=cwd,
            timeout=60,
        )

    return run


def _plugins(result: subprocess.CompletedProcess) -> dict[str, dict]:
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def _assert_one_clean_paragraph(stderr: str) -> None:
    text = stderr.strip()
    assert text.startswith("error:"), stderr
    assert "Traceback" not in stderr
    assert "\n\n" not in text, stderr
    assert text.count("error:") == 1, stderr


def test_installed_dummy_is_listed_and_the_broken_one_is_set_aside(hetagent):
    result = hetagent("plugins", "--json")
    rows = _plugins(result)
    dummy = rows["dummy"]
    assert dummy["status"] == "ok" and dummy["reason"] == ""
    assert dummy["version"] == "0.0.1"
    assert dummy["plugin_api"] == "2.0"
    assert dummy["vendor"] == "dummy"
    assert dummy["origin"].startswith("hetagent-dummy 0.0.1")
    broken = rows["dummy-broken"]
    assert broken["status"] == "failed"
    assert "simulated driver crash" in broken["reason"]
    assert broken["version"] is None
    # the broken backend is a warning on stderr, not a traceback, and the command still succeeds
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any("'dummy-broken'" in line and "simulated driver crash" in line for line in warnings), result.stderr
    assert "Traceback" not in result.stderr


def test_plugins_table_shows_both(hetagent):
    result = hetagent("plugins")
    assert result.returncode == 0, result.stderr
    assert "dummy-broken" in result.stdout and "failed" in result.stdout
    assert "simulated driver crash" in result.stdout


def test_devices_of_the_dummy_only(hetagent):
    result = hetagent("--backends", "dummy", "devices", "--json")
    assert result.returncode == 0, result.stderr
    devices = json.loads(result.stdout)
    assert [d["name"] for d in devices] == ["dummy-npu"]
    npu = devices[0]
    assert npu["kind"] == "accelerator" and npu["backend"] == "dummy"
    assert npu["peak_tflops"]["bf16"] == 100.0
    assert npu["present"] == 1  # detected by hetagent_detect()
    assert "warning:" not in result.stderr  # dummy-broken was not even imported


def test_doctor_reports_the_detected_dummy(hetagent):
    result = hetagent("--backends", "dummy", "doctor", "--json")
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)["backends"]
    assert entry["name"] == "dummy" and entry["available"] is True
    assert [d["profile"] for d in entry["devices"]] == ["dummy-npu"]


def test_explicitly_requested_broken_backend_exits_2_with_one_paragraph(hetagent):
    result = hetagent("--backends", "dummy-broken", "plugins")
    assert result.returncode == 2
    _assert_one_clean_paragraph(result.stderr)
    assert "'dummy-broken'" in result.stderr
    assert "simulated driver crash" in result.stderr
    assert "requested explicitly" in result.stderr
    assert result.stdout == ""


def test_unknown_backend_exits_2_naming_the_installed_ones(hetagent):
    result = hetagent("--backends", "nosuch", "plugins")
    assert result.returncode == 2
    _assert_one_clean_paragraph(result.stderr)
    assert "'nosuch' is not installed" in result.stderr
    installed = result.stderr.split("installed backends:", 1)[1].split(".", 1)[0]
    assert {"dummy", "dummy-broken"} <= {n.strip() for n in installed.split(",")}


def test_env_var_names_backends_and_cli_flag_wins(hetagent):
    rows = _plugins(hetagent("plugins", "--json", env={"HETAGENT_BACKENDS": "dummy"}))
    assert list(rows) == ["dummy"]
    result = hetagent("--backends", "dummy", "plugins", "--json", env={"HETAGENT_BACKENDS": "nosuch"})
    assert list(_plugins(result)) == ["dummy"]


def test_disabled_autoload_loads_only_what_is_named(hetagent):
    off = {"HETAGENT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    rows = _plugins(hetagent("plugins", "--json", env=off))
    assert "dummy" not in rows and "dummy-broken" not in rows
    assert "warning:" not in hetagent("plugins", env=off).stderr  # nothing was imported, so nothing broke
    rows = _plugins(hetagent("plugins", "--json", env={**off, "HETAGENT_BACKENDS": "dummy"}))
    assert list(rows) == ["dummy"] and rows["dummy"]["status"] == "ok"
    rows = _plugins(hetagent("--backends", "dummy", "plugins", "--json", env=off))
    assert list(rows) == ["dummy"]


def test_backends_env_var_orders_backends(hetagent):
    if "cpu" not in {ep.name for ep in metadata.entry_points(group="hetagent.backends")}:
        pytest.skip("needs the real cpu backend (hetagent-cpu) installed")
    for order in (["dummy", "cpu"], ["cpu", "dummy"]):
        rows = _plugins(hetagent("plugins", "--json", env={"HETAGENT_BACKENDS": ",".join(order)}))
        assert list(rows) == order


def test_duplicate_backend_names_are_rejected(hetagent):
    result = hetagent("--backends", "dummy,dummy", "plugins")
    assert result.returncode == 2
    _assert_one_clean_paragraph(result.stderr)
    assert "named twice" in result.stderr
