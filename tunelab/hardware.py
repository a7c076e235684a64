"""What the hardware can do fast, decided once.

bf16 autocast pays off only with native bf16 arithmetic: on CPUs that means
AVX512-BF16 or AMX. oneDNN also "supports" bf16 on plain AVX-512 by emulation,
which is slower than fp32, so its own flag is not the test.
"""

from __future__ import annotations

import functools
from pathlib import Path

NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


@functools.cache
def cpu_has_native_bf16() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap way to tell, so stay in fp32
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & NATIVE_BF16_FLAGS)


def bf16_fast(device: str) -> bool:
    """Whether bf16 autocast is expected to beat fp32 on `device`."""
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_bf16_supported())
    return cpu_has_native_bf16()


def resolve_device(device: str) -> str:
    """ "auto" means cuda when a GPU is visible, else cpu; anything else is kept."""
    if device != "auto":
        return device
    import torch  # heavy: only when a model is about to run

    return "cuda" if torch.cuda.is_available() else "cpu"
