"""AMD GPU detection: `amd-smi`, else `rocm-smi`, else the KFD topology in sysfs. No Python SDK is imported.

The first source present is used; a tool that is present but fails makes the backend unavailable with its
error text (no silent fall-through to a source that would describe the GPUs less well).

Matching rule: a gfx942 device is an MI325X or MI300X when its PCI device id or market name says so; when
neither identifies the model (e.g. a name of "N/A"), its memory decides (the profile's capacity within 15 %). Other
models (MI300A, MI308X, other gfx targets) are left out of `Detection.devices`, never mapped to a made-up
profile; the detection's `hint` names what was left out, and if nothing matched the backend is unavailable.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hetagent.backend import DetectedDevice, Detection

from hetagent_rocm import profiles

BACKEND = "rocm"
HINT = "install ROCm (amdgpu driver + amd-smi)"
KFD_NODES = Path("/sys/class/kfd/kfd/topology/nodes")
TIMEOUT_S = 5
MEMORY_TOLERANCE = 0.15

_MODELS = {"MI325X": profiles.MI325X, "MI300X": profiles.MI300X}
# PCI device ids -> model (physical and virtual functions), as amd-smi/rocm-smi/KFD report them.
_DEVICE_IDS = {
    0x74A1: "MI300X",
    0x74A9: "MI300X",
    0x74B5: "MI300X",
    0x74BD: "MI300X",
    0x74A5: "MI325X",
    0x74B9: "MI325X",
    0x74A0: "MI300A",
    0x74A2: "MI308X",
    0x74A8: "MI308X",
    0x74B6: "MI308X",
}
_KNOWN = set(_DEVICE_IDS.values())
_NAMED = re.compile(r"\bMI\d{3}[A-Z]?\b")


def _int(value: Any) -> int | None:
    """ "0x74a1", "29857", 29857 -> int; anything else -> None."""
    try:
        return int(str(value).strip(), 0)
    except (TypeError, ValueError):
        return None


def _bytes(value: Any, unit: str = "B") -> int | None:
    """A memory size as amd-smi/rocm-smi print it: 196592 (in `unit`), "196592 MB", {"value": .., "unit": ..}."""
    if isinstance(value, dict):
        value, unit = value.get("value"), value.get("unit", unit)
    text = str(value).strip()
    match = re.fullmatch(r"([\d.]+)\s*([KMGT]i?B|B)?", text, re.I)
    if not match:
        return None
    scale = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}  # amd-smi's "MB" are MiB
    return int(float(match.group(1)) * scale[(match.group(2) or unit)[0].upper()])


def match_amd(gfx: str | None, memory_bytes: int | None, name: str = "", device_id: int | None = None) -> str | None:
    """The profile name for one AMD GPU, or None when no profile fits (see the module docstring)."""
    if gfx and gfx.lower() != "gfx942":
        return None
    model = _DEVICE_IDS.get(device_id)  # the PCI id is exact; names vary ("MI300X OAM", "MI300 (MCM) OAM AC MBA")
    if model is None:
        named = _NAMED.search(name.upper())
        model = named.group(0) if named and named.group(0) in _KNOWN else None
    if model is None:  # nothing identifies the model: a gfx942 device's memory size decides
        if gfx is None or memory_bytes is None:
            return None
        for profile in _MODELS.values():
            if abs(memory_bytes / 1e9 / profile.memory_gb - 1) <= MEMORY_TOLERANCE:
                return profile.name
        return None
    profile = _MODELS.get(model)
    if profile is None:
        return None
    if memory_bytes is not None and abs(memory_bytes / 1e9 / profile.memory_gb - 1) > MEMORY_TOLERANCE:
        return None  # e.g. a partitioned (CPX/NPS4) device showing a fraction of the HBM
    return profile.name


def parse_amd_smi(text: str) -> list[dict[str, Any]]:
    """`amd-smi static --asic --vram --json`: a list of GPUs (older) or {"gpu_data": [...]} (ROCm 6.4+)."""
    data = json.loads(text)
    gpus = data.get("gpu_data", []) if isinstance(data, dict) else data
    found = []
    for i, gpu in enumerate(gpus):
        asic, vram = gpu.get("asic") or {}, gpu.get("vram") or {}
        found.append(
            {
                "index": _int(gpu.get("gpu")) if _int(gpu.get("gpu")) is not None else i,
                "name": str(asic.get("market_name") or ""),
                "gfx": asic.get("target_graphics_version"),
                "device_id": _int(asic.get("device_id")),
                "memory": _bytes(vram.get("size"), unit="MB"),
            }
        )
    return found


def parse_rocm_smi(text: str) -> list[dict[str, Any]]:
    """`rocm-smi --showproductname --showmeminfo vram --json`: {"card0": {...}, ..., "system": {...}}."""
    found = []
    for key, card in json.loads(text).items():
        match = re.fullmatch(r"card(\d+)", key)
        if not match:
            continue
        found.append(
            {
                "index": int(match.group(1)),
                "name": str(card.get("Card Series") or card.get("Card series") or ""),
                "gfx": card.get("GFX Version"),
                "device_id": _int(card.get("Card Model") or card.get("Device ID")),
                "memory": _bytes(card.get("VRAM Total Memory (B)")),
            }
        )
    return found


def gfx_name(target_version: int) -> str:
    """KFD's gfx_target_version (major·10000 + minor·100 + stepping) -> LLVM's name: 90402 -> "gfx942"."""
    major, minor, step = target_version // 10000, target_version // 100 % 100, target_version % 100
    return f"gfx{major}{minor:x}{step:x}"


def parse_kfd_properties(text: str) -> dict[str, int]:
    """A KFD `properties` file: one "key value" pair a line."""
    props = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if _int(value) is not None:
            props[key] = _int(value)
    return props


def _read_kfd(nodes: Path) -> list[dict[str, Any]]:
    found = []
    for node in sorted(nodes.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1):
        props = parse_kfd_properties((node / "properties").read_text())
        if not props.get("gfx_target_version"):
            continue  # a CPU node
        banks = node / "mem_banks"
        memory = sum(
            parse_kfd_properties((bank / "properties").read_text()).get("size_in_bytes", 0)
            for bank in (banks.iterdir() if banks.is_dir() else ())
        )
        found.append(
            {
                "index": len(found),
                "name": "",  # KFD has no market name; the PCI device id identifies the model
                "gfx": gfx_name(props["gfx_target_version"]),
                "device_id": props.get("device_id"),
                "memory": memory or None,
            }
        )
    return found


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=True).stdout


def detection_from(found: list[dict[str, Any]], source: str) -> Detection:
    """Turn enumerated GPUs ({index, name, gfx, device_id, memory}) into a Detection, applying the matching rule."""
    devices, skipped = [], []
    for d in found:
        profile = match_amd(d["gfx"], d["memory"], d["name"], d["device_id"])
        memory = d["memory"] / 1e9 if d["memory"] else None
        if profile is None:
            device_id = f"0x{d['device_id']:04x}" if d["device_id"] is not None else "?"
            size = f"{memory:.0f} GB" if memory else "? GB"
            skipped.append(f"#{d['index']} {d['name'] or 'AMD GPU'} ({d['gfx'] or '?'}, {device_id}, {size})")
            continue
        details = {"gfx": str(d["gfx"] or ""), "source": source}
        if d["device_id"] is not None:
            details["pci_device_id"] = f"0x{d['device_id']:04x}"
        devices.append(
            DetectedDevice(
                profile=profile,
                index=d["index"],
                name=d["name"] or profile.upper(),
                memory_gb=round(memory, 1) if memory else None,
                details=details,
            )
        )
    if not found:
        return Detection(BACKEND, available=False, reason=f"{source} reports no AMD GPU", hint=HINT)
    return Detection.from_matches(
        BACKEND, devices, skipped, what="AMD GPU", no_match_hint="add a DeviceProfile for this model to hetagent-rocm"
    )


def detect() -> Detection:
    """Find AMD GPUs; unavailable (never an exception) without a driver or tools."""
    try:
        if shutil.which("amd-smi"):
            source, found = "amd-smi", parse_amd_smi(_run(["amd-smi", "static", "--asic", "--vram", "--json"]))
        elif shutil.which("rocm-smi"):
            argv = ["rocm-smi", "--showproductname", "--showmeminfo", "vram", "--json"]
            source, found = "rocm-smi", parse_rocm_smi(_run(argv))
        elif KFD_NODES.is_dir():
            source, found = "KFD sysfs", _read_kfd(KFD_NODES)
        else:
            return Detection(
                BACKEND,
                available=False,
                reason="no ROCm driver or tools found (no /dev/kfd, no amd-smi/rocm-smi)",
                hint=HINT,
            )
    except subprocess.CalledProcessError as exc:
        error = (exc.stderr or exc.stdout or "").strip().splitlines()
        reason = f"{exc.cmd[0]} exited with status {exc.returncode}" + (f": {error[-1]}" if error else "")
        return Detection(BACKEND, available=False, reason=reason, hint=HINT)
    except (OSError, subprocess.SubprocessError, ValueError, AttributeError, TypeError) as exc:
        # a hung tool (TimeoutExpired), unreadable sysfs, output we cannot parse
        return Detection(BACKEND, available=False, reason=f"AMD GPU detection failed: {exc}", hint=HINT)
    return detection_from(found, source)
