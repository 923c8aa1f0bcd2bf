"""CoBa codebook: content embeddings + training histories -> unique Semantic IDs.

`build_semantic_ids(embeddings, train_sequences, CodebookConfig())` runs co-occurrence propagation,
an RQ-VAE with usage-balanced assignment and a uniformity loss (or the ablations in
`CodebookConfig.plain()` / `CodebookConfig.rkmeans()`), dedup codes, and coarse code clusters.
"""

from .clusters import cluster_codes
from .collisions import dedup_codes, reassign_collisions
from .config import CodebookConfig, codebook_size_for
from .graph import build_cooccurrence_graph, propagate, propagation_weights
from .plot import plot_code_usage
from .quantizer import FrozenQuantizer
from .semantic_ids import SemanticIDs, aligned_features, build_semantic_ids
from .stats import format_stats_table
from .uniformity import uniformity_loss

__all__ = [
    "CodebookConfig",
    "FrozenQuantizer",
    "SemanticIDs",
    "aligned_features",
    "build_cooccurrence_graph",
    "build_semantic_ids",
    "cluster_codes",
    "codebook_size_for",
    "dedup_codes",
    "format_stats_table",
    "plot_code_usage",
    "propagate",
    "propagation_weights",
    "reassign_collisions",
    "uniformity_loss",
]
