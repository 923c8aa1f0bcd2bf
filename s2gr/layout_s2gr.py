"""The token-id layout of S2GR, defined once for the model config and the tokenizer.

With `L = num_levels`, `K = codebook_size`, `D = dedup_size` and `T = num_thinking` (see ARCHITECTURE.md):

    0..3                    <pad>, <bos>, <eos>, <unk>
    4 + l*K + c             <s{l+1}_{c}>   code c of level l (l < L)
    4 + L*K + d             <d_{d}>        disambiguation ("dedup") code d
    4 + L*K + D + t         <think_{t+1}>  placeholder in labels; its embedding row is the level offset p_{t+1}

Code step `j` (levels `0..L-1`, then the dedup step `j = L`) therefore starts at token id `4 + j*K`. The layout
depends on the four sizes only, never on the items, so a catalog can grow without moving a token id.

Standard library only: imported relatively by `configuration_s2gr.py` and `catalog_s2gr.py`, so it travels
with every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}
NUM_SPECIAL_TOKENS = len(SPECIAL_TOKENS)


@dataclass(frozen=True)
class TokenLayout:
    """Token ids of the codes, dedup codes and thinking steps for the sizes L, K, D and T."""

    num_levels: int
    codebook_size: int
    dedup_size: int
    num_thinking: int

    @property
    def num_code_steps(self) -> int:
        """Code tokens per item: the L levels and the dedup code."""
        return self.num_levels + 1

    @property
    def code_token_offset(self) -> int:
        """Id of `<s1_0>`, the first code token."""
        return NUM_SPECIAL_TOKENS

    @property
    def think_token_offset(self) -> int:
        """Id of `<think_1>`."""
        return NUM_SPECIAL_TOKENS + self.num_levels * self.codebook_size + self.dedup_size

    @property
    def vocab_size(self) -> int:
        """4 + L*K + D + T."""
        return self.think_token_offset + self.num_thinking

    def code_offset(self, step: int) -> int:
        """Token id of code 0 of code step `step` (`step == num_levels` is the dedup step)."""
        return NUM_SPECIAL_TOKENS + step * self.codebook_size

    def level_size(self, step: int) -> int:
        """Number of codes of code step `step` (K, or D at the dedup step)."""
        return self.dedup_size if step == self.num_levels else self.codebook_size

    def think_token_id(self, step: int) -> int:
        """Token id of `<think_{step+1}>`, `step` 0-based."""
        return self.think_token_offset + step

    def tokens(self) -> list[str]:
        """The vocabulary's token strings in id order."""
        levels = [
            f"<s{level + 1}_{code}>" for level in range(self.num_levels) for code in range(self.codebook_size)
        ]
        dedup = [f"<d_{d}>" for d in range(self.dedup_size)]
        think = [f"<think_{t + 1}>" for t in range(self.num_thinking)]
        return [*SPECIAL_TOKENS.values(), *levels, *dedup, *think]


__all__ = ["NUM_SPECIAL_TOKENS", "SPECIAL_TOKENS", "TokenLayout"]
