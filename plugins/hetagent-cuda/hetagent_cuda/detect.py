"""NVIDIA GPU detection through the CUDA driver API (cuda-python), imported lazily.

Matching rule: a device gets a profile when its driver name matches one of `_MODELS` and its total memory is
within 15 % of the profile's (the driver counts GiB-sized HBM in bytes, so an "80 GB" part reports ~85e9).
Anything else (a PCIe/NVL variant, a 40 GB A100, a model we have no profile for) is left out of
`Detection.devices`, never mapped to a made-up profile; the detection's `hint` names what was left out. If
no device matches at all, the backend is unavailable and `reason` lists what the driver reported.
"""

from __future__ import annotations

import re
from typing import Any

from hetagent.backend import DetectedDevice, Detection

from hetagent_cuda import profiles

BACKEND = "cuda"
INSTALL_HINT = "pip install 'hetagent-cuda[driver]'"
DRIVER_HINT = "install the NVIDIA driver (libcuda.so.1)"
MEMORY_TOLERANCE = 0.15

# (pattern on the driver's device name, profile). Order matters: the first match wins.
_MODELS = (
    (re.compile(r"\bH100\b(?!.*\b(?:PCIe|NVL)\b)", re.I), profiles.H100_SXM),  # SXM5 reports "H100 80GB HBM3"
    (re.compile(r"\bH200\b(?!.*\bNVL\b)", re.I), profiles.H200_SXM),
    (re.compile(r"\bA100\b(?!.*\bPCIe\b)", re.I), profiles.A100_80GB_SXM),  # 40 GB parts fail the memory check
    (re.compile(r"\bB200\b", re.I), profiles.B200),  # \b keeps GB200 out
    (re.compile(r"\bL40S\b", re.I), profiles.L40S),
    (re.compile(r"\bL4\b", re.I), profiles.L4),
    (re.compile(r"\bA40\b", re.I), profiles.A40),
)


def match_nvidia(name: str, memory_bytes: int | None) -> str | None:
    """The profile name for a driver device name and total memory, or None when no profile fits."""
    for pattern, profile in _MODELS:
        if pattern.search(name):
            if memory_bytes is None:
                return profile.name
            ratio = memory_bytes / 1e9 / profile.memory_gb
            return profile.name if abs(ratio - 1) <= MEMORY_TOLERANCE else None
    return None


def _driver() -> Any:
    """The cuda-python driver module: `cuda.bindings.driver` (cuda-python >= 12.6), else the older `cuda.cuda`."""
    try:
        from cuda.bindings import driver
    except ImportError:
        from cuda import cuda as driver  # raises ImportError when cuda-python is absent altogether
    return driver


def _check(driver: Any, result: tuple) -> Any:
    """cuda-python returns (CUresult, value...); raise with the error's name unless it is CUDA_SUCCESS."""
    err, *values = result
    if err != driver.CUresult.CUDA_SUCCESS:
        raise RuntimeError(getattr(err, "name", str(err)))
    return values[0] if len(values) == 1 else values


def _enumerate(driver: Any) -> list[dict[str, Any]]:
    attr = driver.CUdevice_attribute
    found = []
    for index in range(_check(driver, driver.cuDeviceGetCount())):
        dev = _check(driver, driver.cuDeviceGet(index))
        raw = _check(driver, driver.cuDeviceGetName(256, dev))
        name = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).split("\x00", 1)[0].strip()
        major = _check(driver, driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev))
        minor = _check(driver, driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev))
        memory = int(_check(driver, driver.cuDeviceTotalMem(dev)))
        found.append({"index": index, "name": name, "memory": memory, "cc": f"{major}.{minor}",
                      "uuid": _uuid(_check(driver, driver.cuDeviceGetUuid(dev)))})
    return found


def _uuid(value: Any) -> str:
    """A CUuuid as NVML and nvidia-smi print it (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx): how a worker finds its
    GPU among those IREE's cuda driver enumerates, whatever CUDA_VISIBLE_DEVICES renumbers."""
    raw = bytes(value.bytes) if hasattr(value, "bytes") else bytes(value)
    h = raw.hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def detection_from(found: list[dict[str, Any]]) -> Detection:
    """Turn enumerated devices ({index, name, memory, cc, uuid}) into a Detection, applying the matching rule."""
    devices, skipped = [], []
    for d in found:
        profile = match_nvidia(d["name"], d["memory"])
        label = f"#{d['index']} {d['name']} ({d['memory'] / 1e9:.0f} GB, sm_{d['cc'].replace('.', '')})"
        if profile is None:
            skipped.append(label)
            continue
        devices.append(
            DetectedDevice(
                profile=profile,
                index=d["index"],
                name=d["name"],
                memory_gb=round(d["memory"] / 1e9, 1),
                details={"compute_capability": d["cc"], **({"uuid": d["uuid"]} if d.get("uuid") else {})},
            )
        )
    if not found:
        return Detection(BACKEND, available=False, reason="the CUDA driver reports no devices", hint=DRIVER_HINT)
    return Detection.from_matches(
        BACKEND, devices, skipped, what="CUDA device", no_match_hint="add a DeviceProfile for this model to hetagent-cuda"
    )


def detect() -> Detection:
    """Enumerate CUDA devices; unavailable (never an exception) without cuda-python, a driver or a GPU."""
    try:
        driver = _driver()
    except ImportError:
        return Detection(BACKEND, available=False, reason="cuda-python is not installed", hint=INSTALL_HINT)
    try:
        _check(driver, driver.cuInit(0))
    except Exception as exc:  # CUDA_ERROR_NO_DEVICE, a missing libcuda.so.1 (RuntimeError from the loader), ...
        return Detection(BACKEND, available=False, reason=f"cuInit failed: {exc}", hint=DRIVER_HINT)
    try:
        found = _enumerate(driver)
    except Exception as exc:
        return Detection(BACKEND, available=False, reason=f"enumerating CUDA devices failed: {exc}", hint=DRIVER_HINT)
    return detection_from(found)
