"""Architectures the registry does not have, for the user-model tests (and as --model-def targets:
each function follows torch.hub's hubconf convention, returning an untrained network)."""

import torch.nn as nn


class VGGBN(nn.Module):
    """VGG-style: conv-BN-ReLU pairs, max pooling, a flattened classifier."""

    def __init__(self, classes: int = 10):
        super().__init__()
        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*block(1, 8), nn.MaxPool2d(2), *block(8, 16), nn.MaxPool2d(2),
                                      *block(16, 16), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 3 * 3, 32), nn.BatchNorm1d(32), nn.ReLU(),
                                        nn.Linear(32, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class DepthwiseSeparable(nn.Module):
    """MobileNet-v1 style: depthwise 3x3 + pointwise 1x1 convs, each with BN and ReLU6."""

    def __init__(self, classes: int = 10):
        super().__init__()
        def dw_pw(i, o, stride):
            return [nn.Conv2d(i, i, 3, stride, 1, groups=i, bias=False), nn.BatchNorm2d(i), nn.ReLU6(),
                    nn.Conv2d(i, o, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU6()]
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.body = nn.Sequential(*dw_pw(16, 32, 1), *dw_pw(32, 48, 2))
        self.head = nn.Linear(48, classes)

    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean((2, 3)))


def vgg_bn():
    return VGGBN()


def dw_net():
    return DepthwiseSeparable()


def broken():
    raise RuntimeError("this definition is broken on purpose")


def not_a_module():
    return "a string"
