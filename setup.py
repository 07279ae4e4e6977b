"""Build hook for the optional C kernels (everything else is in pyproject.toml).

``cmhash.kernels._kernels`` is compiled with the platform's C compiler when one is present. It is
optional: without a compiler the install still succeeds and the indexes fall back to numpy
(correct, several times slower; ``cmhash index info`` and ``cmhash.index.kernel_name()`` say
which is in use).
"""
import sys

from setuptools import Extension, setup

args = ["/O2"] if sys.platform == "win32" else ["-O3", "-std=c99", "-fno-strict-aliasing"]
setup(ext_modules=[Extension("cmhash.kernels._kernels", ["src/cmhash/kernels/_kernels.c"],
                             extra_compile_args=args, optional=True)])
