"""Exchange side: the paper venue's fill model (and, later, adapters and gateways)."""
