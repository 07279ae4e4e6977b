"""Backbones (plain torch, torchvision-compatible keys) and hashing networks."""
from .backbones import Backbone, build_backbone
from .fusion import FusionImageFeatures
from .isqrt_cov import ISqrtCov, covariance, newton_schulz_sqrt, triu_vec
from .nets import ImgNet, TxtNet, sign_ste
from .strip_pool import StripPooling
from .twin_bottleneck import TwinBottleneck, hamming_adjacency

__all__ = ["Backbone", "build_backbone", "FusionImageFeatures", "ISqrtCov", "ImgNet", "StripPooling", "TwinBottleneck",
           "TxtNet", "covariance", "hamming_adjacency", "newton_schulz_sqrt", "sign_ste", "triu_vec"]
