"""Lean reference trainers for the two stages (torch): ``python -m s2pdata.train draft|refine``.

Consumes shards through ``s2pdata.data.make_loader``; produces a run folder (checkpoint, log,
sample grids). Nothing in the data pipeline imports this package.
"""
