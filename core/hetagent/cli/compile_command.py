"""`hetagent compile AGENT [--plan PLAN] -o DIR`: per-backend artifacts and a manifest."""

from __future__ import annotations

from pathlib import Path

from hetagent.cli.output import add_json_flag, console, print_json, print_table
from hetagent.errors import HetagentError


def register(commands) -> None:
    p = commands.add_parser(
        "compile",
        help="place, partition and lower an agent: artifacts per backend plus manifest.json",
        description="Decompose, place (a plan, or everything on the host CPU), partition per backend and lower "
        "every model kernel through its backend's pipeline. Artifacts are cached on disk under "
        "$HETAGENT_CACHE_DIR (else $XDG_CACHE_HOME/hetagent, else ~/.cache/hetagent).",
    )
    p.add_argument("agent", help="an agent: .mlir/.mlirbc, path/file.py:NAME or package.module:NAME (an @agent function or a LangGraph graph)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    p.add_argument("--plan", type=Path, help="a plan (JSON, spec/plan-format.md); default: everything on the host CPU")
    p.add_argument("--allow-fallback", action="store_true",
                   help="an op its planned backend cannot run goes to the host device (reported) instead of an error")
    p.add_argument("--target-option", action="append", default=[], metavar="BACKEND.OPTION=VALUE",
                   help="override a lowering target option, e.g. cuda.target=sm_80 (repeatable)")
    p.add_argument("--weights", action="append", default=[], metavar="MODEL=DIR",
                   help="check a Hugging Face safetensors directory against MODEL's card and record it (repeatable)")
    add_json_flag(p)
    p.set_defaults(handler=cmd_compile)


def _pairs(values: list[str], flag: str, shape: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise HetagentError(f"{flag} {value!r}: expected {shape}")
        pairs.append((key, rest))
    return pairs


def _target_options(values: list[str]) -> dict[str, dict[str, str]]:
    options: dict[str, dict[str, str]] = {}
    for key, value in _pairs(values, "--target-option", "BACKEND.OPTION=VALUE, e.g. cuda.target=sm_80"):
        backend, sep, option = key.partition(".")
        if not sep or not option:
            raise HetagentError(f"--target-option {key}={value}: expected BACKEND.OPTION=VALUE, e.g. cuda.target=sm_80")
        options.setdefault(backend, {})[option] = value
    return options


def cmd_compile(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hetagent.plan import Plan
    from hetagent.compiler.driver import compile_agent
    from hetagent.backend.registry import Registry, requested_backends

    target_options = _target_options(args.target_option)
    weights = dict(_pairs(args.weights, "--weights", "MODEL=DIR"))
    registry = Registry.load(requested_backends(args.backends))
    plan = Plan.load(args.plan) if args.plan else None
    columns = (TextColumn("[bold]compile[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=True, disable=args.json) as bar:
        task = bar.add_task("placing", total=None)

        def progress(description: str, advance: int, total: int) -> None:
            bar.update(task, description=description, advance=advance, total=total)

        manifest = compile_agent(
            args.agent, args.output, registry=registry, plan=plan, target_options=target_options,
            weights=weights, allow_fallback=args.allow_fallback, progress=progress,
        ).manifest
    if args.json:
        print_json(manifest)
        return 0
    print_table(
        f"{args.agent}: ops",
        ["op", "id", "backend", "device", "kernel"],
        [(o["op"], o["id"], o["backend"], o["device"], o["kernel"] or o.get("no_kernel", "-")) for o in manifest["ops"]],
    )
    print_table(
        f"artifacts in {args.output}",
        ["kernel", "device", "file", "KiB", "cache", "target options"],
        [
            (k["symbol"], k["device"], k["artifact"]["file"], k["artifact"]["bytes"] / 1024, k["cache"],
             " ".join(f"{a}={b}" for a, b in k["pipeline"]["target_options"].items()) or "-")
            for k in manifest["kernels"]
        ],
    )
    console.print(f"wrote {args.output / 'manifest.json'}", highlight=False, soft_wrap=True)
    return 0
