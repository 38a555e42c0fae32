"""s2pdata: training data for two-stage line-art colorization (Style2Paints, TOG 2018)."""

__version__ = "0.1.0"
SCHEMA_VERSION = 2  # 2: regions.png (16-bit trapped-ball labels) in every sample
