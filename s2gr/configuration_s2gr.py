"""Configuration of the S2GR model (stepwise semantic-guided latent reasoning for generative recommendation).

Imports only `transformers` and sibling modules (`.errors`, `.layout_s2gr`, whose `TokenLayout` defines the
token-id layout shared with `S2GRTokenizer`), so that `register_for_auto_class` copies it, and its imports, next
to a checkpoint.
"""

from __future__ import annotations

from typing import ClassVar

from transformers import AutoConfig, PreTrainedConfig

from .errors import InputError
from .layout_s2gr import NUM_SPECIAL_TOKENS, TokenLayout

ENCODER_MODES = ("causal", "bidirectional")
CODES_PER_CLUSTER = 16  # Kc = 16 at K = 256
MIN_CLUSTERS = 4


def num_clusters_for(codebook_size: int) -> int:
    """Kc for K codes per level: 16 codes per cluster (Kc = 16 at K = 256), at least 4 clusters (at most K).

    The one rule for the default Kc: the codebook builder and the model config both use it, so a model
    configured by hand for a codebook of the same K expects the same number of clusters.
    """
    return min(codebook_size, max(MIN_CLUSTERS, codebook_size // CODES_PER_CLUSTER))


class S2GRConfig(PreTrainedConfig):
    r"""
    Defaults reproduce TIGER's T5 (4 + 4 layers, d_model 128, 6 heads x 64, FFN 1024, dropout 0.1) with S2GR's
    thinking tokens switched on (`num_thinking = num_levels`); `num_thinking=0` is the TIGER baseline.

    Args:
        num_levels: semantic code levels L per item (the dedup level comes on top).
        codebook_size: codes K per level.
        dedup_size: codes D of the disambiguation level.
        num_thinking: thinking steps T; `None` means `num_levels` (S2GR), 0 means TIGER.
        vocab_size: derived from the layout; a given value must match it.
        d_model, d_kv, num_heads, d_ff: transformer sizes (inner attention dim `num_heads * d_kv` may differ from
            `d_model`, as in T5); `d_kv=None` means `d_model // num_heads`.
        encoder_layers, decoder_layers: depth of encoder and main decoder.
        aux_decoder_layers: depth of the auxiliary decoder that gives v_g; `None` means half the decoder.
        dropout_rate, layer_norm_epsilon, initializer_factor: as in T5.
        relative_attention_num_buckets, relative_attention_max_distance: T5 relative position buckets.
        encoder_mode: "bidirectional" (exact TIGER encoder) or "causal" (tokens of item j see items <= j within a
            band of `max_history_items` items; enables the one-pass fast training mode).
        max_history_items: history window W in items (TIGER: 20): the items whose encoder states the decoder
            reads. In causal mode the encoder reads `context_items` items to compute them.
        num_clusters: coarse clusters Kc per level for the alignment loss; `None` means `num_clusters_for(K)`.
        align_temperature: tau of the alignment softmax over cosine similarities.
        infonce_temperature: temperature of the in-batch InfoNCE of the auxiliary decoder.
        reg_lambda: lambda, the weight of the first-step regulariser L_Reg (it has no other weight).
        rec_loss_weight, align_loss_weight, infonce_loss_weight: weights of the other loss terms. The paper's
            cluster alignment (`align_loss_weight`) is off by default: level on MovieLens-100K and -1M
            validation, lower on an unseen MovieLens log (benchmarks/RESULTS.md); 1 restores the paper's loss.
        label_smoothing: epsilon of the next-SID cross-entropy, spread over the valid codes of each step
            (the dedup step has only `dedup_size`); 0 (the default) is plain cross-entropy.
        aux_detach_memory: the auxiliary decoder reads a stop-gradient copy of the encoder states, so InfoNCE
            trains only that decoder and the encoder learns from the next-SID, alignment and L_Reg terms alone
            (the paper does not say; off by default, an ablation).
    """

    model_type = "s2gr"
    attribute_map: ClassVar[dict[str, str]] = {
        "hidden_size": "d_model",
        "num_attention_heads": "num_heads",
        "num_hidden_layers": "encoder_layers",
        "head_dim": "d_kv",
    }

    num_levels: int = 3
    codebook_size: int = 256
    dedup_size: int = 16
    num_thinking: int | None = None
    vocab_size: int | None = None
    d_model: int = 128
    d_kv: int | None = 64
    num_heads: int = 6
    d_ff: int = 1024
    encoder_layers: int = 4
    decoder_layers: int = 4
    aux_decoder_layers: int | None = None
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    encoder_mode: str = "bidirectional"
    max_history_items: int = 20
    num_clusters: int | None = None
    align_temperature: float = 0.1
    infonce_temperature: float = 0.1
    reg_lambda: float = 0.1
    rec_loss_weight: float = 1.0
    align_loss_weight: float = 0.0
    infonce_loss_weight: float = 1.0
    label_smoothing: float = 0.0
    aux_detach_memory: bool = False
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2
    decoder_start_token_id: int = 1
    is_encoder_decoder: bool = True
    use_cache: bool = True
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs) -> None:
        if self.num_thinking is None:
            self.num_thinking = self.num_levels
        if self.d_kv is None:
            self._check_positive("num_heads", "d_model")
            if self.d_model % self.num_heads:
                raise InputError(
                    f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads}) when d_kv is None; "
                    "set d_kv explicitly or change num_heads."
                )
            self.d_kv = self.d_model // self.num_heads
        if self.aux_decoder_layers is None:
            self.aux_decoder_layers = max(1, self.decoder_layers // 2)
        if self.num_clusters is None:
            self.num_clusters = num_clusters_for(self.codebook_size)
        self._validate()
        expected_vocab = self.layout_vocab_size
        if self.vocab_size is not None and self.vocab_size != expected_vocab:
            raise InputError(
                f"vocab_size={self.vocab_size} does not match the token layout 4 + L*K + D + T = {expected_vocab}; "
                "leave vocab_size unset, it is derived from num_levels, codebook_size, dedup_size, num_thinking."
            )
        self.vocab_size = expected_vocab
        super().__post_init__(**kwargs)

    def _check_positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}.")

    def _validate(self) -> None:
        self._check_positive(
            "num_levels",
            "codebook_size",
            "dedup_size",
            "d_model",
            "d_kv",
            "num_heads",
            "d_ff",
            "encoder_layers",
            "decoder_layers",
            "aux_decoder_layers",
            "max_history_items",
            "num_clusters",
        )
        if self.num_thinking not in (0, self.num_levels):
            raise InputError(
                f"num_thinking must be 0 (TIGER) or num_levels={self.num_levels} (S2GR: one thinking step per "
                f"level), got {self.num_thinking}."
            )
        if self.num_clusters > self.codebook_size:
            raise InputError(
                f"num_clusters ({self.num_clusters}) cannot exceed codebook_size ({self.codebook_size})."
            )
        if self.encoder_mode not in ENCODER_MODES:
            raise InputError(f"encoder_mode must be one of {ENCODER_MODES}, got {self.encoder_mode!r}.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InputError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise InputError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}.")
        for name in ("align_temperature", "infonce_temperature", "layer_norm_epsilon", "initializer_factor"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}.")
        for name in ("reg_lambda", "rec_loss_weight", "align_loss_weight", "infonce_loss_weight"):
            if not getattr(self, name) >= 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}.")
        # T5 buckets: half exact, half logarithmic up to max_distance (halved again when bidirectional).
        if self.relative_attention_num_buckets < 4:
            raise InputError(
                f"relative_attention_num_buckets must be >= 4, got {self.relative_attention_num_buckets}."
            )
        if self.relative_attention_max_distance <= self.relative_attention_num_buckets // 2:
            raise InputError(
                "relative_attention_max_distance must exceed relative_attention_num_buckets // 2, got "
                f"{self.relative_attention_max_distance} and {self.relative_attention_num_buckets}."
            )
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            if getattr(self, name) not in range(NUM_SPECIAL_TOKENS):
                raise InputError(
                    f"{name} must be one of the special ids 0..3 of the layout, got {getattr(self, name)}."
                )

    @property
    def layout(self) -> TokenLayout:
        """The token-id layout of these sizes (`layout_s2gr.py`)."""
        return TokenLayout(self.num_levels, self.codebook_size, self.dedup_size, self.num_thinking)

    @property
    def layout_vocab_size(self) -> int:
        """4 + L*K + D + T, the vocabulary size implied by the token layout."""
        return self.layout.vocab_size

    @property
    def context_items(self) -> int:
        """Most recent history items the model's prediction depends on.

        Bidirectional: the `max_history_items` = W items the decoder reads. Causal: each encoder layer lets an
        item see the W - 1 items before it, so the states of the W items the decoder reads depend on
        W + encoder_layers * (W - 1) items. The fast training mode shares encoder states across a user's
        targets and so gives each target that whole receptive field; reading as many items at recommendation
        time makes both paths compute the same logits (older items change nothing).
        """
        window = self.max_history_items
        if self.encoder_mode == "causal":
            return window + self.encoder_layers * (window - 1)
        return window

    @property
    def num_code_steps(self) -> int:
        """Code tokens per item: the L levels and the dedup code."""
        return self.num_levels + 1

    @property
    def label_length(self) -> int:
        """Decoder labels per target: 2L + 1 with thinking placeholders, L + 1 without."""
        return self.num_levels + 1 + self.num_thinking

    def code_offset(self, level: int) -> int:
        """Token id of code 0 of `level` (level == num_levels is the dedup level)."""
        return self.layout.code_offset(level)

    def level_size(self, level: int) -> int:
        """Number of codes of `level` (K, or D for the dedup level)."""
        return self.layout.level_size(level)

    def think_token_id(self, step: int) -> int:
        """Token id of <think_{step+1}>."""
        return self.layout.think_token_id(step)


S2GRConfig.register_for_auto_class()  # save_pretrained copies this file and names it in auto_map
if __package__ == "s2gr":  # only the installed package registers "s2gr" for every folder; a copy loaded as
    # remote code must not, or later folders would run this folder's code without trust_remote_code
    AutoConfig.register("s2gr", S2GRConfig, exist_ok=True)

__all__ = ["S2GRConfig", "num_clusters_for"]
