"""MIRFlickr-25K (Huiskes and Lew, MIR 2008): 20,015 pairs with 24 labels after the usual cleaning (``lall_yall``)."""
from .lall_yall import lall_loader

load = lall_loader("mirflickr", "mirflickr25k", 2, "MIRFlickr-25K (mirflickr25k-{lall,yall,iall|iall-vgg}.mat)")
