"""Backbones (plain torch, torchvision-compatible keys) and hashing networks."""
from .backbones import Backbone, build_backbone
from .nets import ImgNet, TxtNet

__all__ = ["Backbone", "build_backbone", "ImgNet", "TxtNet"]
