"""A small MobileNetV2 (Sandler et al. 2018) for 28 px inputs.

Inverted residuals with depthwise 3x3 convolutions and ReLU6: the hard case for low-bit
quantization (depthwise weights have few values per channel; ReLU6 ranges are tight).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = [conv_bn(cin, hidden, 1)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, act=False)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


# (expand t, out channels c, repeats n, first stride s) -- MobileNetV2's table, shrunk for 28 px
SMALL_SETTING = [(1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 64, 2, 1)]


class MobileNetV2Small(nn.Module):
    def __init__(self, in_chans: int = 1, num_classes: int = 10, stem: int = 16, last: int = 128):
        super().__init__()
        blocks: list[nn.Module] = [conv_bn(in_chans, stem, 3)]
        cin = stem
        for t, c, n, s in SMALL_SETTING:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        blocks.append(conv_bn(cin, last, 1))
        self.body = nn.Sequential(*blocks)
        self.fc = nn.Linear(last, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
