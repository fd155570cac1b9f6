"""How much memory this process can still allocate: the one answer the readers (refusing an image that
would not fit) and the tiled inference (sizing its tiles) both use.

The smallest of: the system's available memory (``MemAvailable`` in ``/proc/meminfo``, the Windows API, or
``sysconf``), the container's limit (cgroup v2 or v1) and this process's ``ulimit -v``/``-d``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional


def _meminfo_available() -> Optional[int]:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _windows_available() -> Optional[int]:
    import ctypes

    class MemoryStatusEx(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                    ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                    ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                    ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                    ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

    status = MemoryStatusEx()
    status.dwLength = ctypes.sizeof(MemoryStatusEx)
    try:
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
            return int(status.ullAvailPhys)
    except (AttributeError, OSError):
        pass
    return None


def _system_available() -> Optional[int]:
    found = _meminfo_available()
    if found is not None:
        return found
    if sys.platform == "win32":
        return _windows_available()
    try:  # Linux without MemAvailable, BSD (macOS has no SC_AVPHYS_PAGES)
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _status_bytes(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> Optional[int]:
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            return max(int(limit) - usage, 0)
    return None


def _rlimit_available() -> List[int]:
    try:
        import resource
    except ImportError:  # Windows
        return []
    left = []
    for limit, used in ((resource.RLIMIT_AS, "VmSize"), (getattr(resource, "RLIMIT_DATA", None), "VmData")):
        if limit is None:
            continue
        soft = resource.getrlimit(limit)[0]
        current = _status_bytes(used)
        if soft != resource.RLIM_INFINITY and current is not None:
            left.append(max(soft - current, 0))
    return left


def available_memory() -> Optional[int]:
    """Bytes this process can still allocate (the smallest of free memory, ``ulimit -v``/``-d`` and the
    container's limit), or None when the system does not say."""
    known = [c for c in (_system_available(), _cgroup_available()) if c is not None] + _rlimit_available()
    return min(known) if known else None


def physical_memory() -> Optional[int]:
    """Bytes of RAM in the machine (``sysconf``), or None."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None
