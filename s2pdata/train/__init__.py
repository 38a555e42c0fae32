"""Lean reference trainers for the two stages (torch): ``python -m s2pdata.train draft|refine``.

Consumes shards through ``s2pdata.data.make_loader``; produces a run folder (checkpoint, log,
sample grids). Nothing in the data pipeline imports this package.

Modules: ``draft`` and ``refine`` (one file per stage, top to bottom: config, networks,
``loss_g``, ``loss_d``, ``step``, ``build_stage``), ``loop`` (what every stage shares: device,
DDP, data position, schedule, logging, checkpoints; ``train``), ``common`` (loss terms, the
discriminator, sample grids, ``Nets``, ``Stage``), ``config`` (the config dataclass, recipes,
flags, ``--help``), ``checkpoint`` (atomic checkpoints, RNG states, weight hash), ``nets``, and
``__main__`` (the command line).
"""
