"""Real interaction data → ``datasets`` splits, and item text embeddings."""

from .assets import MOVIELENS_TERMS, AssetError, cache_root, fetch_asset
from .embeddings import DEFAULT_ENCODER, embed_items, embed_texts
from .loading import DATASETS, DEFAULT_DATASET, RecData, build_recdata, load_data
from .preprocess import LogStats, chronological, drop_repeats, kcore_filter, leave_one_out
from .readers import Columns, DataFormatError, read_amazon, read_interactions_file, read_recbole

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "DEFAULT_ENCODER",
    "MOVIELENS_TERMS",
    "AssetError",
    "Columns",
    "DataFormatError",
    "LogStats",
    "RecData",
    "build_recdata",
    "cache_root",
    "chronological",
    "drop_repeats",
    "embed_items",
    "embed_texts",
    "fetch_asset",
    "kcore_filter",
    "leave_one_out",
    "load_data",
    "read_amazon",
    "read_interactions_file",
    "read_recbole",
]
