"""Lean reference trainers for the two stages (torch): ``python -m s2pdata.train draft|refine``.

Consumes shards through ``s2pdata.data.make_loader``; produces a run folder (checkpoint, log,
sample grids). Nothing in the data pipeline imports this package.

Modules: ``config`` (the config dataclass, recipes, flags, ``--help``), ``loop`` (device, DDP,
the loop, the CLI entry), ``checkpoint`` (atomic checkpoints, RNG states, weight hash),
``common`` (losses, labelled sample grids, ``Stage``), ``nets``, ``draft``, ``refine``.
"""
