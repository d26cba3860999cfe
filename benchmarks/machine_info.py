"""The header line of the speed benchmarks: the CPU, the OpenBLAS kernel in use, the variables that choose it."""
from __future__ import annotations

import os


def machine() -> str:
    """'CPU model; OpenBLAS version, kernel (architecture); {OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE}'."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        from threadpoolctl import threadpool_info
        blas = [f"{i['internal_api']} {i['version']} kernel {i.get('architecture')}" for i in threadpool_info()
                if i["user_api"] == "blas"]
    except ImportError:
        blas = ["threadpoolctl not installed"]
    env = {k: os.environ.get(k, "unset") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    return f"{cpu}; {', '.join(blas)}; {env}"
