"""Build hook for the optional C kernels (everything else is in pyproject.toml).

``cmhash.kernels._kernels`` is compiled with the platform's C compiler when one is present (a
binary wheel, ``python -m build``, carries it compiled). It is optional: without a compiler a
source install still succeeds, and the indexes fall back to numpy (correct, 50-200x slower):
``import cmhash.kernels`` warns once, and ``cmhash index info`` says ``numpy fallback``. The
kernels pick their instruction set at run time (scalar popcnt, AVX2, AVX-512), so one build serves
every x86-64 CPU.
"""
import sys

from setuptools import Extension, setup

args = ["/O2"] if sys.platform == "win32" else ["-O3", "-std=c99", "-fno-strict-aliasing"]
#: the kernels over one shared header (kernels.h), bindings apart (bindings.c)
SOURCES = [f"src/cmhash/kernels/{name}.c" for name in ("bindings", "scan", "mih", "ivf", "rank")]
setup(ext_modules=[Extension("cmhash.kernels._kernels", SOURCES, depends=["src/cmhash/kernels/kernels.h"],
                             extra_compile_args=args, optional=True)])
