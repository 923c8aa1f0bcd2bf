"""Constrained beam search of S2GR: the top-k catalog items per history, as `GenerationMixin` is to `generate`.

`ConstrainedBeamSearchMixin.recommend` is a batched, vectorised beam search constrained by the catalog's trie
in CSR form (`tokenizer.prefix_tables()`, see ARCHITECTURE.md: a few gathers per step, memory linear in the
catalog), with the thinking steps inside each beam (think -> code -> think -> code), a KV cache for decoder
self-attention, and cross-attention keys/values computed once per user and shared by its beams (beams are folded
into the query axis, nothing is copied per beam). Items each user must not get (e.g. what they have seen) prune
every trie prefix whose items are all excluded, so no top-k slot is lost to them.

Token tensors in, item indices out: turning item ids into histories and indices back into ids is the job of
`s2gr.S2GRRecommender`. Imported relatively by `modeling_s2gr.py`, so it travels with every checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput

from .errors import InputError

# Beam width and list length of a recommendation: the one default for the model, the recommender, the Trainer's
# evaluation, the CLI and the benchmarks.
DEFAULT_NUM_BEAMS = 20
DEFAULT_TOP_K = 10


@dataclass
class S2GRRecommendation(ModelOutput):
    """Top-k recommendations per user.

    item_indices: (B, top_k) catalog item indices, best first; -1 only when fewer valid items exist.
    codes: (B, top_k, L + 1) local codes (level codes 0..K-1, dedup 0..D-1) of those items; -1 for padding.
    scores: (B, top_k) sum over steps of log-probabilities renormalised over the allowed codes; -inf padding.
    """

    item_indices: torch.Tensor | None = None
    codes: torch.Tensor | None = None
    scores: torch.Tensor | None = None


@dataclass
class DecodingTrie:
    """The catalog trie on the model's device, in the CSR form of ARCHITECTURE.md (`tokenizer.prefix_tables()`).

    offsets[j] (n_j + 1,), codes[j] (n_{j+1},), items (N,); fan_out[j] = the largest child count at depth j.
    Built once per catalog (`from_prefix_tables`, or `model.decoding_trie`), so the ancestry below is computed
    once, not per batch:
    parents[j] (n_{j+1},) the depth-j parent of each depth-(j+1) node for j < L, and parents[L] (N,) the depth-L
    node of each item (by item index); sizes[j] (n_{j+1},) how many catalog items lie below each depth-(j+1) node.
    """

    offsets: list[torch.Tensor]
    codes: list[torch.Tensor]
    items: torch.Tensor
    fan_out: list[int]
    parents: list[torch.Tensor] = field(init=False)
    sizes: list[torch.Tensor] = field(init=False)

    @classmethod
    def from_prefix_tables(cls, prefix_tables: Any, num_code_steps: int, device: Any = None) -> DecodingTrie:
        """`PrefixTables`-like object or (offsets, codes, items) -> the trie on `device`, checked against the
        model's `num_code_steps` (L + 1)."""
        if isinstance(prefix_tables, DecodingTrie):  # already checked (e.g. once for every batch)
            return prefix_tables
        if hasattr(prefix_tables, "offsets"):
            parts = (prefix_tables.offsets, prefix_tables.codes, prefix_tables.items)
        else:
            parts = prefix_tables
        if len(parts) != 3:
            raise InputError(
                "prefix_tables must be (offsets, codes, items), as tokenizer.prefix_tables() gives."
            )
        offsets, codes, items = parts
        if len(offsets) != num_code_steps or len(codes) != num_code_steps:
            raise InputError(
                f"prefix_tables must hold {num_code_steps} steps (levels + dedup), got {len(offsets)}."
            )
        offsets = [torch.as_tensor(t, dtype=torch.long, device=device) for t in offsets]
        codes = [torch.as_tensor(t, dtype=torch.long, device=device) for t in codes]
        items = torch.as_tensor(items, dtype=torch.long, device=device)
        n_parents = 1
        for step, (offset, code) in enumerate(zip(offsets, codes, strict=True)):
            if offset.shape != (n_parents + 1,) or code.dim() != 1 or int(offset[-1]) != len(code):
                raise InputError(
                    f"prefix_tables step {step}: offsets must be (n_{step} + 1,) = ({n_parents + 1},) and end at "
                    f"len(codes[{step}]); see ARCHITECTURE.md."
                )
            n_parents = len(code)
        if items.shape != (n_parents,):
            raise InputError(f"prefix_tables: items must hold one item index per leaf ({n_parents}).")
        fan_out = [int(offset.diff().max()) for offset in offsets]
        return cls(offsets, codes, items, fan_out)

    def __post_init__(self) -> None:
        levels = len(self.codes) - 1
        self.parents = [self._parents(j) for j in range(levels)]
        # Leaf parent by item index; -1 for indices the trie leaves out (a trie over part of a catalog).
        leaf_parent = torch.full((int(self.items.max()) + 1,), -1, dtype=torch.long, device=self.items.device)
        self.parents.append(leaf_parent.scatter_(0, self.items, self._parents(levels)))
        self.sizes = []
        below, node = torch.ones_like(self.items), self._parents(levels)  # one item per leaf, in leaf order
        for j in range(levels - 1, -1, -1):  # depth j+1 nodes, deepest first
            below = torch.zeros(len(self.parents[j]), dtype=torch.long, device=node.device).index_add_(
                0, node, below
            )
            self.sizes.insert(0, below)
            node = self.parents[j]

    def children(self, step: int, node: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nodes (B, W) at depth `step` -> their allowed codes and children (B, W, m_step), padded with -1.

        A child is a depth-(step+1) node, or at the last step the item index.
        """
        first = self.offsets[step][node]  # (B, W)
        count = self.offsets[step][node + 1] - first
        slot = torch.arange(self.fan_out[step], device=node.device)  # (m,)
        valid = slot < count[..., None]  # (B, W, m)
        child = torch.where(valid, first[..., None] + slot, 0)
        allowed = self.codes[step][child].masked_fill(~valid, -1)
        if step == len(self.codes) - 1:
            child = self.items[child]
        return allowed, child.masked_fill(~valid, -1)

    def _parents(self, step: int) -> torch.Tensor:
        """(n_{step+1},) the depth-`step` parent of each depth-(step+1) node (or leaf, at the last step)."""
        offsets = self.offsets[step]
        return torch.repeat_interleave(torch.arange(len(offsets) - 1, device=offsets.device), offsets.diff())


def fully_excluded_nodes(trie: DecodingTrie, exclude_items: torch.Tensor) -> list[torch.Tensor]:
    """Per code level j < L: (B, n_{j+1}) True where every catalog item below that trie node is excluded.

    exclude_items (B, H), -1 padded. Excluded-item counts are pushed up the trie level by level and compared
    with the trie's subtree sizes.
    """
    batch, levels = exclude_items.shape[0], len(trie.codes) - 1
    exclude_items = exclude_items.sort(dim=1).values
    repeated = F.pad(exclude_items[:, 1:] == exclude_items[:, :-1], (1, 0), value=False)
    exclude_items = exclude_items.masked_fill(repeated, -1)  # an item listed twice must count once
    leaf_parent = trie.parents[levels]
    inside = exclude_items.clamp(min=0, max=len(leaf_parent) - 1)
    node = leaf_parent[inside]  # (B, H) depth-L node of each excluded item, -1 for an item outside the trie
    valid = (exclude_items >= 0) & (exclude_items < len(leaf_parent)) & (node >= 0)
    node = node.clamp(min=0)
    dead = [None] * levels
    for j in range(levels - 1, -1, -1):  # depth j+1 nodes, deepest first
        excluded = torch.zeros(batch, len(trie.sizes[j]), dtype=torch.long, device=node.device)
        excluded.scatter_add_(1, node, valid.long())
        dead[j] = excluded >= trie.sizes[j][None, :]
        node = trie.parents[j][node]
    return dead


class ConstrainedBeamSearchMixin:
    """`recommend` for `S2GRForGenerativeRecommendation`, as `GenerationMixin` gives `generate`.

    Reads from the model: `config`, `device`, `decoder` (with `project_memory`), `shared` (the code-token
    embeddings), `_history_memory(input_ids, attention_mask)` (encoder states and key bias the decoder reads),
    `_bos(rows)`, `_thinking_offsets()` and `_level_logits(h, level)`.
    """

    def decoding_trie(self, prefix_tables: Any) -> DecodingTrie:
        """The catalog's `PrefixTables` (or (offsets, codes, items)) checked and on this model's device: pass
        the result as `prefix_tables` to call `recommend` on many batches without redoing that work."""
        return DecodingTrie.from_prefix_tables(prefix_tables, self.config.num_code_steps, self.device)

    @torch.no_grad()
    def recommend(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        prefix_tables: Any = None,
        top_k: int = DEFAULT_TOP_K,
        num_beams: int = DEFAULT_NUM_BEAMS,
        exclude_items: torch.Tensor | None = None,
    ) -> S2GRRecommendation:
        """Top-k catalog items per history by beam search constrained to valid SIDs (call `model.eval()` first).

        input_ids, attention_mask (B, S): encoded histories (`tokenizer.encode_histories`). prefix_tables: the
        tokenizer's `PrefixTables`, (offsets, codes, items) per ARCHITECTURE.md, or a `decoding_trie`.
        exclude_items (B, H) item indices (-1 padding) never returned: a prefix whose items are all excluded is
        pruned at the step that would enter it, so every surviving beam still leads to an allowed item and
        `max(num_beams, top_k)` beams fill every top-k slot (memory O(B * N) for the per-user exclusion counts).
        """
        if top_k < 1 or num_beams < 1:
            raise InputError(f"top_k and num_beams must be >= 1, got {top_k} and {num_beams}.")
        if prefix_tables is None:
            raise InputError("prefix_tables is required (tokenizer.prefix_tables()).")
        trie = self.decoding_trie(prefix_tables)
        states, bias = self._history_memory(input_ids, attention_mask)
        batch, device = states.shape[0], states.device
        dead_nodes = None
        if exclude_items is not None:
            exclude_items = torch.as_tensor(exclude_items, dtype=torch.long, device=device).view(batch, -1)
            dead_nodes = fully_excluded_nodes(trie, exclude_items)
        # More than the catalog is the whole catalog, once: neither slots nor beams beyond N.
        top_k = min(top_k, len(trie.items))
        width = min(max(num_beams, top_k), len(trie.items))
        memory = self.decoder.project_memory(states, bias)  # once per user, shared by all its beams
        h, past = self.decoder(self._bos(batch), memory, None)
        last = h[:, -1]  # (B*W, d) output at the last fed position
        node = torch.zeros(batch, 1, dtype=torch.long, device=device)  # (B, W) trie node of each beam
        score = torch.zeros(batch, 1, dtype=states.dtype, device=device)  # (B, W) log-probability
        codes = torch.zeros(batch, 1, 0, dtype=torch.long, device=device)  # (B, W, step) chosen codes
        offsets = self._thinking_offsets()
        for step in range(self.config.num_code_steps):
            if step < self.config.num_thinking:  # think inside the beam: t = last output + p_step
                h, past = self.decoder((last + offsets[step])[:, None], memory, past)
                last = h[:, -1]
            allowed, children = trie.children(step, node)  # (B, W, m)
            candidates = score[..., None] + self._allowed_log_probs(last, step, allowed)  # (B, W, m)
            if dead_nodes is not None and step < self.config.num_levels:
                dead = dead_nodes[step].gather(1, children.clamp(min=0).flatten(1)).view_as(children)
                candidates = candidates.masked_fill(dead & (children >= 0), -math.inf)
            if step == self.config.num_levels:
                return _final_top_k(candidates, allowed, children, codes, exclude_items, top_k)
            score, index = candidates.flatten(1).topk(min(width, candidates[0].numel()), dim=1)  # (B, W')
            beam = index.div(allowed.shape[2], rounding_mode="floor")
            node = children.flatten(1).gather(1, index).clamp(min=0)  # dead (-inf) beams park on node 0
            code = allowed.flatten(1).gather(1, index)
            codes = torch.cat([codes.gather(1, beam[..., None].expand(-1, -1, step)), code[..., None]], dim=2)
            rows = (beam + torch.arange(batch, device=device)[:, None] * allowed.shape[1]).flatten()
            past = [(k[rows], v[rows]) for k, v in past]  # reorder the self-attention cache by source beam
            token = code.clamp(min=0).view(-1, 1) + self.config.code_offset(step)
            h, past = self.decoder(self.shared(token), memory, past)
            last = h[:, -1]
        raise AssertionError("unreachable: the dedup step returns")

    def _allowed_log_probs(self, last: torch.Tensor, step: int, allowed: torch.Tensor) -> torch.Tensor:
        """Outputs (B*W, d) and allowed codes (B, W, m) -> log-probabilities renormalised over them (B, W, m)."""
        logits = self._level_logits(last, step).view(*allowed.shape[:2], -1)
        logits = logits.gather(-1, allowed.clamp(min=0)).masked_fill(allowed < 0, -math.inf)
        return logits.log_softmax(-1)


def _final_top_k(
    candidates: torch.Tensor,
    allowed: torch.Tensor,
    items: torch.Tensor,
    codes: torch.Tensor,
    exclude_items: torch.Tensor | None,
    top_k: int,
) -> S2GRRecommendation:
    """Dedup step (B, W, m): mask exclusions, pick the top-k items, pad with -1 if fewer exist."""
    dead = items < 0
    if exclude_items is not None:
        excluded = (items[..., None] == exclude_items[:, None, None, :]) & (
            exclude_items[:, None, None, :] >= 0
        )
        dead = dead | excluded.any(-1)
    score, index = (
        candidates.masked_fill(dead, -math.inf).flatten(1).topk(min(top_k, candidates[0].numel()), dim=1)
    )
    beam = index.div(allowed.shape[2], rounding_mode="floor")
    prefix = codes.gather(1, beam[..., None].expand(-1, -1, codes.shape[2]))
    full_codes = torch.cat([prefix, allowed.flatten(1).gather(1, index)[..., None]], dim=2)  # (B, k, L+1)
    found = score > -math.inf
    item = items.flatten(1).gather(1, index).masked_fill(~found, -1)
    full_codes = full_codes.masked_fill(~found[..., None], -1)
    missing = top_k - score.shape[1]
    return S2GRRecommendation(
        item_indices=F.pad(item, (0, missing), value=-1),
        codes=F.pad(full_codes, (0, 0, 0, missing), value=-1),
        scores=F.pad(score, (0, missing), value=-math.inf),
    )


__all__ = [
    "DEFAULT_NUM_BEAMS",
    "DEFAULT_TOP_K",
    "ConstrainedBeamSearchMixin",
    "DecodingTrie",
    "S2GRRecommendation",
    "fully_excluded_nodes",
]
