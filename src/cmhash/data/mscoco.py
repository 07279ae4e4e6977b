"""MS-COCO (Lin et al., ECCV 2014) in the LAll/YAll/IAll layout (``lall_yall``)."""
from .lall_yall import lall_loader

load = lall_loader("mscoco", "mscoco", 1, "MS-COCO in the LAll/YAll/IAll layout (mscoco-*.mat)")
