"""Objects with ``__dlpack__`` (PyTorch, JAX and CuPy tensors, numpy's own)
as numpy arrays that share their memory (SPEC §15).

``np.from_dlpack`` (numpy ≥ 1.22) makes a view, never a copy, so a
C-contiguous CPU tensor of a dtype the library takes is read where it lies.
A tensor in a device's memory (CUDA, ROCm, Metal...) cannot be read by the
CPU in place: that is bad input, with the fix in the message.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._vlad import InputError

# DLPack's DLDeviceType codes (dlpack.h): kDLCPU is the only one numpy reads.
_CPU = 1
_DEVICE_NAMES = {
    2: "CUDA",
    3: "CUDA host (pinned)",
    4: "OpenCL",
    7: "Vulkan",
    8: "Metal",
    9: "VPI",
    10: "ROCm",
    11: "ROCm host",
    13: "CUDA managed",
    14: "oneAPI",
    15: "WebGPU",
    16: "Hexagon",
}


def is_dlpack(x: Any) -> bool:
    """Whether ``x`` is a DLPack producer other than a numpy array (numpy
    arrays are read directly)."""
    return not isinstance(x, np.ndarray) and hasattr(x, "__dlpack__")


def to_numpy(x: Any, what: str = "array") -> Any:
    """``x`` as a numpy view when it is a CPU DLPack tensor; anything else
    is returned unchanged. A tensor on another device is an
    :class:`vlad.InputError` saying to move it to the CPU."""
    if not is_dlpack(x):
        return x
    kind = type(x).__module__.split(".")[0] + "." + type(x).__qualname__
    if hasattr(x, "__dlpack_device__"):
        device_type, device_id = x.__dlpack_device__()
        if int(device_type) != _CPU:
            name = _DEVICE_NAMES.get(int(device_type), f"DLPack device type {int(device_type)}")
            raise InputError(
                f"{what} is a {kind} on {name} device {int(device_id)}: vlad reads CPU "
                f"memory; move it to the CPU first (e.g. tensor.cpu(), or "
                f"jax.device_put(x, jax.devices('cpu')[0]), or cupy.asnumpy(x))"
            )
    from_dlpack = getattr(np, "from_dlpack", None)
    if from_dlpack is None:
        raise InputError(
            f"{what} is a {kind} (a DLPack tensor): reading it needs numpy >= 1.22, "
            f"this is numpy {np.__version__}"
        )
    try:
        return from_dlpack(x)
    except (TypeError, ValueError, BufferError, RuntimeError) as error:
        # e.g. PyTorch refuses to export a tensor that requires grad.
        raise InputError(f"{what} is a {kind} that numpy cannot read through DLPack: {error}") from error
