"""What pyproject.toml cannot say declaratively: the optional compiled hot loops
(mmdaemon/_speedups.c), the ``mmdaemond`` launcher (mmdaemon/_launcher.c) and the example
configs shipped inside the package.

Without a C compiler the build goes on and mmdaemon runs on its pure-Python twins of the
same functions (see mmdaemon/speedups.py), and without ``mmdaemond``: the systemd unit
needs it (it holds the operator's signals from the first instruction, see
mmdaemon/early_signals.py), so a build host for servers must have a compiler, as the
runbook says. The repository's top-level ``config/`` becomes the package
``mmdaemon.configs``, so an installed mmdaemon finds its default configs from any working
directory (:mod:`mmdaemon.defaults`).
"""

import os
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

LAUNCHER_SOURCE = "mmdaemon/_launcher.c"


class BuildWithLauncher(build_ext):
    """build_ext, plus the launcher executable as package data, ``mmdaemon/mmdaemond``.

    Not a script in the venv's bin/: setuptools reads every script as Python (to fix its
    ``#!`` line) and an editable install skips data files. The runbook links it into the
    venv's bin/ (``mmdaemon --launcher-path``), where it finds the venv's python.
    """

    def run(self) -> None:
        super().run()
        if not sys.platform.startswith("linux"):
            return  # systemd, its only user, is Linux-only
        targets = [os.path.join(self.build_lib, "mmdaemon")]
        if self.inplace or getattr(self, "editable_mode", False):
            targets.append("mmdaemon")  # beside the in-place extension
        try:
            built = self._build_launcher()
        except Exception as exc:  # optional, like the extension
            print(f"mmdaemon: launcher mmdaemond not built ({exc})", file=sys.stderr)
            return
        for target in targets:
            self.mkpath(target)
            self.copy_file(built, os.path.join(target, "mmdaemond"))

    def _build_launcher(self) -> str:
        out = os.path.join(self.build_temp, "launcher")
        objects = self.compiler.compile([LAUNCHER_SOURCE], output_dir=out,
                                        extra_postargs=["-O2", "-Wall"])
        try:  # static: no dynamic loader runs before its first instruction
            self.compiler.link_executable(objects, "mmdaemond", output_dir=out,
                                          extra_postargs=["-static"])
        except Exception:  # no static libc here: dynamic still works
            self.compiler.link_executable(objects, "mmdaemond", output_dir=out)
        return os.path.join(out, "mmdaemond")


setup(
    packages=[*find_packages(include=["mmdaemon", "mmdaemon.*"]), "mmdaemon.configs"],
    package_dir={"mmdaemon.configs": "config"},
    package_data={"mmdaemon.configs": ["*.toml", "*.json"], "mmdaemon": ["py.typed", "_speedups.pyi"]},
    exclude_package_data={"mmdaemon": ["*.c"]},  # built into the extension, not shipped
    cmdclass={"build_ext": BuildWithLauncher},
    ext_modules=[
        Extension(
            "mmdaemon._speedups",
            ["mmdaemon/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ],
)
