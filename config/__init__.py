"""The example configs, installed as the package ``mmdaemon.configs`` (see setup.py and
:mod:`mmdaemon.defaults`); this file only makes the folder a package."""
