"""Backbones (plain torch, torchvision-compatible keys) and hashing networks."""
from .attention import AttentionPool, BagTokens, GlobalLocalEncoder, cross_attention_similarity
from .backbones import Backbone, build_backbone
from .fusion import FusionImageFeatures
from .isqrt_cov import ISqrtCov, covariance, newton_schulz_sqrt, triu_vec
from .memory import Memory
from .nets import ImgNet, TxtNet, sign_ste
from .strip_pool import StripPooling
from .supervised_nets import (Discriminator, ImageEncoder, InputNorm, MLPHash, MultiScaleText, SemanticHashNet, lab_net,
                              ssah_txt_net)
from .twin_bottleneck import TwinBottleneck, hamming_adjacency

__all__ = ["AttentionPool", "BagTokens", "Discriminator", "GlobalLocalEncoder", "ImageEncoder", "InputNorm",
           "MLPHash", "Memory", "MultiScaleText", "SemanticHashNet", "cross_attention_similarity", "lab_net",
           "ssah_txt_net", "Backbone", "build_backbone", "FusionImageFeatures", "ISqrtCov", "ImgNet", "StripPooling",
           "TwinBottleneck", "TxtNet", "covariance", "hamming_adjacency", "newton_schulz_sqrt", "sign_ste", "triu_vec"]
