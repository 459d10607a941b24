"""What flushing a checkpoint to the disk costs: mgrpo.save_checkpoint as it is (every file and both
directories fsynced around the rename) against the same save with fsync switched off, on a random
Qwen2.5-0.5B-shaped model (12 bytes per parameter on disk: fp32 weights + AdamW's two moments).

    python bench/checkpoint_fsync.py [--layers 24] [--repeat 3] [--dir /tmp/ckpt-bench]

Timed in alternation, so the page cache and the disk see both the same way; prints seconds per checkpoint.
CPU-only and about 6 GB of disk at the default shape (--layers 4 for a quick look).
"""
import argparse
import os
import random
import shutil
import sys
import time
from types import SimpleNamespace

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import mgrpo  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=24, help="decoder layers of the 0.5B shape (24 = the real one)")
    p.add_argument("--repeat", type=int, default=3, help="checkpoints timed per setting")
    p.add_argument("--dir", default="/tmp/ckpt-bench", help="where the checkpoints are written (then removed)")
    a = p.parse_args()
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
    import toy
    tiny = toy.build_tiny(os.path.join(a.dir, "tok"))
    cfg = Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=a.layers, num_attention_heads=14,
                      num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    for q in model.parameters():                     # AdamW's moments exist after one step
        q.grad = torch.zeros_like(q)
    opt.step()
    run = SimpleNamespace(policy=model, opt=opt, device=torch.device("cpu"),
                          tk=SimpleNamespace(tok=AutoTokenizer.from_pretrained(tiny)))
    args = mgrpo.build_parser().parse_args(["--model", "x", "--output-dir", a.dir])
    n = sum(q.numel() for q in model.parameters())
    real_fsync, times = os.fsync, {"fsync": [], "no fsync": []}
    for k in range(a.repeat):
        for setting in ("fsync", "no fsync"):
            os.fsync = real_fsync if setting == "fsync" else (lambda fd: None)
            t = time.time()
            path = mgrpo.save_checkpoint(a.dir, k + 1, run, random.Random(0), args)
            times[setting].append(time.time() - t)
            shutil.rmtree(path)
    os.fsync = real_fsync
    shutil.rmtree(a.dir)
    print(f"{n / 1e6:.0f}M parameters, {12 * n / 1e9:.2f} GB per checkpoint; seconds per checkpoint:")
    for setting, ts in times.items():
        print(f"  {setting:9s} " + " ".join(f"{t:.2f}" for t in ts) + f"   median {sorted(ts)[len(ts) // 2]:.2f}")


if __name__ == "__main__":
    main()
