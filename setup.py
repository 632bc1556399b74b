"""What pyproject.toml cannot say declaratively: the optional compiled hot loops
(mmdaemon/_speedups.c) and the example configs shipped inside the package.

Without a C compiler the build goes on and mmdaemon runs on its pure-Python twins of the
same functions (see mmdaemon/speedups.py). The repository's top-level ``config/`` becomes
the package ``mmdaemon.configs``, so an installed mmdaemon finds its default configs from
any working directory (:mod:`mmdaemon.defaults`).
"""

from setuptools import Extension, find_packages, setup

setup(
    packages=[*find_packages(include=["mmdaemon", "mmdaemon.*"]), "mmdaemon.configs"],
    package_dir={"mmdaemon.configs": "config"},
    package_data={"mmdaemon.configs": ["*.toml"], "mmdaemon": ["py.typed", "_speedups.pyi"]},
    exclude_package_data={"mmdaemon": ["*.c"]},  # built into the extension, not shipped
    ext_modules=[
        Extension(
            "mmdaemon._speedups",
            ["mmdaemon/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ],
)
