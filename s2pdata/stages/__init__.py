"""The synthesis stages: arrays in, ``(array, params)`` out, an explicit ``rng``, re-creatable from params.

One module per stage, in the order ``s2pdata.synth`` runs them: ``sketch`` (or ``learned``),
``rough``, ``hints``, ``regions``, ``flat``, ``domain``, ``refimage``, then the draft synthesis
``warp``, ``spray`` and ``drafts``. Kernel modules import numpy, numba and OpenCV only.
"""
