"""Venue protocols, sans-I/O: frame bytes to market events, orders to frames."""
