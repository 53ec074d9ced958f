"""The `hetagent` command. Bad input exits with status 2 and one clear paragraph, never a traceback."""

from __future__ import annotations

import argparse
import sys
import warnings

from hetagent import __version__
from hetagent.errors import HetagentError


# Each module adds its subcommands through `register(commands)`; imported only when the parser is built.
COMMAND_MODULES = ("backends", "ir_commands", "cost_commands", "compile_command", "run_command", "plan_commands",
                   "serve_command", "conformance_command", "import_command")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="hetagent",
        description="Plan, compile and run AI-agent workloads on heterogeneous hardware.",
    )
    parser.add_argument("--version", action="version", version=f"hetagent {__version__}")
    parser.add_argument(
        "--backends",
        metavar="LIST",
        help="comma-separated backend ids to load, in priority order (default: $HETAGENT_BACKENDS, else all installed)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"hetagent.cli.{name}").register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from hetagent.cli.output import console_err, show_warning

    warnings.showwarning = show_warning
    try:
        return args.handler(args) or 0
    except HetagentError as exc:
        from rich.markup import escape  # messages quote user input and commands ("hetagent[torch]"): not markup

        console_err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console_err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
