"""NUS-WIDE (Chua et al., CIVR 2009), its 10 most frequent concepts (``lall_yall``)."""
from .lall_yall import lall_loader

load = lall_loader("nuswide", "nus-wide-tc10", 1, "NUS-WIDE top-10 (nus-wide-tc10-{lall,yall,iall|iall-vgg}.mat)")
