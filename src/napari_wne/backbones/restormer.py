"""A small Restormer-style transformer (Zamir et al., CVPR 2022), in 2-D and 3-D.

It is here because it has what architectural NE cannot have: softmax attention and
LayerNorm. Attention is "transposed" (between channels, not pixels), so its cost grows
linearly with the image size and whole microscopy tiles fit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._nd import (
    LOW_PRECISION,
    Interval,
    autocast_off,
    check_spatial_dims,
    conv,
    conv_transpose,
    crop,
    grow,
    hull,
    pad_to_multiple,
    radius,
    through_down,
    through_up,
)

__all__ = ["Restormer"]

DEFAULT_WIDTH = 24
DEFAULT_BLOCKS = (2, 2, 4)
DEFAULT_HEADS = (1, 2, 4)
DEFAULT_FFN_EXPANSION = 2.0
DEFAULT_REFINEMENT_BLOCKS = 0


def _channels_last(spatial_dims: int) -> torch.memory_format:
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel, with a per-channel weight and bias."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Statistics in float32 at least (bf16 variances of near-flat features are noise),
        # whatever autocast would pick. Moving channels last is free for channels-last
        # tensors, which is how the network keeps its features.
        dtype = torch.float32 if x.dtype in LOW_PRECISION else x.dtype
        with autocast_off(x.device.type):
            out = F.layer_norm(
                x.movedim(1, -1).to(dtype),
                self.weight.shape,
                self.weight.to(dtype),
                self.bias.to(dtype),
                self.eps,
            )
        return out.movedim(-1, 1).to(x.dtype)


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention: softmax attention between channels.

    q, k, v come from a 1x1 then a depthwise 3x3 convolution (local context, cheaply); q and
    k are L2-normalized over the pixels, so a learnable per-head temperature sets how sharp
    the (C/heads x C/heads) softmax is.
    """

    def __init__(self, spatial_dims: int, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = conv(spatial_dims, channels, 3 * channels, 1, bias=False)
        self.qkv_dw = conv(
            spatial_dims, 3 * channels, 3 * channels, 3, groups=3 * channels, bias=False
        )
        self.project = conv(spatial_dims, channels, channels, 1, bias=False)

    def attention(self, qk: torch.Tensor) -> torch.Tensor:
        """The (N, heads, C/heads, C/heads) attention map (a method so tests can freeze it).

        `qk` is (N, pixels, 2, heads, C/heads). One Gram matrix of q and k together holds
        both q.k and the norms of q and k: dividing by the norms equals L2-normalizing q and
        k first, without more passes over the (large) features. Summed over a whole tile,
        squared norms overflow float16, so low-precision inputs are summed in float32.
        """
        dtype = torch.float32 if qk.dtype in LOW_PRECISION else qk.dtype
        with autocast_off(qk.device.type):
            qk = qk.to(dtype)
            gram = torch.einsum("npahi,npbhj->nhaibj", qk, qk)
        q_norm = gram[:, :, 0, :, 0, :].diagonal(dim1=-2, dim2=-1).sqrt().clamp_min(1e-12)
        k_norm = gram[:, :, 1, :, 1, :].diagonal(dim1=-2, dim2=-1).sqrt().clamp_min(1e-12)
        cosine = gram[:, :, 0, :, 1, :] / (q_norm[..., :, None] * k_norm[..., None, :])
        return (cosine * self.temperature).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        qkv = self.qkv_dw(self.qkv(x))
        # Channels-last features make this a view: (N, pixels, q/k/v, heads, C/heads).
        qkv = qkv.movedim(1, -1).reshape(n, -1, 3, self.heads, c // self.heads)
        attn = self.attention(qkv[:, :, :2]).to(qkv.dtype)
        out = torch.einsum("nhij,nphj->nphi", attn, qkv[:, :, 2])
        return self.project(out.reshape(n, *x.shape[2:], c).movedim(-1, 1))


class GDFN(nn.Module):
    """Gated depthwise-conv feed-forward: GELU(branch 1) * branch 2, both depthwise 3x3."""

    def __init__(self, spatial_dims: int, channels: int, expansion: float) -> None:
        super().__init__()
        hidden = max(1, int(channels * expansion))
        self.project_in = conv(spatial_dims, channels, 2 * hidden, 1, bias=False)
        self.dw = conv(spatial_dims, 2 * hidden, 2 * hidden, 3, groups=2 * hidden, bias=False)
        self.project_out = conv(spatial_dims, hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.dw(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class TransformerBlock(nn.Module):
    """Pre-norm block: x + MDTA(LN(x)), then x + GDFN(LN(x))."""

    def __init__(self, spatial_dims: int, channels: int, heads: int, expansion: float) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels)
        self.attn = MDTA(spatial_dims, channels, heads)
        self.norm2 = ChannelLayerNorm(channels)
        self.ffn = GDFN(spatial_dims, channels, expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def _stage(
    spatial_dims: int, channels: int, heads: int, blocks: int, expansion: float
) -> nn.Sequential:
    return nn.Sequential(
        *(TransformerBlock(spatial_dims, channels, heads, expansion) for _ in range(blocks))
    )


class Restormer(nn.Module):
    """Restormer-style encoder-decoder; the width doubles at each coarser level.

    Parameters
    ----------
    spatial_dims:
        2 for images, 3 for volumes.
    channels:
        Image channels in and out.
    width:
        Feature maps at full resolution.
    blocks:
        Transformer blocks per level, finest first; the last entry is the bottleneck. Its
        length (2 or 3, or more) sets the number of levels; inputs are padded internally to
        a multiple of ``2 ** (len(blocks) - 1)``.
    heads:
        Attention heads per level (must divide that level's width).
    ffn_expansion:
        Hidden width of the feed-forward network, relative to its input.
    refinement_blocks:
        Extra blocks at full resolution after the decoder (4 in the original).
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 2,
        channels: int = 1,
        width: int = DEFAULT_WIDTH,
        blocks: tuple[int, ...] = DEFAULT_BLOCKS,
        heads: tuple[int, ...] = DEFAULT_HEADS,
        ffn_expansion: float = DEFAULT_FFN_EXPANSION,
        refinement_blocks: int = DEFAULT_REFINEMENT_BLOCKS,
    ) -> None:
        super().__init__()
        sd = check_spatial_dims(spatial_dims)
        blocks = tuple(int(b) for b in blocks)
        heads = tuple(int(h) for h in heads)
        if len(blocks) < 1 or len(blocks) != len(heads):
            raise ValueError(f"blocks {blocks} and heads {heads} must name the same levels")
        widths = tuple(width * 2**level for level in range(len(blocks)))
        self.embed = conv(sd, channels, width, bias=False)
        self.encoders = nn.ModuleList(
            _stage(sd, w, h, b, ffn_expansion)
            for w, h, b in zip(widths[:-1], heads[:-1], blocks[:-1], strict=True)
        )
        self.downs = nn.ModuleList(conv(sd, w, 2 * w, 2, stride=2, bias=False) for w in widths[:-1])
        self.latent = _stage(sd, widths[-1], heads[-1], blocks[-1], ffn_expansion)
        self.ups = nn.ModuleList(conv_transpose(sd, 2 * w, w, bias=False) for w in widths[:-1])
        self.reduces = nn.ModuleList(conv(sd, 2 * w, w, 1, bias=False) for w in widths[:-1])
        self.decoders = nn.ModuleList(
            _stage(sd, w, h, b, ffn_expansion)
            for w, h, b in zip(widths[:-1], heads[:-1], blocks[:-1], strict=True)
        )
        self.refinement = _stage(sd, width, heads[0], refinement_blocks, ffn_expansion)
        self.output = conv(sd, width, channels, bias=False)
        self.spatial_dims = sd
        self.levels = len(blocks)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x_in, window = pad_to_multiple(y, 2 ** (self.levels - 1))
        # Channels-last features: oneDNN's depthwise and 1x1 convolutions run about twice as
        # fast on CPU, and the channel LayerNorm reads contiguous memory.
        x = self.embed(x_in).contiguous(memory_format=_channels_last(self.spatial_dims))
        skips = []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.latent(x)
        for up, reduce, decoder, skip in zip(
            reversed(self.ups),
            reversed(self.reduces),
            reversed(self.decoders),
            reversed(skips),
            strict=True,
        ):
            x = decoder(reduce(torch.cat((up(x), skip), dim=1)))
        x = self.refinement(x)
        # Global residual: the features only have to describe the correction.
        return crop(x_in + self.output(x), window)

    @staticmethod
    def receptive_field(
        *,
        blocks: tuple[int, ...] = DEFAULT_BLOCKS,
        refinement_blocks: int = DEFAULT_REFINEMENT_BLOCKS,
    ) -> int:
        """Radius in pixels of the convolutional path.

        Each block reaches 2 pixels further (the depthwise 3x3 in MDTA and in GDFN). The
        attention map itself pools over the whole input, so every output depends a little
        on every input pixel; this radius is where the strong, local dependence ends.
        """
        levels = len(blocks)

        def encoder(level: int, iv: Interval) -> Interval:
            iv = grow(iv, 2 * blocks[level])
            return grow(iv, 1) if level == 0 else encoder(level - 1, through_down(iv))

        def decoder(level: int, iv: Interval) -> Interval:
            if level == levels - 1:
                return encoder(level, iv)
            iv = grow(iv, 2 * blocks[level])
            return hull(decoder(level + 1, through_up(iv)), encoder(level, iv))

        def network(iv: Interval) -> Interval:
            features = grow(iv, 1 + 2 * refinement_blocks)  # output conv, refinement blocks
            return hull(decoder(0, features), iv)  # global residual

        return radius(network, 2 ** (levels - 1))
