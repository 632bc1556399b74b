"""Build of the optional compiled hot loops (mmdaemon/_speedups.c); everything else is in
pyproject.toml. Without a C compiler the build goes on and mmdaemon runs on its pure-Python
twins of the same functions (see mmdaemon/speedups.py)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mmdaemon._speedups",
            ["mmdaemon/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
