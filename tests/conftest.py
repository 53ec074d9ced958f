import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture
def cli(capsys):
    """Run the `hetagent` command in-process: returns (exit status, stdout, stderr)."""
    from hetagent.cli import main

    def run(*argv: str):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def run_hetagent(*argv: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m hetagent` in a fresh process, as a user's shell would."""
    return subprocess.run(
        [sys.executable, "-m", "hetagent", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd or ROOT,
        timeout=120,
    )


# The runtime's fixtures, shared by test_runtime and test_ray: one compile cache for the session, so each kernel
# is built once.

CHAT = """"agent.graph"() ({
  %q = "input.query"() {tokens = 32 : i64} : () -> !agent.text
  %a = "llm.call"(%q) {model = "llama-3-8b", input_tokens = 64 : i64, output_tokens = 24 : i64, name = "answer"}
      : (!agent.text) -> !agent.text
  %h = "tool.invoke"(%q) {tool = "%TOOL%", timeout_ms = 300.0 : f64, name = "lookup"} : (!agent.text) -> !agent.json
  %r = "data.transform"(%q, %a, %h) {fn = "pii_redact", name = "redact"}
      : (!agent.text, !agent.text, !agent.json) -> !agent.text
  "agent.return"(%r) : (!agent.text) -> ()
}) {sym_name = "chat", sla_ms = 60000.0 : f64} : () -> ()
"""


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hetagent-cache")
    previous = os.environ.get("HETAGENT_CACHE_DIR")
    os.environ["HETAGENT_CACHE_DIR"] = str(path)  # spawned workers and CLI runs inherit it
    yield path
    if previous is None:
        os.environ.pop("HETAGENT_CACHE_DIR", None)
    else:
        os.environ["HETAGENT_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def registry():
    from hetagent.backend import Registry

    return Registry.load(["cpu"])


@pytest.fixture(scope="session")
def agent_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("agents")
    files = {}
    for tool in ("calculator", "slow"):
        files[tool] = root / f"chat_{tool}.mlir"
        files[tool].write_text(CHAT.replace("%TOOL%", tool))
    return files
