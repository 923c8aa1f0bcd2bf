"""Frozen quantizer: turns item embeddings into L codes with a fixed codebook (for new items).

Pipeline: standardise x' = (x - μ) / s (μ per input dim, s one scalar: the RMS of the centred
training features, so geometry is kept and 1.0 means "as spread as the catalog"), encode with the
frozen encoder (RQ-VAE MLP, or the PCA projection of residual k-means), then residual assignment
c_l = argmin_k ||r_l - e_lk||² + offset_lk with the frozen balancing offsets (zero when unused).

With collaborative codes (`collaborative.py`) the quantizer's input is [content, collaborative block];
the quantizer then also holds the text -> collaborative map, so `assign` builds a new item's input from
its content embedding alone (`item_features`).

`state_dict()` holds only tensors (encoder weights, codebooks, offsets, μ, s, the encoder layer widths
and the optional map), so a tokenizer can save it with safetensors/torch and rebuild it with
`from_state_dict`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InputError
from .collaborative import TextToCollab
from .kmeans import CHUNK, nearest, sq_dists
from .rqvae import mlp

ENCODER_PREFIX = "encoder."


class FrozenQuantizer:
    """Standardisation + encoder + residual codebooks (+ the text -> collaborative map), all frozen."""

    def __init__(
        self,
        encoder_dims: Sequence[int],
        encoder_state: dict[str, torch.Tensor],
        codebooks: torch.Tensor,
        offsets: torch.Tensor,
        input_mean: torch.Tensor,
        input_scale: float,
        text_to_collab: TextToCollab | None = None,
    ) -> None:
        self.encoder_dims = [int(d) for d in encoder_dims]
        self.encoder = mlp(self.encoder_dims).eval().requires_grad_(False)
        self.encoder.load_state_dict(encoder_state)
        self.codebooks = codebooks.detach().float().clone()  # (L, K, d)
        self.offsets = offsets.detach().float().clone()  # (L, K)
        self.input_mean = input_mean.detach().float().clone()  # (E,)
        self.input_scale = float(input_scale)
        self.text_to_collab = text_to_collab
        if self.offsets.shape != self.codebooks.shape[:2]:
            raise InputError(f"offsets {tuple(self.offsets.shape)} do not match codebooks")

    @property
    def num_levels(self) -> int:
        return self.codebooks.shape[0]

    def standardize(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(M, E) raw features -> (M, E) standardised float32 tensor."""
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != self.input_mean.shape[0]:
            raise InputError(f"expected (M, {self.input_mean.shape[0]}) features, got {tuple(x.shape)}")
        return (x - self.input_mean) / self.input_scale

    @torch.no_grad()
    def encode(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Latent z (M, d) of raw features (M, E), in chunks to bound memory."""
        xs = self.standardize(x)
        parts = [self.encoder(xs[i : i + CHUNK]) for i in range(0, xs.shape[0], CHUNK)]
        return torch.cat(parts) if parts else xs.new_zeros(0, self.encoder_dims[-1])

    @torch.no_grad()
    def quantize_latent(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes (M, L) of latents z (M, d), and the input residual of the last level (M, d)."""
        residual, codes = z, []
        for level in range(self.num_levels):
            last_input = residual  # after the loop: the input of the last level
            idx, _ = nearest(residual, self.codebooks[level], self.offsets[level])
            codes.append(idx)
            residual = residual - self.codebooks[level][idx]
        return torch.stack(codes, 1), last_input

    def codes(self, features: np.ndarray) -> np.ndarray:
        """Codes (M, L) int64 of quantizer inputs (M, E): what `item_features` returns."""
        codes, _ = self.quantize_latent(self.encode(features))
        return codes.numpy().astype(np.int64)

    def item_features(self, embeddings: np.ndarray, graph_features: np.ndarray | None = None) -> np.ndarray:
        """Quantizer inputs (M, E) of items from their content embeddings (M, E_x).

        graph_features: (M, E_x) propagated features H_align of these items, when they have training
        co-occurrences; they then replace `embeddings` as the content part. Without them the embeddings
        are used as they are, which is exactly H_align for an item with no co-occurrence (see `graph.py`:
        self-loops keep isolated items' content). With collaborative codes the block predicted from the
        embeddings alone is appended (`collaborative.py`).
        """
        content = embeddings if graph_features is None else graph_features
        if graph_features is not None and np.shape(graph_features) != np.shape(embeddings):
            raise InputError(
                f"graph_features {np.shape(graph_features)} != embeddings {np.shape(embeddings)}"
            )
        if self.text_to_collab is None:
            return np.asarray(content, dtype=np.float32)
        collab = self.text_to_collab.predict(embeddings)  # (M, C)
        return np.concatenate([np.asarray(content, dtype=np.float32), collab], axis=1)

    def assign(self, embeddings: np.ndarray, graph_features: np.ndarray | None = None) -> np.ndarray:
        """Codes (M, L) int64 of new items with the frozen codebook (inputs: see `item_features`)."""
        return self.codes(self.item_features(embeddings, graph_features))

    @torch.no_grad()
    def last_level_scores(self, features: np.ndarray) -> torch.Tensor:
        """Biased squared distances (M, K) of each item's last-level residual to every last-level code."""
        _, last_input = self.quantize_latent(self.encode(features))
        return sq_dists(last_input, self.codebooks[-1]) + self.offsets[-1]

    def code_sum(self, codes: np.ndarray) -> torch.Tensor:
        """Quantised latent Σ_l e_{l, c_l} (M, d) of code rows (M, L)."""
        idx = torch.as_tensor(np.asarray(codes)[:, : self.num_levels], dtype=torch.long)
        return sum(self.codebooks[level][idx[:, level]] for level in range(self.num_levels))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain tensors only; `from_state_dict` rebuilds an identical quantizer."""
        state = {ENCODER_PREFIX + k: v.clone() for k, v in self.encoder.state_dict().items()}
        state.update(
            encoder_dims=torch.tensor(self.encoder_dims, dtype=torch.long),
            codebooks=self.codebooks.clone(),
            offsets=self.offsets.clone(),
            input_mean=self.input_mean.clone(),
            input_scale=torch.tensor(self.input_scale, dtype=torch.float64),
        )
        if self.text_to_collab is not None:
            state["collab_weight"] = torch.from_numpy(self.text_to_collab.weight.copy())
            state["collab_bias"] = torch.from_numpy(self.text_to_collab.bias.copy())
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> FrozenQuantizer:
        encoder_state = {
            k[len(ENCODER_PREFIX) :]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)
        }
        text_to_collab = None
        if "collab_weight" in state:
            weight, bias = (
                np.asarray(state[key], dtype=np.float32) for key in ("collab_weight", "collab_bias")
            )
            text_to_collab = TextToCollab(weight, bias)
        return cls(
            encoder_dims=state["encoder_dims"].tolist(),
            encoder_state=encoder_state,
            codebooks=state["codebooks"],
            offsets=state["offsets"],
            input_mean=state["input_mean"],
            input_scale=float(state["input_scale"]),
            text_to_collab=text_to_collab,
        )
