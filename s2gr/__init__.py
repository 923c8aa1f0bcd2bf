"""s2gr: stepwise semantic-guided latent reasoning for generative recommendation.

``from s2gr import S2GRForGenerativeRecommendation, S2GRTokenizer`` loads a saved model folder with
``from_pretrained``; ``S2GRRecommender`` holds both and recommends item ids for histories of item ids. The
classes are imported on first access, so ``import s2gr`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it (imported lazily, PEP 562).
_LAZY = {
    "S2GRConfig": ".configuration_s2gr",
    "S2GRForGenerativeRecommendation": ".modeling_s2gr",
    "S2GRRecommender": ".recommender",
    "S2GRTokenizer": ".tokenization_s2gr",
}
__all__ = [
    "S2GRConfig",
    "S2GRForGenerativeRecommendation",
    "S2GRRecommender",
    "S2GRTokenizer",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)
