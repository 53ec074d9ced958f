"""Intel Gaudi detection: `hl-smi`, else `habana_frameworks` when hl-smi is absent and the package is installed.

habana_frameworks pulls in torch, so it is looked up with `importlib.util.find_spec` (which imports nothing)
and imported only on that fallback path.

Matching rule: the board name decides: HL-325L (OAM) -> gaudi3-oam, HL-338 (PCIe card) -> gaudi3-pcie. Any
other board (Gaudi 2's HL-225, the liquid-cooled HL-335, ...) is left out of `Detection.devices`, never mapped
to a made-up profile; the detection's `hint` names what was left out, and if nothing matched the backend is
unavailable. habana_frameworks reports only the family ("GAUDI3"), not the board, so its devices match no
profile: detection then says so and asks for hl-smi.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from typing import Any

from hetagent.backend import DetectedDevice, Detection

from hetagent_gaudi import profiles

BACKEND = "gaudi"
HINT = "install the Intel Gaudi software stack (habanalabs driver, hl-smi, habana-frameworks)"
HL_SMI = ["hl-smi", "-Q", "index,name,memory.total", "-f", "csv,noheader"]
TIMEOUT_S = 5

_BOARDS = ((re.compile(r"^HL-325"), profiles.GAUDI3_OAM), (re.compile(r"^HL-338\b"), profiles.GAUDI3_PCIE))
_UNITS = {"B": 1, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "KB": 10**3, "MB": 10**6, "GB": 10**9}


def match_gaudi(name: str) -> str | None:
    """The profile name for an hl-smi board name ("HL-325L", "HL-338"), or None when no profile fits."""
    for pattern, profile in _BOARDS:
        if pattern.search(name.strip().upper()):
            return profile.name
    return None


def parse_hl_smi(csv_text: str) -> list[dict[str, Any]]:
    """`hl-smi -Q index,name,memory.total -f csv,noheader` lines ("0, HL-325L, 131072 MiB") -> devices."""
    found = []
    for line in csv_text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 3 or not fields[0].isdigit():
            continue
        size = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]i?B|B)", fields[2], re.I)
        memory = int(float(size.group(1)) * _UNITS[size.group(2).upper()]) if size else None
        found.append({"index": int(fields[0]), "name": fields[1], "memory": memory})
    return found


def _from_habana_frameworks() -> list[dict[str, Any]]:
    import habana_frameworks.torch.hpu as hthpu  # heavy (torch): only on this fallback path

    if not hthpu.is_available():
        return []
    name = hthpu.get_device_name()  # the family ("GAUDI3"), not the board
    return [{"index": i, "name": name, "memory": None} for i in range(hthpu.device_count())]


def detection_from(found: list[dict[str, Any]], source: str) -> Detection:
    """Turn enumerated devices ({index, name, memory}) into a Detection, applying the matching rule."""
    devices, skipped = [], []
    for d in found:
        profile = match_gaudi(d["name"])
        memory = round(d["memory"] / 1e9, 1) if d["memory"] else None
        if profile is None:
            skipped.append(f"#{d['index']} {d['name']}")
            continue
        devices.append(
            DetectedDevice(
                profile=profile, index=d["index"], name=d["name"], memory_gb=memory, details={"source": source}
            )
        )
    if not found:
        return Detection(BACKEND, available=False, reason=f"{source} reports no Gaudi device", hint=HINT)
    no_match_hint = (
        "install hl-smi: habana_frameworks names only the family, not the board (HL-325L OAM / HL-338 PCIe)"
        if source == "habana_frameworks"
        else "add a DeviceProfile for this board to hetagent-gaudi"
    )
    return Detection.from_matches(BACKEND, devices, skipped, what="Gaudi device", no_match_hint=no_match_hint)


def detect() -> Detection:
    """Find Gaudi devices; unavailable (never an exception) without the driver, hl-smi or habana_frameworks."""
    try:
        if shutil.which("hl-smi"):
            run = subprocess.run(HL_SMI, capture_output=True, text=True, timeout=TIMEOUT_S, check=True)
            source, found = "hl-smi", parse_hl_smi(run.stdout)
        elif importlib.util.find_spec("habana_frameworks") is not None:
            source, found = "habana_frameworks", _from_habana_frameworks()
        else:
            return Detection(BACKEND, available=False, reason="no Gaudi driver or hl-smi found", hint=HINT)
    except subprocess.CalledProcessError as exc:
        error = (exc.stderr or exc.stdout or "").strip().splitlines()
        reason = f"hl-smi exited with status {exc.returncode}" + (f": {error[-1]}" if error else "")
        return Detection(BACKEND, available=False, reason=reason, hint=HINT)
    except Exception as exc:  # a hung hl-smi (TimeoutExpired), a broken habana_frameworks/torch install, ...
        return Detection(
            BACKEND, available=False, reason=f"Gaudi detection failed: {type(exc).__name__}: {exc}", hint=HINT
        )
    return detection_from(found, source)
