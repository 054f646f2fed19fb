"""The paper's classifiers in PyTorch, with the reference code's state-dict names.

The reference is github.com/jongdory/Latent-HE (`models/*.py`); the Rust side
(`src/nn`) loads what `export_safetensors` writes. Structure and parameter
names follow the reference exactly; where the reference has a bug it is fixed
or documented here:

* `PolyAct` (the reference's `polynom_act`) starts at alpha=beta=c=0 in the
  reference, which makes every activation output 0 and the first gradients
  degenerate; ours starts at POLY_INIT (alpha=0.1, beta=0.5, c=0.0).
* VGG5 and HefNet register ONE activation instance as relu1..relu4 (their
  state dicts hold four copies of the same three scalars), and the
  reference's VGG5 `forward` applies `relu2` after conv3. The instance is
  kept shared (that is what a checkpoint holds); with a shared instance
  relu2 and relu3 are the same function, so `forward` below calls relu3.
* The reference's training picks the best checkpoint on the test set and its
  per-class F1 swaps prediction and threshold: training concerns, not here.

Architectures (`arch` names as the Rust side spells them): resnet20/32/44/56,
lenet5, vgg5, hefnet; `se=True` adds the squeeze-and-excitation block
(`attn`). Latents: f=2 -> 2x128x128, f=4 -> 3x64x64, f=8 -> 4x32x32,
f=16 -> 8x16x16.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

POLY_INIT = (0.1, 0.5, 0.0)
"""Initial (alpha, beta, c) of every PolyAct: alpha*x^2 + beta*x + c."""

LATENTS = {2: (2, 128, 128), 4: (3, 64, 64), 8: (4, 32, 32), 16: (8, 16, 16)}

RESNET_BLOCKS = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9}


class PolyAct(nn.Module):
    """alpha*x^2 + beta*x + c with learnable scalars of shape [1] (reference: polynom_act)."""

    def __init__(self, init=POLY_INIT):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor([float(init[0])]))
        self.beta = nn.Parameter(torch.tensor([float(init[1])]))
        self.c = nn.Parameter(torch.tensor([float(init[2])]))

    def forward(self, x):
        return self.alpha * (x**2) + self.beta * x + self.c


class ApproxSigmoid(nn.Module):
    """alpha*x^3 + beta*x + c, initialised near the sigmoid (reference: approxSigmoid)."""

    def __init__(self):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor([-0.00001]))
        self.beta = nn.Parameter(torch.tensor([0.12]))
        self.c = nn.Parameter(torch.tensor([0.5]))

    def forward(self, x):
        return self.alpha * x**3 + self.beta * x + self.c


class SEBlock(nn.Module):
    """Squeeze and excitation with polynomial activations, reduction 16."""

    def __init__(self, planes, reduction=16):
        super().__init__()
        if planes % reduction != 0:
            raise ValueError(f"{planes} channels are not a multiple of the reduction {reduction}")
        self.linear1 = nn.Linear(planes, planes // reduction, bias=True)
        self.lelu = PolyAct()
        self.linear2 = nn.Linear(planes // reduction, planes, bias=True)
        self.sigmoid = ApproxSigmoid()

    def forward(self, x):
        y = x.mean(dim=(2, 3))
        y = self.sigmoid(self.linear2(self.lelu(self.linear1(y))))
        return x * y[:, :, None, None]


class BasicBlock(nn.Module):
    """conv-bn-act-conv-bn (+SE) plus shortcut; no activation after the add."""

    def __init__(self, in_planes, planes, stride=1, se=False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = PolyAct()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.attn = SEBlock(planes) if se else None

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.attn is not None:
            out = self.attn(out)
        return out + self.shortcut(x)


class ResNet(nn.Module):
    """CIFAR-style ResNet, widths 16/32/64."""

    def __init__(self, num_blocks=(3, 3, 3), se=False, in_channels=4, num_classes=14):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, num_blocks[0], 1, se)
        self.layer2 = self._make_layer(32, num_blocks[1], 2, se)
        self.layer3 = self._make_layer(64, num_blocks[2], 2, se)
        self.linear = nn.Linear(64, num_classes)
        self.relu = PolyAct()

    def _make_layer(self, planes, n, stride, se):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(BasicBlock(self.in_planes, planes, s, se))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size(3))
        return self.linear(out.flatten(1))


class LeNet5(nn.Module):
    def __init__(self, in_channels=4, num_classes=14, se=False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 5)
        self.relu1 = PolyAct()
        self.avgpool1 = nn.AvgPool2d(2, 2)
        self.conv2 = nn.Conv2d(32, 64, 5, groups=4)
        self.relu2 = PolyAct()
        self.avgpool2 = nn.AvgPool2d(2, 2)
        self.conv3 = nn.Conv2d(64, 128, 5)
        self.attn = SEBlock(128) if se else None
        self.relu3 = PolyAct()
        self.avgpool3 = nn.AdaptiveAvgPool2d(1)
        self.linear1 = nn.Linear(128, 64)
        self.relu4 = PolyAct()
        self.linear2 = nn.Linear(64, num_classes)

    def forward(self, x):
        out = self.avgpool1(self.relu1(self.conv1(x)))
        out = self.avgpool2(self.relu2(self.conv2(out)))
        out = self.conv3(out)
        if self.attn is not None:
            out = self.attn(out)
        out = self.avgpool3(self.relu3(out)).flatten(1)
        return self.linear2(self.relu4(self.linear1(out)))


class VGG5(nn.Module):
    def __init__(self, in_channels=4, input_size=32, num_classes=14, se=False):
        super().__init__()
        act = PolyAct()  # one instance, registered four times (as in the reference)
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1, bias=False)
        self.relu1 = act
        self.avgpool1 = nn.AvgPool2d(2, 2)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, groups=8, bias=False)
        self.relu2 = act
        self.avgpool2 = nn.AvgPool2d(2, 2)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, groups=8, bias=False)
        self.relu3 = act
        self.avgpool3 = nn.AvgPool2d(2, 2)
        self.conv4 = nn.Conv2d(128, 256, 3, padding=1, groups=8, bias=False)
        self.relu4 = act
        self.avgpool4 = nn.AvgPool2d(2, 2)
        self.attn = SEBlock(256) if se else None
        d = input_size // 16
        self.linear1 = nn.Linear(256 * d * d, num_classes, bias=False)

    def forward(self, x):
        out = self.avgpool1(self.relu1(self.conv1(x)))
        out = self.avgpool2(self.relu2(self.conv2(out)))
        out = self.avgpool3(self.relu3(self.conv3(out)))
        out = self.relu4(self.conv4(out))
        if self.attn is not None:
            out = self.attn(out)
        return self.linear1(self.avgpool4(out).flatten(1))


class HefNet(nn.Module):
    def __init__(self, in_channels=4, input_size=32, num_classes=14, se=False, widths=(64, 128, 256)):
        super().__init__()
        act = PolyAct()  # one instance, registered four times (as in the reference)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu1 = act
        self.conv2 = nn.Conv2d(widths[0], widths[1], 3, groups=8)
        self.bn2 = nn.BatchNorm2d(widths[1])
        self.relu2 = act
        self.avgpool1 = nn.AvgPool2d(2, 2)
        self.conv3 = nn.Conv2d(widths[1], widths[2], 3, groups=8)
        self.bn3 = nn.BatchNorm2d(widths[2])
        self.relu3 = act
        self.avgpool2 = nn.AvgPool2d(2, 2)
        k4 = 1 if input_size == 16 else 3
        self.conv4 = nn.Conv2d(widths[2], widths[2], k4, groups=8)
        self.bn4 = nn.BatchNorm2d(widths[2])
        self.relu4 = act
        self.avgpool3 = nn.AvgPool2d(2, 2)
        self.attn = SEBlock(widths[2]) if se else None
        d = 1 if input_size == 16 else (((input_size - 4) // 2 - 2) // 2 - 2) // 2
        self.linear1 = nn.Linear(widths[2] * d * d, num_classes)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.avgpool1(self.relu2(self.bn2(self.conv2(x))))
        x = self.avgpool2(self.relu3(self.bn3(self.conv3(x))))
        x = self.bn4(self.conv4(x))
        if self.attn is not None:
            x = self.attn(x)
        x = self.avgpool3(self.relu4(x))
        return self.linear1(x.flatten(1))


def build(arch, se=False, num_classes=14, latent=(4, 32, 32)):
    """The model `arch` (resnet20/32/44/56, lenet5, vgg5, hefnet) for a C x H x W latent."""
    c, h, _ = latent
    if arch in RESNET_BLOCKS:
        n = RESNET_BLOCKS[arch]
        return ResNet((n, n, n), se=se, in_channels=c, num_classes=num_classes)
    if arch == "lenet5":
        return LeNet5(in_channels=c, num_classes=num_classes, se=se)
    if arch == "vgg5":
        return VGG5(in_channels=c, input_size=h, num_classes=num_classes, se=se)
    if arch == "hefnet":
        return HefNet(in_channels=c, input_size=h, num_classes=num_classes, se=se)
    raise ValueError(f"unknown architecture {arch!r}")


def export_safetensors(model, path, arch, se, classes, latent, dtype=torch.float32, input_clip=None):
    """Saves `model.state_dict()` with the metadata the Rust loader reads.

    `input_clip` (a positive number or None) is recorded as the `input_clip`
    key: the model was trained on latents clamped to +-input_clip, and every
    client must clamp the same way before predicting or encrypting.

    Shared tensors (VGG5's and HefNet's relu1..relu4) are stored as separate
    copies; integer buffers (num_batches_tracked) keep their dtype.
    """
    from safetensors.torch import save_file

    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().clone().contiguous()
        tensors[name] = t.to(dtype) if t.is_floating_point() else t
    meta = {
        "arch": arch,
        "se": "true" if se else "false",
        "classes": ",".join(classes),
        "latent": "x".join(str(v) for v in latent),
    }
    if input_clip is not None:
        meta["input_clip"] = repr(float(input_clip))
    save_file(tensors, path, metadata=meta)
