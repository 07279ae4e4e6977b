"""Paired image-text data: the abstraction, the community's file formats, protocols, the demo set."""
from .base import DataError, PairedData, validate_paired
from .protocol import Split, make_split
from .synthetic import make_synthetic

__all__ = ["DataError", "PairedData", "validate_paired", "Split", "make_split", "make_synthetic", "load_dataset"]


def load_dataset(name: str, root: str | None = None, **options):
    """Load a registered dataset by name (``cmhash list`` shows them); returns a ``LoadedDataset``."""
    from ..overrides import check_kwargs
    from ..registry import DATASETS

    loader = DATASETS.get(name)
    options = check_kwargs(loader, options, f"{name} dataset")  # an unknown or mistyped option is an error
    return loader(root=root, **options)
