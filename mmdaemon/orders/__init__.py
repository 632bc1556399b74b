"""Execution side: desired quotes to order actions, and position/PnL keeping."""
