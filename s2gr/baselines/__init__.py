"""Baselines under the package's protocol (same split, histories and metrics as S2GR): SASRec with full-softmax
cross-entropy and most-popular. From the command line: ``s2gr baseline sasrec|most-popular``."""

from ..evaluation import most_popular
from .popularity import most_popular_metrics
from .sasrec import SASRec, SASRecConfig, SASRecResult, train_sasrec

__all__ = ["SASRec", "SASRecConfig", "SASRecResult", "most_popular", "most_popular_metrics", "train_sasrec"]
