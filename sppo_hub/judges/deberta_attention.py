"""DeBERTa-v2 disentangled attention through `scaled_dot_product_attention`, for PairRM inference.

Hand-written because transformers' DeBERTa-v2 has no SDPA path (its `DisentangledSelfAttention` has one
eager implementation). That implementation writes the (batch, heads, L, L) score tensor several times over:
q k^T, the content->position and position->content terms, their sum, the mask, the softmax and the
product with V, and it copies the relative-position projections once per sequence in the batch. Here the
two position terms are gathered once into one additive bias (padding folded in) and SDPA does q k^T +
bias, softmax and the product with V in one fused kernel; the position projections are shared across the
batch by broadcasting. Same arithmetic, different summation order: logits agree with the eager module to
~1e-6 in fp32 (tests/test_deberta_attention.py checks against transformers' module, tests/test_pairrm.py
against llm-blender).

Only what PairRM uses is taken over (eval mode, relative attention with c2p and p2c, shared keys, one
relative-position table for the batch); anything else falls back to transformers' own forward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.deberta_v2.modeling_deberta_v2 import DisentangledSelfAttention


class SDPADisentangledSelfAttention(DisentangledSelfAttention):
    """transformers' DisentangledSelfAttention with an SDPA forward for inference (same parameters)."""

    def _fusable(self, query_states, relative_pos, rel_embeddings, output_attentions) -> bool:
        return (
            not self.training
            and not output_attentions
            and query_states is None
            and self.relative_attention
            and self.share_att_key
            and set(self.pos_att_type) == {"c2p", "p2c"}
            and relative_pos is not None
            and rel_embeddings is not None
            and relative_pos.dim() in (2, 3, 4)
            and math.prod(relative_pos.shape[:-2]) == 1
        )

    def forward(self, hidden_states, attention_mask, output_attentions=False, query_states=None,
                relative_pos=None, rel_embeddings=None):
        if not self._fusable(query_states, relative_pos, rel_embeddings, output_attentions):
            return super().forward(hidden_states, attention_mask, output_attentions, query_states,
                                   relative_pos, rel_embeddings)
        batch, length, _ = hidden_states.shape
        heads = self.num_attention_heads

        def split_heads(x: torch.Tensor) -> torch.Tensor:  # (n, L, H*D) -> (n, H, L, D)
            return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)

        query = split_heads(self.query_proj(hidden_states))
        key = split_heads(self.key_proj(hidden_states))
        value = split_heads(self.value_proj(hidden_states))
        # 1 (content) + c2p + p2c, as in the eager module: every term is divided by sqrt(3 * head_dim)
        scale = math.sqrt(query.shape[-1] * 3)
        span = self.pos_ebd_size
        positions = rel_embeddings[: 2 * span].unsqueeze(0)
        pos_key = split_heads(self.key_proj(positions))  # (1, H, 2*span, D): broadcast over the batch
        pos_query = split_heads(self.query_proj(positions))
        rel = relative_pos.reshape(length, length).to(device=query.device, dtype=torch.long)
        c2p_index = torch.clamp(rel + span, 0, 2 * span - 1).expand(batch, heads, length, length)
        p2c_index = torch.clamp(span - rel, 0, 2 * span - 1).expand(batch, heads, length, length)
        bias = torch.gather(torch.matmul(query, pos_key.transpose(-1, -2)), -1, c2p_index)
        p2c = torch.gather(torch.matmul(key, pos_query.transpose(-1, -2)), -1, p2c_index)
        bias.add_(p2c.transpose(-1, -2)).div_(scale)
        # the eager module fills masked scores with the dtype's minimum (fully masked rows stay finite)
        bias.masked_fill_(~attention_mask.bool(), torch.finfo(bias.dtype).min)
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=1.0 / scale)
        return context.transpose(1, 2).reshape(batch, length, -1), None


def use_sdpa_attention(model: nn.Module) -> int:
    """Switch every DeBERTa-v2 self-attention module in `model` to the SDPA forward; returns how many.

    The modules keep their parameters and names (only the class changes), so state dicts are unaffected.
    """
    switched = 0
    for module in model.modules():
        if type(module) is DisentangledSelfAttention:
            module.__class__ = SDPADisentangledSelfAttention
            switched += 1
    return switched
