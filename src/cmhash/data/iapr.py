"""IAPR TC-12 (Grubinger et al., 2006) in the LAll/YAll/IAll layout (``lall_yall``)."""
from .lall_yall import lall_loader

load = lall_loader("iapr", "iapr-tc12", 1, "IAPR TC-12 in the LAll/YAll/IAll layout (iapr-tc12-*.mat)")
