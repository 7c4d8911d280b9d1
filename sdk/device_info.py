"""Facts about the machine that the runtime and the exporters both need (no heavy imports)."""

from __future__ import annotations

from pathlib import Path


def is_tegra(root: Path = Path("/")) -> bool:
    """A Jetson (Tegra SoC): L4T writes /etc/nv_tegra_release, the device tree names the SoC."""
    if (root / "etc/nv_tegra_release").is_file():
        return True
    try:
        return b"nvidia,tegra" in (root / "proc/device-tree/compatible").read_bytes()
    except OSError:
        return False


__all__ = ["is_tegra"]
