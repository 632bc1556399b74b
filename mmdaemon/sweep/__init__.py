"""Parameter sweeps: many dry runs of one recording set under a grid of configurations."""
