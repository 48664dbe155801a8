"""What the benchmarks' JSON files say of the machine they ran on (imports nothing of flowutils)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def host() -> dict:
    """The host's processor and cores: a sweep whose host launches slower than its GPU runs goes at the host's pace,
    and CPU timings compare only on one processor."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [l.split(":", 1)[1].strip() for l in cpuinfo.read_text().splitlines()
             if l.startswith("model name")] if cpuinfo.is_file() else []
    return {"cpu": names[0] if names else platform.processor() or platform.machine(), "cores": os.cpu_count()}
