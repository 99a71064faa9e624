"""Build the C kernels; all other metadata lives in pyproject.toml."""
from setuptools import Extension, setup

# one extension, split by kernel (kernels.h says what each file holds)
KERNELS = "src/engramloop/decoders/_kernels"
FILES = ("module", "buffers", "filterbank", "baseline", "ripple", "spindle", "so", "echt")

setup(
    ext_modules=[
        Extension(
            "engramloop.decoders._filters",
            sources=[f"{KERNELS}/{name}.c" for name in FILES],
            depends=[f"{KERNELS}/kernels.h"],
            extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra",
                                "-Werror=implicit-function-declaration"],
        )
    ]
)
