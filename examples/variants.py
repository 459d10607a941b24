"""
The GRPO variants of mgrpo.py (docs/variants.md) on the digits toy task, one seed each, beside plain MGRPO:

    python examples/variants.py              # 6 runs of 150 steps, one torch thread each

Each run is examples/toy.py's run_toy (the same warm-started model for every run), with one variant's flags.
Results: a table on stdout and variants.json in --out (default: a new folder in examples/runs/, ignored by git).
"""
import numerics  # noqa: F401  (first, before torch: pins the CPU kernels, see numerics.py)
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toy  # noqa: E402

VARIANTS = {  # name -> (label, mgrpo flags as keywords)
    "mgrpo": ("MGRPO (the defaults)", {}),
    "l2_norm_trained": ("Layer 2's N = the corrections trained, `--l2-loss-norm trained`", {"l2_loss_norm": "trained"}),
    "scale_none": ("Dr. GRPO's advantages, `--scale-rewards none`", {"scale_rewards": "none"}),
    "sum_norm": ("Dr. GRPO's normaliser, `--loss-agg seq-mean-token-sum-norm`", {"loss_agg": "seq-mean-token-sum-norm"}),
    "clip_higher_mu2": ("DAPO's clip-higher, `--clip-eps-high 0.28 --mu 2`", {"clip_eps_high": 0.28, "mu": 2}),
    "gspo_mu2": ("GSPO, `--importance-sampling sequence --mu 2`", {"importance_sampling": "sequence", "mu": 2}),
}


def main(argv=None):
    p = argparse.ArgumentParser(description="GRPO variants on the digits toy task, one seed.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--n-eval", type=int, default=200, help="held-out problems evaluated before and after")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (results depend on it)")
    p.add_argument("--out", default=None, help="folder for variants.json (default: a new folder in examples/runs/)")
    opts = p.parse_args(argv)
    torch.set_num_threads(opts.threads)
    out = opts.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs",
                                   f"variants-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(out, exist_ok=True)
    results, cache = {}, {}
    print("| run | Acc@t1 | Acc@t2 | Δi→c | Δc→i | sampled correction rate | optimizer steps | rollout tokens | seconds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, (label, flags) in VARIANTS.items():
        t = time.time()
        r = toy.run_toy(opts.seed, opts.steps, out, curve_every=0, n_eval=opts.n_eval, log=None, warm_cache=cache,
                        **flags)
        r["wall_s"] = time.time() - t
        results[name] = r
        a = r["after"]
        print(f"| {label} | {a['acc_t1']:.3f} | {a['acc_t2']:.3f} | {a['delta_i2c']:.3f} | {a['delta_c2i']:.3f} | "
              f"{r['sampled_corr_after']:.3f} | {r['optimizer_steps']} | {r['rollout_tokens']:,} | {r['wall_s']:.0f} |",
              flush=True)
        with open(os.path.join(out, "variants.json"), "w") as f:
            json.dump({"seed": opts.seed, "steps": opts.steps, "threads": opts.threads, "runs": results,
                       "numerics": numerics.numerics(opts.threads)}, f)


if __name__ == "__main__":
    main()
