"""`hetagent plugins`, `hetagent doctor`, `hetagent devices`: what backends and devices this install knows."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

from hetagent.cli.output import add_json_flag, print_json, print_table
from hetagent.errors import HetagentError


def register(commands) -> None:
    p = commands.add_parser("plugins", help="list backends: version, plugin-API version, status; `plugins new NAME`")
    add_json_flag(p)
    p.set_defaults(handler=cmd_plugins)
    new = p.add_subparsers(dest="plugins_command", metavar="new").add_parser(
        "new", help="write a minimal out-of-tree backend package hetagent-NAME to start from",
        description="Write hetagent-NAME/: profiles, detection, lowering, executors, the entry point, a conformance "
        "manifest and a test; it installs, is discovered and passes conformance tiers a and b as generated.")
    new.add_argument("name", help="the backend id (lowercase: acme)")
    new.add_argument("-o", "--output", type=Path, default=Path("."), help="parent directory (default: .)")
    new.set_defaults(handler=cmd_plugins_new)

    p = commands.add_parser("doctor", help="probe every backend and say why one is unavailable")
    add_json_flag(p)
    p.set_defaults(handler=cmd_doctor)

    p = commands.add_parser("devices", help="the device catalogue: dense peak figures, memory, bandwidth, links")
    p.add_argument("--vendor", help="only devices of this vendor (nvidia, amd, intel, ...)")
    p.add_argument("--kind", choices=("gpu", "accelerator", "cpu"), help="only devices of this kind")
    add_json_flag(p)
    p.set_defaults(handler=cmd_devices)


def load_registry(args):
    from hetagent.backend.registry import Registry, requested_backends

    return Registry.load(requested_backends(args.backends))


def cmd_plugins(args) -> int:
    registry = load_registry(args)
    registry.device_profiles()  # checks every backend's records, so the status below is the real one
    rows = []
    for backend in registry.backends:
        info = backend.info
        rows.append(
            {
                "name": backend.name,
                "version": info.version if info else None,
                "plugin_api": info.plugin_api if info else None,
                "vendor": info.vendor if info else None,
                "status": backend.status,
                "reason": backend.reason,
                "origin": backend.origin,
            }
        )
    if args.json:
        print_json(rows)
    else:
        print_table(
            "hetagent backends",
            ["backend", "version", "plugin API", "vendor", "status", "from"],
            [
                [r["name"], r["version"], r["plugin_api"], r["vendor"],
                 r["status"] + (f": {r['reason']}" if r["reason"] else ""), r["origin"]]
                for r in rows
            ],
        )
    return 0


def cmd_plugins_new(args) -> int:
    from hetagent.cli.output import console
    from hetagent.cli.plugin_template import write_backend

    if not args.output.is_dir():
        raise HetagentError(f"-o {args.output}: not a directory")
    root = write_backend(args.name, args.output)
    console.print(f"wrote {root}: pip install -e {root} && hetagent conformance {args.name}", highlight=False,
                  soft_wrap=True)
    return 0


def cmd_doctor(args) -> int:
    from hetagent import __version__

    registry = load_registry(args)
    detections = {d.backend: d for d in registry.detect()}
    report = {
        "hetagent": __version__,
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in ("iree-base-compiler", "iree-base-runtime", "pluggy", "numpy", "rich", "torch")},
        "backends": [],
    }
    for backend in registry.backends:
        detection = detections.get(backend.name)
        entry = {"name": backend.name, "status": backend.status, "reason": backend.reason}
        if detection is not None:
            entry.update(
                available=detection.available,
                reason=detection.reason or backend.reason,
                hint=detection.hint,
                devices=[
                    {"profile": d.profile, "index": d.index, "name": d.name, "memory_gb": d.memory_gb, **d.details}
                    for d in detection.devices
                ],
            )
        elif backend.ok:
            entry.update(available=False, reason="the backend does not implement hetagent_detect()", hint="", devices=[])
        else:
            entry.update(available=False, hint=f"reinstall or upgrade hetagent-{backend.name}", devices=[])
        report["backends"].append(entry)
    if args.json:
        print_json(report)
        return 0
    packages = ", ".join(f"{k} {v or 'not installed'}" for k, v in report["packages"].items())
    print_table("hetagent doctor", ["", ""], [["hetagent", report["hetagent"]], ["python", report["python"]], ["packages", packages]])
    rows = []
    for entry in report["backends"]:
        if entry.get("available"):
            state = "available: " + "; ".join(f"{d['name']} -> {d['profile']}" for d in entry["devices"])
        else:
            state = f"unavailable: {entry['reason']}"
        rows.append([entry["name"], entry["status"], state, entry.get("hint") or ""])
    print_table("backends on this node", ["backend", "plugin", "devices", "to fix"], rows)
    return 0


def cmd_devices(args) -> int:
    registry = load_registry(args)
    profiles = registry.device_profiles()
    if args.vendor:
        vendors = sorted({p.vendor for p in profiles})
        profiles = [p for p in profiles if p.vendor == args.vendor.lower()]
        if not profiles:
            raise HetagentError(f"--vendor {args.vendor}: no device of that vendor; vendors: {', '.join(vendors)}")
    if args.kind:
        profiles = [p for p in profiles if p.kind == args.kind]
    present: dict[str, int] = {}
    for detection in registry.detect():
        for device in detection.devices:
            present[device.profile] = present.get(device.profile, 0) + 1
    from hetagent.cost import RooflineModel

    model = RooflineModel(registry.device_profiles(), tables=registry.cost_models())
    if args.json:
        print_json([dict(p.to_dict(), present=present.get(p.name, 0), efficiency=model.efficiency_source(p.name))
                    for p in profiles])
        return 0
    print_table(
        "device catalogue (dense peak TFLOPS)",
        ["device", "vendor", "backend", "bf16", "fp8", "fp32", "mem GB", "GB/s", "TDP W", "scale-up GB/s", "here",
         "efficiency from"],
        [
            [
                p.name, p.vendor, p.backend, p.peak_tflops.get("bf16"), p.peak_tflops.get("fp8"),
                p.peak_tflops.get("fp32"), p.memory_gb, p.memory_bandwidth_gbs, p.tdp_w,
                p.scale_up.gbps if p.scale_up else None, present.get(p.name) or "", model.basis(p.name),
            ]
            for p in profiles
        ],
    )
    return 0


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


