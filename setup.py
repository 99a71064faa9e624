"""Build the C filter bank; all other metadata lives in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "engramloop.decoders._filters",
            sources=["src/engramloop/decoders/_filters.c"],
            extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra",
                                "-Werror=implicit-function-declaration"],
        )
    ]
)
