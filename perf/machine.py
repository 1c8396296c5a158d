"""What the figures depend on most: the CPU (lscpu's model name and its SIMD flags)."""

from __future__ import annotations

import subprocess

from checkout.repository import model_module

# The instruction sets that decide which engine and precision are fast.
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
              "amx_bf16", "amx_int8")  # fmt: skip


def lscpu() -> str:
    return subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout


def _field(out: str, name: str) -> str:
    values = [line.split(":", 1)[1].strip() for line in out.splitlines()
              if line.startswith(f"{name}:")]  # fmt: skip
    return values[0] if values else "unknown"


def cpu_model() -> str:
    """lscpu's model name."""
    return _field(lscpu(), "Model name")


def cpu_summary() -> str:
    """Model name, cores, which of SIMD_FLAGS the CPU has, and any instruction-set
    cap set in the environment (selection.ISA_CAPS, e.g. ONEDNN_MAX_CPU_ISA=AVX2)."""
    out = lscpu()
    flags = set(_field(out, "Flags").split())
    present = [f for f in SIMD_FLAGS if f in flags]
    absent = [f for f in SIMD_FLAGS if f not in flags]
    caps = model_module("selection").isa_caps()
    has = f"has {' '.join(present) or 'none'}; lacks {' '.join(absent) or 'none'}"
    if caps:  # ONNX Runtime (MLAS) and torch's int8 kernels (fbgemm) read the CPU, not these
        has += f"; kernels capped by {' '.join(caps)}, except ONNX Runtime's and torch-int8's"
    return f"{_field(out, 'Model name')}, {_field(out, 'CPU(s)')} CPUs; {has}"
