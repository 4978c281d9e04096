"""Masked multi-head attention whose memory grows linearly with sequence length.

Keys that are masked (occluded or padded tokens) receive no attention; a query
with no valid key outputs zeros (never NaN). The "chunked" implementation
processes queries in chunks under `jax.checkpoint`, so neither the forward pass
nor the backward pass holds more than (chunk x L) scores per head at a time.

Shapes: B any batch of sequences (b*n for attention over time, b*t over tracks),
L sequence length, H heads, D head width.
"""

from __future__ import annotations

import einops
import jax
import jax.numpy as jnp
from flax import nnx

_NEG = -1e30


def _attend(q, k, v, key_mask):
  """Masked softmax attention, float32 accumulation.

  Args:
    q: (B, Lq, H, D); k, v: (B, L, H, D); key_mask: (B, L) bool.

  Returns:
    (B, Lq, H, D) in q's dtype.
  """
  scale = q.shape[-1] ** -0.5
  s = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
  m = key_mask[:, None, None, :]
  s = jnp.where(m, s, _NEG)
  p = jnp.exp(s - jax.lax.stop_gradient(s.max(-1, keepdims=True))) * m
  denom = p.sum(-1, keepdims=True)
  p = p / jnp.maximum(denom, 1e-30)
  return jnp.einsum("bhqk,bkhd->bqhd", p.astype(v.dtype), v, preferred_element_type=jnp.float32).astype(q.dtype)


def dot_product_attention(q, k, v, key_mask, impl: str = "chunked", chunk_size: int = 256):
  """Attention with a boolean key mask, by the chosen implementation.

  Args:
    q, k, v: (B, L, H, D).
    key_mask: (B, L) True for keys that may be attended to.
    impl: "chunked", "full" or "cudnn" (fused; GPU only).
    chunk_size: queries per chunk for "chunked".

  Returns:
    (B, L, H, D); rows whose keys are all masked are zero.
  """
  if impl == "cudnn":
    out = jax.nn.dot_product_attention(q, k, v, mask=key_mask[:, None, None, :], implementation="cudnn")
    return out * key_mask.any(-1)[:, None, None, None]
  length = q.shape[1]
  if impl == "full" or length <= chunk_size:
    return _attend(q, k, v, key_mask)
  pad = -length % chunk_size
  qp = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0)))
  chunks = einops.rearrange(qp, "b (c l) h d -> c b l h d", l=chunk_size)
  out = jax.lax.map(jax.checkpoint(lambda qc: _attend(qc, k, v, key_mask)), chunks)
  return einops.rearrange(out, "c b l h d -> b (c l) h d")[:, :length]


def rotary(x, positions):
  """Rotary position encoding (RoPE) on the last axis of x (…, L, H, D) at
  integer positions (…, L): attention scores then depend on position differences
  only, so the model is usable at any clip length and any start frame."""
  d = x.shape[-1]
  freqs = 1.0 / (10_000.0 ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
  angle = positions[..., None, None].astype(jnp.float32) * freqs  # (…, L, 1, D/2)
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  x1, x2 = x[..., 0::2].astype(jnp.float32), x[..., 1::2].astype(jnp.float32)
  out = jnp.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
  return einops.rearrange(out, "... d two -> ... (d two)").astype(x.dtype)


class MultiHeadAttention(nnx.Module):
  """Multi-head self-attention with a key mask and optional rotary positions."""

  def __init__(self, dim: int, num_heads: int, head_dim: int, *, impl: str, chunk_size: int, dtype, rngs: nnx.Rngs):
    self.num_heads, self.head_dim = num_heads, head_dim
    self.impl, self.chunk_size = impl, chunk_size
    self.qkv = nnx.Linear(dim, 3 * num_heads * head_dim, dtype=dtype, rngs=rngs)
    self.out = nnx.Linear(num_heads * head_dim, dim, dtype=dtype, rngs=rngs)

  def __call__(self, x, key_mask, positions=None):
    """x: (B, L, dim); key_mask: (B, L) bool; positions: (B, L) ints for RoPE or None."""
    qkv = einops.rearrange(self.qkv(x), "b l (three h d) -> three b l h d", three=3, h=self.num_heads)
    q, k, v = qkv[0], qkv[1], qkv[2]
    if positions is not None:
      q, k = rotary(q, positions), rotary(k, positions)
    o = dot_product_attention(q, k, v, key_mask, self.impl, self.chunk_size)
    return self.out(einops.rearrange(o, "b l h d -> b l (h d)"))


class TransformerLayer(nnx.Module):
  """Pre-LN transformer layer: x + MHA(LN x), then x + MLP(LN x), GELU."""

  def __init__(self, dim: int, num_heads: int, head_dim: int, mlp_dim: int, *, impl: str, chunk_size: int, dtype,
               rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
    self.attn = MultiHeadAttention(dim, num_heads, head_dim, impl=impl, chunk_size=chunk_size, dtype=dtype, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
    self.mlp_in = nnx.Linear(dim, mlp_dim, dtype=dtype, rngs=rngs)
    self.mlp_out = nnx.Linear(mlp_dim, dim, dtype=dtype, rngs=rngs)

  def __call__(self, x, key_mask, positions=None):
    x = x + self.attn(self.norm1(x), key_mask, positions)
    return x + self.mlp_out(jax.nn.gelu(self.mlp_in(self.norm2(x))))
