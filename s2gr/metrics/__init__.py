"""Metric modules shipped with s2gr, loadable with ``evaluate.load(path)``."""

from pathlib import Path

RECOMMENDATION_METRIC = str(Path(__file__).parent / "recommendation")


def load_recommendation_metric():
    """``evaluate.load`` of the packaged Recall@K / NDCG@K module (works offline, from the package)."""
    import evaluate

    return evaluate.load(RECOMMENDATION_METRIC)
