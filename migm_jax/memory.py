"""What a compiled XLA program needs against what the device has: a one-line refusal before running it."""

from __future__ import annotations

import os
from typing import Optional

import jax

HINT = "use a smaller image size or --batch-size, or shard the model over more devices with --fsdp"
TRAIN_HINT = ("lower batch_size (--set batch_size=B; --set accum_steps=K keeps an effective batch of B x K) or shard "
              "the parameters over more devices (--set mesh_fsdp=N)")


def program_bytes(compiled) -> Optional[int]:
    """Arguments + outputs + temporaries of a compiled program (aliased buffers counted once), in bytes; None
    where XLA gives no memory analysis. Unlike the allocator's high-water mark this excludes what compiling
    and autotuning tried on the side: it is what a device must hold to run the call."""
    m = compiled.memory_analysis()
    if m is None:
        return None
    return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes


def device_bytes(device: jax.Device) -> Optional[int]:
    """Memory one device can give a program: the allocator's limit (GPU, TPU), else the host's physical memory
    (CPU); None when neither is known."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    if device.platform == "cpu" and hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            return None
    return None


def shown(n: int) -> str:
    """Bytes as GiB, or MiB below one GiB."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_fits(compiled, what: str, hint: str = HINT) -> None:
    """ValueError (one line) when `compiled` asks a device for more memory than this process's first device
    has (XLA's analysis of a program partitioned over a mesh is per device): what was asked, what the device
    has, what to change (`hint`)."""
    device = jax.local_devices()[0]
    need, have = program_bytes(compiled), device_bytes(device)
    if need is None or have is None:
        return
    if need > have:
        raise ValueError(f"{what} needs {shown(need)} of memory per device, the {device.device_kind} "
                         f"has {shown(have)}; {hint}")
