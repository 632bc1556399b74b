"""Cross-check of the paper exchange's fills against hftbacktest (issue #17, item 8).

hftbacktest (PyPI ``hftbacktest``, a dev-only dependency, imported lazily: the runtime
package never needs it) is a backtester written by others with queue and latency models.
This module replays *our own* order log through it on the same recording and compares
the fills it gives with ours, one to one.

The timeline (both backtesters on one clock)
--------------------------------------------
Our paper exchange (:mod:`mmdaemon.exchange.paper`) runs on the daemon's event clock: the
recorded receive time ``recv``. The venue's market is the recorded market ``feed`` earlier,
and a request sent at ``t`` takes effect at ``t + entry + feed`` on that clock, against the
book as it stood then; a request due exactly at an event's time acts before it.

hftbacktest has an exchange clock (``exch_ts``) and a local clock (``local_ts``) and an
order reaches the exchange ``entry`` after it was sent on the local clock. So the converted
events carry ``local_ts = recv`` and ``exch_ts = recv - feed``: an event the daemon sees at
``recv`` happened at the venue ``feed`` before, on the same axis, and a request sent at
``t`` (local) reaches hftbacktest's exchange at ``t + entry``, when it has processed exactly
the events with ``recv - feed < t + entry``: the events our venue has applied before a
request due at ``t + entry + feed``. hftbacktest breaks a tie between an exchange event
and an arriving order in favour of the event, ours in favour of the request, so its entry
latency is ``entry - 1`` ns (all times are integers: ``d <= e`` iff ``d - 1 < e``). Its
response latency is 0: it does not change any fill (the exchange side never waits for
the local side), and it keeps hftbacktest's local side informed no later than our daemon
was, so every cancel or amend we sent finds the order's state known there (hftbacktest
refuses a request on an order with one in flight). A fill hftbacktest makes at exchange
time ``x`` is at ``x + feed`` on our clock, the event time our venue reports (``venue_ns``).

What is compared
----------------
- Events: depth diffs and the REST snapshot, and trades, exactly as our codec applies them
  to our book (the bookTicker stream does not change our book and is left out); a
  snapshot clears both sides first. Diffs buffered before the snapshot take effect at the
  snapshot's time, as in the daemon.
- Orders: every ``place``, ``amend`` and ``cancel`` of our order log (``mmdaemon export``'s
  ``orders.csv``) at its ``ts_ns``, as post-only (GTX) limit orders. An amend goes to the
  remaining size (new total - filled there) as our venue takes it: a smaller size at the
  same price keeps the queue place (hftbacktest's ``modify``), a price change or a larger
  size rejoins the back. hftbacktest's ``modify`` that rejoins the queue keeps the old
  remaining size, so such an amend is sent as its ``modify`` only when the remaining size
  is unchanged, else as a cancel and a new order (under an id of its own, mapped back to
  ours); if the old order had filled before they arrived, our venue would have refused the
  amend, so the new order is pulled and its fills are left out (``ghost``).
- Models: hftbacktest's ``partial_fill_exchange`` (a trade at our price fills the excess
  over the queue ahead, like ours) with ``risk_adverse_queue_model`` (join the back,
  queue capped at the displayed size, trades at our price eat the queue first): the same
  conservative queue as ours.
- Fills (``fills.csv``, at ``venue_ns``) are compared per (order, event time): fills of
  one order at one instant (one event) are summed on both sides. A fill matches when
  order, side, price, size and time are all equal: the time tolerance is 0 ns, because
  both replays run on one clock, and a fill at any other time was made by a different
  market event, a difference of model to be explained, not a rounding. What is left over
  is classified (:func:`.compare.compare`): the differences of rule between the two
  models (:data:`.compare.RULE_CLASSES`), and anything else, which is unexplained.

The modules, in the order the data flows:

- :mod:`.our_log` -- our side: the dry run's exported order log and fills (CSV);
- :mod:`.backtest` -- the recording as hftbacktest events, and our actions through it;
- :mod:`.compare` -- the fills matched one to one, the differences classified, the table;
- :mod:`.command` -- ``mmdaemon crosscheck``: the config's checks, the dry run, the output.
"""
