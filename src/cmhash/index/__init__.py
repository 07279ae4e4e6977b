"""Indexes over packed binary codes: exact exhaustive (own kernel or faiss), multi-index hashing,
an approximate inverted file, Milvus; see ``base.HammingIndex`` for the interface and ``store.IndexStore`` for collections."""
from .base import HammingIndex, HashIndexError, as_packed, load_index, make_index
from .flat import FaissFlatIndex, FlatIndex
from ..kernels import kernel_name
from .ivf import IVFIndex
from .mih import MultiIndexHashing
from .milvus import MilvusIndex

__all__ = ["HammingIndex", "HashIndexError", "as_packed", "load_index", "make_index", "FlatIndex",
           "FaissFlatIndex", "MultiIndexHashing", "IVFIndex", "MilvusIndex", "kernel_name"]
