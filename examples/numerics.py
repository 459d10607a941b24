"""
The same toy numbers on every x86-64 CPU with AVX2: import this module before torch.

A toy run is deterministic on one machine, but its last bits depend on the kernels each library picks for
the CPU it finds, and RL amplifies last-bit differences into different runs: the same 20-step command gave
GRPO 15,258 rollout tokens with torch's AVX-512 kernels, 15,306 with its AVX2 ones and 15,247 with its
plain C++ ones, on one machine (the warm start, before RL, was the same on all three). So the examples pin
every kernel path they use to its AVX2 variant, which any x86-64 CPU with AVX2 runs the same way, Intel or
AMD, with or without AVX-512:

  ATEN_CPU_CAPABILITY=avx2   torch's own vectorised kernels (softmax, norms, reductions, attention)
  MKL_CBWR=AVX2,STRICT       MKL's matrix multiplies: its AVX2 code path whatever the CPU offers, and
                             results independent of memory alignment (conditional numerical reproducibility)
  ONEDNN_MAX_CPU_ISA=AVX2    oneDNN, in case an operation reaches it

Each is read once, when torch first loads, so this module must be imported before torch; the examples
import it first. numerics() records what the process really runs with, and every result stores it: on an
ARM machine, a CPU without AVX2, another torch, or in a process that had loaded torch before this module
(a test, a notebook), the record says so and the numbers may differ. MGRPO_NATIVE_KERNELS=1 leaves the
kernels to the libraries (faster on some CPUs; other numbers), as the processes of a process that loaded
torch first do.
"""
import os
import platform
import sys

PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2"}
X86 = platform.machine().lower() in ("x86_64", "amd64")
# Pinned only where these names mean the kernels above, and only if torch has not loaded yet.
PINNED_HERE = X86 and "torch" not in sys.modules and os.environ.get("MGRPO_NATIVE_KERNELS") != "1"
if PINNED_HERE:
    os.environ.update(PINNED)


def numerics(threads):
    """What decides the last bits of a toy run in this process: a dict for the result files."""
    import torch
    import transformers
    return {"torch": torch.__version__, "transformers": transformers.__version__, "machine": platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "pinned": PINNED if PINNED_HERE else None,
            "dtype": "float32", "threads": threads}


def describe(n):
    """One line for a table's footer: numerics() in words."""
    pinned = ("pinned (" + ", ".join(f"{k}={v}" for k, v in n["pinned"].items()) + ")") if n["pinned"] else \
        "not pinned"
    return (f"{n['threads']} torch thread{'s' if n['threads'] > 1 else ''}, torch {n['torch']}, transformers "
            f"{n['transformers']}, {n['machine']} with {n['cpu_capability']} kernels {pinned}, {n['dtype']}")
