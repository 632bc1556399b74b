"""mmdaemon: a market-making quoting daemon with an exact, replayable core."""

__version__ = "0.1.0"
