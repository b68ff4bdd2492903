"""Facts about the machine and software, recorded in every run's metadata."""

from __future__ import annotations

import os
import platform
from importlib import metadata


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_flags() -> list[str]:
    """The instruction-set flags that matter for int8 and fp32 inference speed."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512vnni", "amx_int8", "amx_bf16", "avx_vnni")
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [flag for flag in wanted if flag in flags]
    except OSError:
        pass
    return []


def package_versions(names: tuple[str, ...] = (
    "abqa", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime",
    "nvidia-pytriton", "tritonclient", "locust", "numpy", "scipy", "statsmodels",
)) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict:
    return {
        "cpu_model": cpu_model(),
        "cores": cpu_count(),
        "cpu_flags": cpu_flags(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "memory_gb": _memory_gb(),
    }


def _memory_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # psutil missing or unsupported platform
        return None
