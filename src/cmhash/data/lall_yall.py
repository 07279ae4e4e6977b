"""The LAll/YAll layout that MIRFlickr-25K, NUS-WIDE (top-10), MS-COCO and IAPR TC-12 share (DJSRH /
DCMH processing): ``<prefix>-lall.mat`` (LAll, n x C labels), ``<prefix>-yall.mat`` (YAll, n x d
bag-of-words), and images either raw (``<prefix>-iall.mat``, IAll, uint8, HDF5, read lazily) or
as features (``<prefix>-iall-vgg.mat``, XAll, n x 4096). Both MAT v5 and v7.3 files are read. Each
dataset is its own module (``mirflickr``, ``nuswide``, ``mscoco``, ``iapr``) over ``lall_loader``.
"""
from __future__ import annotations

from ..registry import register_dataset
from .base import DataError, PairedData, data_root, validate_paired
from .matio import MatFile
from .protocol import LoadedDataset


def load_lall_yall(root, prefix: str, name: str, images: str = "auto", layout: str = "matlab",
                   drop_empty_labels: bool = False) -> PairedData:
    """Load the LAll/YAll(/IAll|XAll) layout; ``images`` is 'auto', 'pixels' or 'features'."""
    root = data_root(root, name)
    lab_f, txt_f = root / f"{prefix}-lall.mat", root / f"{prefix}-yall.mat"
    pix_f, feat_f = root / f"{prefix}-iall.mat", root / f"{prefix}-iall-vgg.mat"
    labels = MatFile(lab_f).matrix("LAll")
    texts = MatFile(txt_f).matrix("YAll")
    if images == "auto":
        images = "pixels" if pix_f.exists() else "features" if feat_f.exists() else "missing"
    if images == "pixels":
        imgs, kind, src = MatFile(pix_f).images("IAll", layout), "pixels", pix_f
    elif images == "features":
        imgs, kind, src = MatFile(feat_f).matrix("XAll"), "features", feat_f
    elif images == "missing":
        raise DataError(f"{root}: no image file: expected {pix_f.name} (IAll) or {feat_f.name} (XAll)")
    else:
        raise DataError(f"unknown images option {images!r}; use 'auto', 'pixels' or 'features'")
    if len(labels) != len(texts) or len(labels) != imgs.shape[0]:
        raise DataError(f"{root}: row counts differ: {lab_f.name} {len(labels)}, {txt_f.name} {len(texts)}, "
                        f"{src.name} {imgs.shape[0]}")
    data = PairedData(imgs, texts, labels, name=name, image_kind=kind,
                      info={"files": [str(lab_f), str(txt_f), str(src)]})
    return validate_paired(data, f"{root}/{prefix}-*.mat", drop_empty_labels)


def lall_loader(name: str, prefix: str, first_factor: int, help: str):
    @register_dataset(name, help=help)
    def load(root=None, images: str = "auto", layout: str = "matlab", drop_empty_labels: bool = False,
             prefix: str = prefix, **_):
        data = load_lall_yall(root, prefix, name, images, layout, drop_empty_labels)
        return LoadedDataset(data, "djsrh", {"n_query": 2000, "n_train": 5000, "first_factor": first_factor})

    return load
