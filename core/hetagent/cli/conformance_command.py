"""`hetagent conformance BACKEND [--report FILE] [--tier LIST] [--dtype LIST]`: the conformance suite.

The suite is its own distribution, `hetagent-conformance` (a pytest plugin); it is imported only here, when the
command runs, so the core neither depends on it nor on pytest.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hetagent.cli.output import console, print_table
from hetagent.errors import HetagentError

TIERS = "abcde"
DTYPES = ("fp32", "fp16")


def register(commands) -> None:
    p = commands.add_parser(
        "conformance",
        help="check a backend against the contract and the CPU reference (tiers a-e), with a JSON report",
        description="Run the conformance suite (pip install hetagent-conformance) against BACKEND: (a) plugin "
        "contract, (b) lowering, (c) operator numerics vs the float64 reference, (d) agents end to end, "
        "(e) distributed. Outcomes: pass, fail, unsupported, skipped (no device here), expected failure (the "
        "backend's conformance.toml), unexpected pass. Exit status 1 if any test fails. See spec/conformance.md.",
    )
    p.add_argument("backend", help="the backend id (an installed hetagent.backends entry point)")
    p.add_argument("--report", type=Path, metavar="FILE", help="write the JSON report here")
    p.add_argument("--tier", default=",".join(TIERS), metavar="LIST", help="tiers to run, e.g. a,b (default: all)")
    p.add_argument("--dtype", default=",".join(DTYPES), metavar="LIST",
                   help=f"dtypes numeric tests expand over (default: {','.join(DTYPES)})")
    p.set_defaults(handler=cmd_conformance)


def _choices(value: str, valid, flag: str) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in valid]
    if not chosen or unknown:
        raise HetagentError(f"{flag} {value!r}: choose from {', '.join(valid)} (comma-separated)")
    return chosen


def cmd_conformance(args) -> int:
    from hetagent.backend.registry import Registry

    tiers = _choices(args.tier, TIERS, "--tier")
    dtypes = _choices(args.dtype, DTYPES, "--dtype")
    try:
        import hetagent_conformance
    except ImportError as exc:
        raise HetagentError(f"the conformance suite is not installed ({exc}); install it with "
                            "`pip install hetagent-conformance` (in this checkout: `pip install -e ./conformance`)") from None
    Registry.load([args.backend])  # an unknown or unloadable backend: the usual error, before pytest starts
    if args.report and args.report.parent and not args.report.parent.is_dir():
        raise HetagentError(f"--report {args.report}: directory {args.report.parent} does not exist")
    with tempfile.TemporaryDirectory() as scratch:
        report_path = args.report or Path(scratch) / "report.json"
        status = hetagent_conformance.run(args.backend, report=report_path, tiers=tiers, dtypes=dtypes)
        if not report_path.exists():
            raise HetagentError(f"the conformance suite stopped before reporting (pytest exit status {status})")
        report = json.loads(report_path.read_text())
    (result,) = report["backends"]
    _print(result, report)
    if args.report:
        console.print(f"wrote {args.report}", highlight=False, soft_wrap=True)
    return 1 if result["summary"].get("fail") else 0


def _print(result: dict, report: dict) -> None:
    print_table(
        f"conformance of {result['backend']} {result.get('version') or ''} on {result.get('device') or 'no device'}",
        ["test", "outcome", "max error", "s", "reason"],
        [(t["id"], t["outcome"], f"{t['max_error']:.2g}" if "max_error" in t else "", t["duration_s"], t["reason"])
         for t in result["tests"]],
    )
    ops = result.get("ops", {})
    summary = ", ".join(f"{n} {k}" for k, n in sorted(result["summary"].items()))
    console.print(f"{summary}; ops claimed {ops.get('claimed', 0)}, left to other backends {ops.get('unclaimed', 0)}; "
                  f"{report['wall_s']:.1f} s", highlight=False, soft_wrap=True)
    for entry in result.get("stale_manifest_entries", []):
        console.print(f"stale manifest entry (matches no test): {entry}", highlight=False, soft_wrap=True)
