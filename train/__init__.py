"""Training tiers (``nwc train``), beside the runtime codec and never imported by it.

``config`` (what a run is), ``data`` (audio in memory), ``inputs`` (typed batches per front
end), ``objective`` (named loss terms and their weights), ``rate`` (rate targets, controllers
and schedules), ``checkpoint`` (resumable state), ``export`` (code tables and the tier),
``evaluate`` (dev scores through the real coder) and ``trainer`` (the loop).
"""
