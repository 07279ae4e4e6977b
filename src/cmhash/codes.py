"""Binary codes, in one place: the sign convention, the code length, packing.

- **Sign**: a real code value v becomes the bit +1 when v >= 0 and -1 otherwise (an exact 0 maps
  to +1, where ``torch.sign`` would give 0). Packing, evaluation, training targets, the baselines
  and the encoder all binarise through ``sign``.
- **Code length**: a positive multiple of 8 (``check_code_length``), because codes are stored
  packed 8 bits a byte. Training, ``encode --bits``, the indexes and sweeps check it here.
- **Packing** follows faiss's layout: n x K/8 uint8, bit j of the code in byte j // 8 at bit
  position j % 8 (least significant first), bit value 1 for +1.
"""
from __future__ import annotations

import numpy as np

from .utils import CmhashError


def sign(x):
    """{-1, +1} of ``x`` by the convention above: a torch tensor keeps its dtype and device, anything
    else becomes an int8 numpy array."""
    if hasattr(x, "new_ones"):  # a torch tensor (torch is not imported for numpy callers)
        return (x >= 0).to(x.dtype) * 2 - 1
    return np.where(np.asarray(x) >= 0, 1, -1).astype(np.int8)


def sign_codes(outputs) -> np.ndarray:
    """Real outputs (n, K), tensor or array -> int8 {-1, +1} codes on the CPU."""
    if hasattr(outputs, "detach"):
        outputs = outputs.detach().cpu().numpy()
    return sign(outputs)


def check_code_length(bits) -> int:
    """A code length every stage takes (training, packing, indexes): a positive multiple of 8."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 8 or bits % 8:
        raise CmhashError(f"code length {bits!r}: give a positive multiple of 8 (16, 32, 64, 128 ...); codes are "
                          "stored packed, 8 bits a byte")
    return int(bits)


def binarize(codes) -> np.ndarray:
    """Real-valued (or {-1,+1}, or {0,1}-as-bool) codes (n, K) -> int8 {-1,+1}."""
    a = np.asarray(codes)
    if a.ndim != 2:
        raise CmhashError(f"codes must be 2-D (n, K), got shape {a.shape}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise CmhashError("codes contain NaN or inf")
    if a.dtype == bool:
        return np.where(a, 1, -1).astype(np.int8)
    return sign(a)


def pack_codes(codes) -> np.ndarray:
    """{-1,+1} (or real) n x K codes -> n x K/8 uint8 (faiss layout)."""
    b = binarize(codes)
    check_code_length(b.shape[1])
    return np.packbits(b > 0, axis=1, bitorder="little")


def unpack_codes(packed, n_bits: int | None = None) -> np.ndarray:
    """n x K/8 uint8 -> n x K int8 {-1,+1}."""
    p = np.asarray(packed)
    if p.dtype != np.uint8 or p.ndim != 2:
        raise CmhashError(f"packed codes must be a 2-D uint8 array, got {p.dtype} {p.shape}")
    bits = np.unpackbits(p, axis=1, bitorder="little", count=n_bits)
    return np.where(bits > 0, 1, -1).astype(np.int8)
