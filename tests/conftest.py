import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("CMHASH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_file(*parts) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p}")
    return p
