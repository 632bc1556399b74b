"""Where mmdaemon finds the example configs it ships (``config/`` in the repository).

The build maps the repository's top-level ``config/`` onto the package ``mmdaemon.configs``
(setup.py), so the same lookup works from a wheel, an editable install and a source
checkout, whatever the working directory.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DRYRUN = "dryrun.toml"
LOBSTER = "lobster-amzn.toml"


def bundled_config(name: str) -> Path:
    """The path of the shipped example config ``name`` (e.g. ``dryrun.toml``)."""
    return Path(str(resources.files("mmdaemon.configs").joinpath(name)))
