"""s2pdata: training data for two-stage line-art colorization (Style2Paints, TOG 2018)."""

__version__ = "0.1.0"
SCHEMA_VERSION = 4  # 2: regions.png in every sample; 3: sketch style + optional flat, colordomain, reference;
#                    4: json "hints" is a JSON string of records (Hints.from_json reads it); source
#                       artist tags one space-separated string; unknown rating, md5, path ""
