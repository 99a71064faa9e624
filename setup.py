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
            # -fno-math-errno: sqrt need not set errno (no kernel reads it), so
            # it compiles to the instruction and loops of roots vectorise; the values
            # are the same (IEEE sqrt is correctly rounded either way)
            extra_compile_args=["-O3", "-std=c99", "-fno-math-errno", "-Wall", "-Wextra",
                                "-Werror=implicit-function-declaration"],
        )
    ]
)
