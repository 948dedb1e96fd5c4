"""Builds the CPU softmax kernels from harness_softmax/csrc at install time, once per instruction set.

Metadata lives in pyproject.toml; this file only declares the C extensions. Each extension is optional: a
machine without a C compiler (or a compiler that lacks the AVX-512 flags) still installs the plugin, and the
compiled algorithms then report why they are unavailable (harness_softmax.cpu.compiled_unavailable_reason)
instead of crashing. The instruction set is chosen at run time from the CPU's flags, not at build time, so
one build serves any x86-64 CPU; on other architectures only the portable C build is made.
"""

from __future__ import annotations

import platform
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCES = ["harness_softmax/csrc/softmax_cpu.c"]
DEPENDS = ["harness_softmax/csrc/simd.h", "harness_softmax/csrc/softmax_kernels.h"]
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")

# (module, ISA macro, GCC/Clang flags, MSVC flags)
VARIANTS = [("_cpu_portable", None, [], [])]
if X86:
    VARIANTS += [
        ("_cpu_avx2", "SOFTMAX_ISA_AVX2", ["-mavx2", "-mfma", "-mf16c"], ["/arch:AVX2"]),
        (
            "_cpu_avx512",
            "SOFTMAX_ISA_AVX512",
            ["-mavx512f", "-mavx512bw", "-mavx2", "-mfma", "-mf16c"],
            ["/arch:AVX512"],
        ),
    ]


class BuildKernels(build_ext):
    """Per-compiler flags: -O3 without -ffast-math (the exponential's rounding trick needs IEEE semantics)."""

    def build_extension(self, ext: Extension) -> None:
        msvc = self.compiler.compiler_type == "msvc"
        flags = ext.msvc_flags if msvc else ext.gcc_flags  # type: ignore[attr-defined]
        base = ["/O2"] if msvc else ["-O3", "-fno-fast-math", "-fno-strict-aliasing"]
        ext.extra_compile_args = base + flags
        try:
            super().build_extension(ext)
        except Exception as exc:  # optional: the plugin installs, the kernels report themselves unavailable
            print(
                f"warning: harness-softmax: could not build {ext.name} ({type(exc).__name__}: {exc}); the compiled "
                "CPU softmax algorithms that need it will be listed as unavailable",
                file=sys.stderr,
            )


def extension(module: str, macro: str | None, gcc_flags: list[str], msvc_flags: list[str]) -> Extension:
    ext = Extension(
        f"harness_softmax.{module}",
        sources=SOURCES,
        depends=DEPENDS,
        define_macros=[("SOFTMAX_MODULE", module)] + ([(macro, "1")] if macro else []),
        optional=True,
    )
    ext.gcc_flags = gcc_flags  # type: ignore[attr-defined]
    ext.msvc_flags = msvc_flags  # type: ignore[attr-defined]
    return ext


setup(ext_modules=[extension(*variant) for variant in VARIANTS], cmdclass={"build_ext": BuildKernels})
