"""Risk: trading states, pre-trade checks, breakers, the kill switch and the supervisor."""
