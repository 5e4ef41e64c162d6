"""Stable-SAM in napari: an npe2 plugin (`napari.yaml`) with one dock widget and sample images.

Installed with the `[napari]` extra. Importing this package imports neither napari nor Qt nor
torch; the widget module does (napari loads it when the widget is opened)."""

import sys


def avoid_llvm_clash() -> None:
    """With Mesa's software OpenGL (llvmpipe: virtual displays, remote desktops, VMs), napari's
    canvas has loaded Mesa's LLVM into the process; importing Triton (which PyTorch's CUDA wheels
    bring, and torchvision imports through torch._dynamo) then loads a second LLVM and the
    process crashes. The plugin runs no compiled kernels, so Triton is kept out when LLVM is
    already loaded (`import triton` then raises ImportError, which torch handles)."""
    if "triton" in sys.modules or "torch._dynamo" in sys.modules:
        return
    try:
        with open("/proc/self/maps") as maps:
            llvm = "libLLVM" in maps.read()
    except OSError:  # not Linux
        return
    if llvm:
        sys.modules["triton"] = None


avoid_llvm_clash()  # before the widget module imports torch
