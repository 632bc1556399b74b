"""Inventory skew: the reservation price moves *against* the position.

A long position shifts the reservation price, and with it both quotes, *down* (we become
keener to sell and less keen to buy); a short one shifts it up. The shift is returned in
ticks, to be added to fair value; the half-spread is applied around the result.

Units used by every mode:

- ``q``: inventory in *q-units*, q = clip(inventory_lots, -max, +max) / q_unit_lots, where
  ``q_unit_lots`` is the quoter's base order size (so q = 1 is "one base order long") and
  ``max`` the inventory limit in lots.
- ``sigma``: volatility of the mid in **ticks per sqrt(second)**: the estimator's fraction
  per sqrt(s) x fair value in ticks (at 61,800.00 USDT, tick 0.01, 1 bp per sqrt(s) is 618).
- ``tau``: seconds. ``gamma``: risk aversion, per (tick x q-unit). ``kappa``: decay of the
  fill intensity with quote distance, per tick (intensity = A x exp(-kappa x depth)).
  ``A``: fill intensity at zero depth, per second.

Modes (``SkewParams.mode``):

- ``"linear"``: shift = -linear_coef_bps x q_ratio bps of fair value, q_ratio =
  clip(inventory / max_inventory, -1, 1). Prices no spread (the spread model's core applies).
- ``"avellaneda_stoikov"`` (Avellaneda & Stoikov 2008, "High-frequency trading in a limit
  order book", Quantitative Finance 8(3)): reservation r = s - q x gamma x sigma^2 x tau;
  optimal total spread gamma x sigma^2 x tau + (2 / gamma) x ln(1 + gamma / kappa), so the
  half-spread is half of that. ``tau`` is a fixed horizon (``as_tau_s``) because a 24/7
  market has no session end.
- ``"glft"`` (Gueant, Lehalle & Fernandez-Tapia 2013, "Dealing with the inventory risk: a
  solution to the market making problem", Mathematics and Financial Economics 7(4); the
  order-size form as in Gueant 2017, "Optimal market making", Applied Mathematical Finance
  24(2)), the closed-form asymptotic approximation with xi = gamma and order size Delta
  (``glft_delta_q``, in q-units):

      c1 = 1 / (xi Delta) x ln(1 + xi Delta / kappa)
      c2 = sqrt( gamma / (2 A Delta kappa) x (1 + xi Delta / kappa) ^ (kappa / (xi Delta) + 1) )
      bid depth = c1 + (Delta / 2) sigma c2 + q sigma c2
      ask depth = c1 + (Delta / 2) sigma c2 - q sigma c2

  i.e. half-spread = c1 + (Delta / 2) x sigma x c2 and reservation shift = -q x sigma x c2.
  c1 is in ticks (1 / gamma is), c2 in sqrt(seconds), so sigma x c2 is in ticks.

The defaults are starting points for BTCUSDT spot at a 0.01 tick (sigma ~600 ticks per
sqrt(s)); gamma, kappa and A must be calibrated from our own fills before live use.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from mmdaemon.quoting import _validate as v
from mmdaemon.quoting.calibration import OnlineCalibrationParams

SKEW_MODES = ("linear", "avellaneda_stoikov", "glft")
_BPS = 1e-4


@dataclass(frozen=True, slots=True)
class SkewParams:
    """Inventory-skew parameters (units: see the module docstring).

    ``mode``: one of :data:`SKEW_MODES`.
    ``linear_coef_bps``: reservation shift at the inventory limit, bps of fair (linear).
    ``gamma``: risk aversion per (tick x q-unit) (avellaneda_stoikov, glft; xi = gamma).
    ``kappa_per_tick``: fill-intensity decay per tick of depth (avellaneda_stoikov, glft).
    ``glft_a_per_s``: fill intensity at zero depth, per second (glft).
    ``glft_delta_q``: order size Delta in q-units (glft; 1 = one base order).
    ``as_tau_s``: horizon tau in seconds (avellaneda_stoikov).
    ``online``: A, k and sigma re-estimated on a rolling window (glft only; off by default;
    :mod:`.calibration`).
    """

    mode: str = "linear"
    linear_coef_bps: float = 2.0
    gamma: float = 1e-3
    kappa_per_tick: float = 2e-3
    glft_a_per_s: float = 1.0
    glft_delta_q: float = 1.0
    as_tau_s: float = 1.0
    online: OnlineCalibrationParams = field(default_factory=OnlineCalibrationParams)

    def __post_init__(self) -> None:
        owner = "SkewParams"
        v.choice(owner, "mode", self.mode, SKEW_MODES)
        if not isinstance(self.online, OnlineCalibrationParams):
            raise v.fail(owner, "online", "an OnlineCalibrationParams", self.online)
        if self.online.enabled and self.mode != "glft":
            raise v.fail(owner, "online", f"enabled = false with mode {self.mode!r} (online "
                         f"calibration re-fits GLFT's A, k and sigma: mode 'glft')",
                         "enabled = true")
        v.real(owner, "linear_coef_bps", self.linear_coef_bps, "bps of fair value", lo=0)
        v.real(owner, "gamma", self.gamma, "per tick x q-unit", lo=0, lo_open=True)
        v.real(owner, "kappa_per_tick", self.kappa_per_tick, "per tick", lo=0, lo_open=True)
        v.real(owner, "glft_a_per_s", self.glft_a_per_s, "fills per second", lo=0, lo_open=True)
        v.real(owner, "glft_delta_q", self.glft_delta_q, "q-units", lo=0, lo_open=True)
        v.real(owner, "as_tau_s", self.as_tau_s, "seconds", lo=0)
        if self.mode == "glft":
            # (1 + x)^(1/x + 1) must be a finite float; it overflows only for absurd inputs.
            c1, c2 = glft_constants(self)
            if not (math.isfinite(c1) and math.isfinite(c2)):
                raise v.fail(
                    owner, "gamma", "gamma and kappa_per_tick giving finite GLFT terms", self.gamma
                )


def glft_constants(params: SkewParams) -> tuple[float, float]:
    """(c1 in ticks, c2 in sqrt(seconds)) of the GLFT approximation, xi = gamma."""
    gamma, kappa, a, delta = (
        params.gamma,
        params.kappa_per_tick,
        params.glft_a_per_s,
        params.glft_delta_q,
    )
    xi_delta = gamma * delta
    c1 = math.log1p(xi_delta / kappa) / xi_delta
    try:
        power = (1.0 + xi_delta / kappa) ** (kappa / xi_delta + 1.0)
    except OverflowError:
        return c1, math.inf
    c2 = math.sqrt(gamma / (2.0 * a * delta * kappa) * power)
    return c1, c2


class InventorySkew:
    """Reservation-price shift (and, for the model modes, half-spread) in ticks.

    ``max_inventory_lots`` is the inventory limit and ``q_unit_lots`` the size of one q-unit
    (the quoter passes its sizing parameters, so the limit is stated once).

    Two attributes are bound to the mode's functions at construction (no per-event dispatch):

    - ``shift_ticks(inventory_lots, fair_ticks, sigma_per_sqrt_s) -> float``: reservation
      price - fair value in ticks, < 0 when long, > 0 when short (inventory clipped to the
      limit);
    - ``half_spread_ticks(fair_ticks, sigma_per_sqrt_s) -> float``: the model's optimal
      half-spread in ticks; 0.0 in linear mode, which prices none (``prices_spread`` False).
    """

    __slots__ = (
        "_as_half",
        "_c1",
        "_c2",
        "_gamma_tau",
        "_half_delta",
        "_linear_frac",
        "_max_inv",
        "_q_unit",
        "half_spread_ticks",
        "max_inventory_lots",
        "mode",
        "params",
        "prices_spread",
        "q_unit_lots",
        "shift_ticks",
    )

    def __init__(
        self, params: SkewParams | None = None, *, max_inventory_lots: int, q_unit_lots: int
    ) -> None:
        self.params = params = params or SkewParams()
        if max_inventory_lots < 1:
            raise ValueError(
                f"max_inventory_lots: expected an integer >= 1, got {max_inventory_lots!r}"
            )
        if q_unit_lots < 1:
            raise ValueError(f"q_unit_lots: expected an integer >= 1, got {q_unit_lots!r}")
        self.mode = params.mode
        self.max_inventory_lots = max_inventory_lots
        self.q_unit_lots = q_unit_lots
        self._max_inv = max_inventory_lots
        self._q_unit = float(q_unit_lots)
        self._linear_frac = params.linear_coef_bps * _BPS
        self._gamma_tau = params.gamma * params.as_tau_s
        # AS: (2 / gamma) ln(1 + gamma / kappa) is the full-spread term; half of it:
        self._as_half = math.log1p(params.gamma / params.kappa_per_tick) / params.gamma
        self._c1, self._c2 = glft_constants(params)
        self._half_delta = params.glft_delta_q / 2.0
        #: True when the mode prices its own half-spread (replacing the spread model's core)
        self.prices_spread = params.mode != "linear"
        self.shift_ticks: Callable[[int, float, float], float]
        self.half_spread_ticks: Callable[[float, float], float]
        if params.mode == "linear":
            self.shift_ticks, self.half_spread_ticks = self._shift_linear, self._half_none
        elif params.mode == "glft":
            self.shift_ticks, self.half_spread_ticks = self._shift_glft, self._half_glft
        else:
            self.shift_ticks, self.half_spread_ticks = self._shift_as, self._half_as

    def recalibrate(self, a_per_s: float, kappa_per_tick: float) -> None:
        """New A (per s) and k (per tick), from online calibration: ``params`` and the GLFT
        constants c1, c2 follow (once per re-fit, never per event). Raises ValueError, and
        changes nothing, when they give no finite GLFT terms."""
        params = replace(self.params, glft_a_per_s=a_per_s, kappa_per_tick=kappa_per_tick)
        self.params = params
        self._c1, self._c2 = glft_constants(params)
        self._as_half = math.log1p(params.gamma / params.kappa_per_tick) / params.gamma

    def q(self, inventory_lots: int) -> float:
        """Inventory in q-units, clipped to the limit."""
        m = self._max_inv
        inv = m if inventory_lots > m else -m if inventory_lots < -m else inventory_lots
        return inv / self._q_unit

    # The inventory clip is inlined in each shift: these run on every book event.

    def _shift_linear(self, inventory_lots: int, fair_ticks: float, sigma: float) -> float:
        m = self._max_inv
        inv = m if inventory_lots > m else -m if inventory_lots < -m else inventory_lots
        return -self._linear_frac * fair_ticks * inv / m

    def _shift_as(self, inventory_lots: int, fair_ticks: float, sigma: float) -> float:
        m = self._max_inv
        inv = m if inventory_lots > m else -m if inventory_lots < -m else inventory_lots
        sigma_ticks = sigma * fair_ticks
        return -(inv / self._q_unit) * self._gamma_tau * sigma_ticks * sigma_ticks

    def _shift_glft(self, inventory_lots: int, fair_ticks: float, sigma: float) -> float:
        m = self._max_inv
        inv = m if inventory_lots > m else -m if inventory_lots < -m else inventory_lots
        return -(inv / self._q_unit) * sigma * fair_ticks * self._c2

    @staticmethod
    def _half_none(fair_ticks: float, sigma: float) -> float:
        return 0.0

    def _half_as(self, fair_ticks: float, sigma: float) -> float:
        sigma_ticks = sigma * fair_ticks
        return 0.5 * self._gamma_tau * sigma_ticks * sigma_ticks + self._as_half

    def _half_glft(self, fair_ticks: float, sigma: float) -> float:
        return self._c1 + self._half_delta * sigma * fair_ticks * self._c2
