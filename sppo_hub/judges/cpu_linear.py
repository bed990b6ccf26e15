"""Linear layers for CPU inference: oneDNN with prepacked weights (fp32 or bf16), or dynamic int8.

Why hand-written: torch's eager CPU `nn.Linear` in fp32 calls MKL's sgemm, which on the AMD CPU this project is
measured on runs ~170 GFLOP/s where oneDNN, with the weight reordered once into its blocked layout, runs ~440
(same fp32 arithmetic, 2.6x; bf16 inputs ~930). torch exposes that path only inside `torch.compile` (inductor's
freezing pass packs weights with the two `torch.ops.mkldnn` ops used below); no library offers it as an eager
module, so this one wraps exactly those two ops. Numbers: benchmarks/README.md (ranking).

`compute_dtype=torch.bfloat16` on a float32 model is torch's "fp32 matmuls may run in bf16" applied to the
linear layers only: the weight is rounded to bf16 once, the input per call, oneDNN accumulates in fp32, the
output is rounded to bf16 and returned in the layer's dtype; everything between the linears (attention,
softmax, layer norm, residual sums) stays in fp32. A GELU right after a linear layer (BERT-style
`intermediate` blocks) is folded into it as oneDNN's post-op (`use_onednn_linears`): the activation is applied
in fp32 to the accumulator, so in bf16 the output is rounded once, after the GELU, instead of before and after
it, and its bf16 output feeds the next linear layer without a round trip through fp32.
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

ACTIVATIONS = {"none": "", "gelu": "none"}  # oneDNN post-op -> its algorithm argument ("none": erf GELU, torch's default)


@functools.cache
def onednn_available() -> bool:
    """Whether this torch has the oneDNN linear ops used here, and they compute a @ w.T (+ other, or GELU) right.

    They are internal ops (inductor's), so a torch without them, or with another signature, falls back to
    torch's nn.Linear instead of failing.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        a, w, other = torch.ones(2, 3), torch.arange(12.0).view(4, 3), torch.ones(2, 4)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, None)
        plain = torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")
        fused = torch.ops.mkldnn._linear_pointwise.binary(a, other, w, None, "add")
        gelu = torch.ops.mkldnn._linear_pointwise(a * 0.1, packed, None, "gelu", [], ACTIVATIONS["gelu"])
    except (AttributeError, RuntimeError, TypeError):
        return False
    return (torch.equal(plain, a @ w.T) and torch.equal(fused, a @ w.T + other)
            and torch.allclose(gelu, nn.functional.gelu(0.1 * a @ w.T), atol=1e-5))


class OneDNNLinear(nn.Module):
    """Inference-only stand-in for an `nn.Linear` on CPU: weight prepacked for oneDNN in `compute_dtype`.

    The packed weight is an opaque oneDNN tensor kept as a plain attribute (not a parameter), so the module cannot
    be moved or trained: build it last, on a model that stays put. Its state dict still holds `weight` and `bias`
    as ordinary tensors (unpacked on demand, in `compute_dtype`), so `model.state_dict()` keeps its keys.
    """

    def __init__(self, linear: nn.Linear, compute_dtype: torch.dtype = torch.float32, activation: str = "none",
                 output_dtype: torch.dtype | None = None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.compute_dtype, self.activation = compute_dtype, activation
        self.output_dtype = output_dtype or linear.weight.dtype
        with torch.no_grad():
            weight = linear.weight.detach().to(compute_dtype)
            self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight, None)
            self.packed_bias = None if linear.bias is None else linear.bias.detach().to(compute_dtype).clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.mkldnn._linear_pointwise(x.to(self.compute_dtype), self.packed_weight, self.packed_bias,
                                               self.activation, [], ACTIVATIONS[self.activation])
        return y.to(self.output_dtype)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        destination[prefix + "weight"] = self.packed_weight.to_dense()
        if self.packed_bias is not None:
            destination[prefix + "bias"] = self.packed_bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, compute_dtype={self.compute_dtype}, "
                f"activation={self.activation}, output_dtype={self.output_dtype}")


def _is_erf_gelu(module: nn.Module) -> bool:
    from transformers.activations import GELUActivation

    return type(module) is GELUActivation and module.act is nn.functional.gelu


def use_onednn_linears(model: nn.Module, compute_dtype: torch.dtype = torch.float32) -> int:
    """Replace every `nn.Linear` under `model` (on CPU) by a `OneDNNLinear`; returns how many were replaced.

    transformers' BERT-style intermediate blocks (`dense` then an erf `intermediate_act_fn`) get the GELU folded
    into the linear layer (the activation module becomes an identity; no parameters move, so state dicts keep
    their keys), with the output left in `compute_dtype` for the next linear layer.
    """
    replaced = 0
    for parent in list(model.modules()):
        dense, act = getattr(parent, "dense", None), getattr(parent, "intermediate_act_fn", None)
        if type(dense) is nn.Linear and dense.weight.device.type == "cpu" and _is_erf_gelu(act):
            parent.dense = OneDNNLinear(dense, compute_dtype, activation="gelu", output_dtype=compute_dtype)
            parent.intermediate_act_fn = nn.Identity()
            replaced += 1
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child.weight.device.type == "cpu":
                setattr(parent, name, OneDNNLinear(child, compute_dtype))
                replaced += 1
    return replaced


def quantize_linear_int8(model: nn.Module) -> nn.Module:
    """`model`'s nn.Linear layers as torch's dynamic int8 linear (int8 weights, fp32 in and out), CPU only.

    torch.ao's eager API is deprecated in favour of torchao, which is not a dependency here; it still
    ships with torch 2.13 and runs on the x86 (fbgemm / VNNI) backend, so its deprecation notices are silenced.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
