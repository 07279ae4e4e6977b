"""The sign convention, in one place: a real code value v becomes the bit +1 when v >= 0 and -1
otherwise (an exact 0 maps to +1, where ``torch.sign`` would give 0). Packing, evaluation,
training targets, the baselines and the encoder all binarise through ``sign``.
"""
from __future__ import annotations

import numpy as np


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
