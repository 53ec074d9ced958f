"""Detection: cheap, side-effect free, re-entrant. The dummy always "finds" one device."""

from hetagent.backend import DetectedDevice, Detection


def detect() -> Detection:
    return Detection(
        backend="dummy",
        available=True,
        devices=(DetectedDevice(profile="dummy-npu", index=0, name="Dummy NPU #0", memory_gb=32.0),),
    )
