"""Builds the Cython step core and scans in ``cython_ext/`` into ``pitgrid`` extension modules."""
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

packages = ["pitgrid." + p for p in find_packages("src/pitgrid")] + ["pitgrid", "pitgrid.kernels"]
extensions = [
    Extension(
        f"pitgrid._{pyx.stem}",
        [str(pyx)],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    for pyx in sorted(Path("cython_ext").glob("*.pyx"))
]

setup(
    packages=packages,
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
