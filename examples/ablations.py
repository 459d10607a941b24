"""
The paper's own questions about MGRPO, asked on the toy tasks of toy.py (CPU, minutes to hours).

    python examples/ablations.py compute --seeds 0 --steps 20 --methods grpo mgrpo   # the quick mode: a minute
    python examples/ablations.py compute --jobs 2       # GRPO, matched-token GRPO, MGRPO (both Layer-2 normalisers),
                                                        # 10 seeds, two one-thread processes
    python examples/ablations.py compute --task addition --jobs 2      # the same on the addition task
    python examples/ablations.py hsweep                  # H in {2, 4, 8, 16} for MGRPO
    python examples/ablations.py report --out DIR        # the tables and PNGs again from DIR's saved results

compute: does Layer 2 make Layer 1 better, or is MGRPO's edge just more compute? MGRPO takes two optimizer
steps per training step and samples more. So beside GRPO and MGRPO it can run (--methods) GRPO with twice
the steps (as many optimizer steps as MGRPO), GRPO with G raised until its rollout tokens per step match
MGRPO's (G is computed from the MGRPO runs of the same call), MGRPO with Layer 2's N = B·G
(--l2-loss-norm batch), MGRPO without selection (--l2-select all: plain GRPO on q') and MGRPO with a
correction round for every answer (--l2-inputs all). Every run also records held-out Acc@t1, the sampled
correction rate and the greedy Δi→c and Δc→i every --curve-every steps (the learning curves), and each
training step's rewards, gradient norms and corrections trained.
hsweep: sensitivity to H, the number of corrections per q'.

Paired seeds. Every method of a seed starts from that seed's warm-started model (the intrinsic baseline,
the first row of every table), and with two seeds or more the table adds each comparison's paired
difference: the mean over seeds of (method - baseline), its 95% confidence interval (Student's t over the
seeds) and on how many seeds the difference is above zero. A plot shows every seed's difference.

--task: the digits task of toy.py (default), the addition task (answers show their work) or answer_first
(the sum boxed first, then its column check); each task brings its own model, warm start, sampling
temperature and step count (toy.TASKS).

Results go to a new run folder, examples/runs/<experiment>-<date>-<time>/ (ignored by git), or to --out DIR
(`--out examples/results` replaces the committed results): <experiment>.json (every run), <experiment>.md
(the tables) and, with matplotlib installed (`pip install matplotlib`; only the examples use it), PNG plots;
a task other than digits adds "-TASK" to each name. One process shows a progress bar per run; --jobs N runs
N processes and prints a line per finished run.

Numbers that hold on any machine: every run is deterministic for its thread count (--threads, default 1:
a different count sums floats in another order), and numerics.py pins torch's, MKL's and oneDNN's CPU
kernels to their AVX2 paths, so a result reruns to the same bits on every x86-64 CPU with AVX2. Every result
records its numeric environment (numerics.numerics). --jobs changes only the wall time: each run is seeded
on its own and starts from its seed's warm start, whichever process runs it.
"""
import numerics  # noqa: F401  (first, before torch: pins the CPU kernels, see numerics.py)
import argparse
import json
import math
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toy  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RUNS = os.path.join(HERE, "runs")     # the default output: a fresh folder per call, ignored by git
METHODS = {  # name -> (label, mgrpo flags as keywords, steps as a multiple of --steps)
    "grpo": ("GRPO (`--layers 1`)", {"layers": 1}, 1),
    "grpo_2x": ("GRPO, 2x steps", {"layers": 1}, 2),
    "grpo_g": ("GRPO, G matched to MGRPO's rollout tokens", {"layers": 1}, 1),
    # MGRPO's Layer-2 normaliser is named in its flags, so that a result means the same whatever the default
    # (`trained` until these runs made `batch` the default: docs/variants.md)
    "mgrpo": ("MGRPO, Layer 2's N = the corrections trained (`--l2-loss-norm trained`)", {"l2_loss_norm": "trained"}, 1),
    "mgrpo_batch_norm": ("MGRPO, Layer 2's N = B·G (`--l2-loss-norm batch`, the default)", {"l2_loss_norm": "batch"}, 1),
    "mgrpo_select_all": ("MGRPO, no selection (`--l2-select all`)", {"l2_select": "all"}, 1),
    "mgrpo_inputs_all": ("MGRPO, `--l2-inputs all`", {"l2_inputs": "all"}, 1),
}
DEFAULT_METHODS = ["grpo", "grpo_g", "mgrpo", "mgrpo_batch_norm"]
H_VALUES = [2, 4, 8, 16]
# The paired comparisons a table shows, (method, baseline), where both were run; "warm" is the warm start.
PAIRS = [("mgrpo", "grpo"), ("mgrpo", "grpo_g"), ("mgrpo_batch_norm", "grpo"), ("mgrpo_batch_norm", "grpo_g"),
         ("mgrpo_batch_norm", "mgrpo"), ("grpo_2x", "grpo"), ("mgrpo_select_all", "mgrpo"),
         ("mgrpo_inputs_all", "mgrpo"), ("grpo", "warm"), ("grpo_g", "warm"), ("mgrpo", "warm"),
         ("mgrpo_batch_norm", "warm")]


# -----------------------------------------------------------------------------
# Running: each (method, seed) is one toy.run_toy, in this process or in one of --jobs processes.


def run_one(label, steps, flags, seed, opts, work, bar=True):
    """One run of toy.run_toy, with a progress bar of its own in a single process (bar)."""
    from tqdm.auto import tqdm
    torch.set_num_threads(opts.threads)
    with tqdm(total=steps, desc=f"{label.replace('`', '')}, seed {seed}", leave=False, dynamic_ncols=True,
              disable=not bar) as b:
        r = toy.run_toy(seed, steps, work, warm_target=opts.warm_target, curve_every=opts.curve_every,
                        n_eval=opts.n_eval, log=None, task=opts.task, on_step=lambda step: b.update(1),
                        warm_cache=work, **flags)
    print(f"{label}, seed {seed}: held-out Acc@t1 {r['before']['acc_t1']:.3f} -> {r['after']['acc_t1']:.3f}, "
          f"sampled correction {r['sampled_corr_before']:.3f} -> {r['sampled_corr_after']:.3f}, "
          f"{r['optimizer_steps']} optimizer steps, {r['rollout_tokens']} rollout tokens, "
          f"{r['seconds']:.0f} s", flush=True)
    return r


def run_seed(plan, seed, opts, work, bar):
    """Every (method, label, steps, flags) of `plan` on one seed, in order: its warm start is made once."""
    return [run_one(label, steps, flags, seed, opts, work, bar) for _, label, steps, flags in plan]


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C is the parent's: it stops the pool


def run_plan(plan, opts, work):
    """{method: [run per seed]} for every entry of plan on every seed of opts.seeds. With --jobs N > 1 the
    seeds go to N processes (spawned, so each pins its kernels before torch loads; numerics.py)."""
    if opts.jobs == 1:
        per_seed = [run_seed(plan, s, opts, work, True) for s in opts.seeds]
    else:
        before = os.environ.get("MGRPO_NATIVE_KERNELS")
        if not numerics.PINNED_HERE:     # the processes run the kernels this one runs (see numerics.py)
            os.environ["MGRPO_NATIVE_KERNELS"] = "1"
        try:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(min(opts.jobs, len(opts.seeds)), initializer=_ignore_sigint) as pool:
                per_seed = pool.starmap(run_seed, [(plan, s, opts, work, False) for s in opts.seeds], chunksize=1)
        finally:                         # only for the pool: a caller's later processes pin as they would
            if before is None:
                os.environ.pop("MGRPO_NATIVE_KERNELS", None)
            else:
                os.environ["MGRPO_NATIVE_KERNELS"] = before
    return {m: [runs[i] for runs in per_seed] for i, (m, *_) in enumerate(plan)}


def compute(opts, work):
    result = {}
    first = [m for m in opts.methods if m != "grpo_g"]    # GRPO's matched G comes from the MGRPO runs
    plan = [(m, METHODS[m][0], opts.steps * METHODS[m][2], METHODS[m][1]) for m in first]
    for m, runs in run_plan(plan, opts, work).items():
        result[m] = {"label": METHODS[m][0], "flags": METHODS[m][1], "runs": runs}
    if "grpo_g" in opts.methods:
        mg = result["mgrpo"]["runs"]   # G x (MGRPO's rollout tokens per step / its Layer-1 tokens per step)
        g = round(toy.toy_args(opts.task).G * sum(r["rollout_tokens"] for r in mg) / sum(r["l1_tokens"] for r in mg))
        label, flags = f"GRPO, G = {g} (rollout tokens matched to MGRPO)", {**METHODS["grpo_g"][1], "G": g}
        result["grpo_g"] = {"label": label, "flags": flags,
                            "runs": run_plan([("grpo_g", label, opts.steps, flags)], opts, work)["grpo_g"]}
    return {"methods": {m: result[m] for m in METHODS if m in result}}


def hsweep(opts, work):
    plan = [(f"H={h}", f"H = {h}", opts.steps, {"H": h}) for h in opts.H]
    runs = run_plan(plan, opts, work)
    return {"methods": {f"H={h}": {"label": f"H = {h}", "flags": {"H": h}, "runs": runs[f"H={h}"], "H": h}
                        for h in opts.H}}


# -----------------------------------------------------------------------------
# Tables: means over seeds, and paired differences with their intervals.


METRICS = [("Acc@t1", lambda r: r["after"]["acc_t1"]), ("Acc@t2", lambda r: r["after"]["acc_t2"]),
           ("Δ(t1,t2)", lambda r: r["after"]["delta"]), ("Δi→c", lambda r: r["after"]["delta_i2c"]),
           ("Δc→i", lambda r: r["after"]["delta_c2i"]), ("sampled correction rate", lambda r: r["sampled_corr_after"])]
COST = [("optimizer steps", lambda r: r["optimizer_steps"]), ("rollout tokens", lambda r: r["rollout_tokens"])]
PAIRED = [METRICS[0], METRICS[1], METRICS[3], METRICS[4], METRICS[5]]


def ms(xs, digits=3):
    """mean ± std over seeds (population std); a single seed has no spread to show."""
    xs = [x for x in xs if x is not None]
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{statistics.mean(xs):.{digits}f} ± {statistics.pstdev(xs):.{digits}f}"


def t_quantile(p, df):
    """Student's t quantile: the x with P(T <= x) = p (0.5 < p < 1), df degrees of freedom. The CDF is
    1/2 + the integral of the density from 0 to x (Simpson's rule), inverted by bisection: t_quantile(0.975, 9)
    = 2.2622, as in every t table."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf(x, n=2000):
        f = [c * (1 + (x * i / n) ** 2 / df) ** (-(df + 1) / 2) for i in range(n + 1)]
        return 0.5 + (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2])) * x / n / 3

    lo, hi = 0.0, 1000.0
    for _ in range(60):
        lo, hi = ((lo + hi) / 2, hi) if cdf((lo + hi) / 2) < p else (lo, (lo + hi) / 2)
    return (lo + hi) / 2


def paired(diffs):
    """Per-seed differences -> {mean, lo, hi (the 95% t interval of the mean), above, below, n}."""
    n, mean = len(diffs), statistics.mean(diffs)
    half = t_quantile(0.975, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": n,
            "above": sum(d > 0 for d in diffs), "below": sum(d < 0 for d in diffs)}


def with_warm_start(result):
    """The methods of a result, led by the warm start before RL (the intrinsic baseline, the same for every
    method of a seed) as its own entry 'warm'."""
    if not result["methods"]:
        return {}
    first = next(iter(result["methods"].values()))["runs"]
    warm = {"label": "warm start, before RL (intrinsic)",
            "runs": [{**r, "after": r["before"], "sampled_corr_after": r["sampled_corr_before"],
                      "optimizer_steps": 0, "rollout_tokens": 0} for r in first]}
    return {"warm": warm, **labelled(result["methods"])}


def differences(entries, method, base, f):
    return [f(a) - f(b) for a, b in zip(entries[method]["runs"], entries[base]["runs"])]


def table(entries, columns):
    """A markdown table: one row per entry (mean ± std over its seeds), one column per (header, value of a run)."""
    lines = ["| method | " + " | ".join(h for h, _ in columns) + " |", "|" + " --- |" * (len(columns) + 1)]
    for e in entries:
        cells = [ms([f(r) for r in e["runs"]], 0 if (h, f) in COST else 3) for h, f in columns]
        lines.append(f"| {e['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(entries):
    """Each comparison of PAIRS whose two methods were run: mean difference [95% CI] and seeds above / below 0."""
    lines = ["| comparison (paired by seed) | " + " | ".join(h for h, _ in PAIRED) + " |",
             "|" + " --- |" * (len(PAIRED) + 1)]
    for m, b in PAIRS:
        if m in entries and b in entries:
            cells = []
            for _, f in PAIRED:
                s = paired(differences(entries, m, b, f))
                cells.append(f"{s['mean']:+.3f} [{s['lo']:+.3f}, {s['hi']:+.3f}] {s['above']}↑ {s['below']}↓")
            lines.append(f"| {SHORT[m]} − {SHORT[b]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The names of the comparisons (the tables' rows say each method in full)
SHORT = {"warm": "warm start", "grpo": "GRPO", "grpo_2x": "GRPO 2x steps", "grpo_g": "GRPO matched tokens",
         "mgrpo": "MGRPO N=trained", "mgrpo_batch_norm": "MGRPO N=B·G", "mgrpo_select_all": "MGRPO no selection",
         "mgrpo_inputs_all": "MGRPO all inputs"}


def labelled(methods):
    """A saved result's methods, each with the label METHODS gives it now (grpo_g's names its G), so that a
    label can be made clearer after the runs without changing a number."""
    return {m: {**e, "label": METHODS[m][0]} if m in METHODS and m != "grpo_g" else e for m, e in methods.items()}


def step_table(entries):
    """How large each layer's steps were: per run the median and the largest gradient norm over its steps
    (before clipping) and Layer 2's corrections trained per step, then mean ± std over seeds."""
    def over_steps(key, fn):
        return lambda r: fn([v for v in r["steps"][key] if v is not None]) if r["steps"][key] and \
            any(v is not None for v in r["steps"][key]) else None
    columns = [("l1_grad_norm median", over_steps("l1_grad_norm", statistics.median)),
               ("l1_grad_norm max", over_steps("l1_grad_norm", max)),
               ("l2_grad_norm median", over_steps("l2_grad_norm", statistics.median)),
               ("l2_grad_norm max", over_steps("l2_grad_norm", max)),
               ("corrections trained per step, median", over_steps("l2_samples_trained", statistics.median)),
               ("l1_zero_std_frac mean", over_steps("l1_zero_std_frac", statistics.mean)),
               ("l2_zero_std_frac mean", over_steps("l2_zero_std_frac", statistics.mean))]
    rows = [e for k, e in entries.items() if k != "warm" and all("steps" in r for r in e["runs"])]
    lines = ["| method | " + " | ".join(h for h, _ in columns) + " |", "|" + " --- |" * (len(columns) + 1)]
    for e in rows:
        cells = []
        for _, f in columns:
            xs = [f(r) for r in e["runs"]]
            cells.append("-" if all(x is None for x in xs) else ms(xs, 2))
        lines.append(f"| {e['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def over_seeds(seeds):
    return f"mean ± std over {len(seeds)} seeds ({seeds_text(seeds)})" if len(seeds) > 1 else f"seed {seeds[0]}"


def seeds_text(seeds):
    return f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2 else \
        ", ".join(map(str, seeds))


def render(result, experiment):
    """The markdown of a saved result: its tables and the command, time and numeric environment it came from."""
    seeds = result["seeds"]
    if experiment == "compute":
        entries = with_warm_start(result)
        twice = f" (GRPO 2x: {2 * result['steps']})" if "grpo_2x" in result["methods"] else ""
        md = (f"Task `{result['task']}`, held-out problems ({result.get('n_eval', 200)}), after {result['steps']} "
              f"steps{twice}, {over_seeds(seeds)}. The first row is the model every method of a seed starts "
              "from.\n\n" + table(entries.values(), METRICS + COST))
        if len(seeds) > 1:
            md += ("\n\nPaired differences, method − baseline on each seed: mean [95% CI, Student's t over "
                   f"{len(seeds)} seeds] and the number of seeds where it is above (↑) and below (↓) zero.\n\n"
                   + paired_table(entries))
        if all("steps" in r for e in result["methods"].values() for r in e["runs"]):
            md += (f"\n\nThe size of each layer's steps over each run's training steps, {over_seeds(seeds)}.\n\n"
                   + step_table(entries))
    else:
        columns = [METRICS[0], METRICS[1], METRICS[3], METRICS[5], COST[1]]
        md = (f"MGRPO, held-out problems ({result.get('n_eval', 200)}), after {result['steps']} steps, "
              f"{over_seeds(seeds)}.\n\n" + table(result["methods"].values(), columns))
    where = numerics.describe(result["numerics"]) if "numerics" in result else \
        f"{result['threads']} torch thread{'s' if result['threads'] > 1 else ''}"
    jobs = result.get("jobs", 1)
    md += (f"\n\n`{result['command']}`: {result['seconds'] / 60:.1f} minutes on this machine"
           f"{f' ({jobs} processes)' if jobs > 1 else ''}; {where} (1-minute load average "
           f"{result['load'][0]:.1f} at the start, {result['load'][1]:.1f} at the end).\n")
    return md


# -----------------------------------------------------------------------------
# Plots (matplotlib, optional)


def plot_curves(plt, result):
    # results saved before the greedy Δi→c curve was recorded have two panels
    greedy = all("curve_greedy" in r for e in result["methods"].values() for r in e["runs"])
    fig, axes = plt.subplots(1, 3 if greedy else 2, figsize=(16 if greedy else 11, 4.2))
    for m, entry in labelled(result["methods"]).items():
        panels = [("curve", 1), ("curve", 2)] + ([("curve_greedy", 1)] if greedy else [])
        for ax, (key, k) in zip(axes, panels):
            curves = [r[key] for r in entry["runs"]]
            steps = [c[0] for c in curves[0]]
            ys = [statistics.mean(c[i][k] for c in curves) for i in range(len(steps))]
            # GRPO 2x continues GRPO's own run (same seed): dashed, so that GRPO shows beneath its first half
            ax.plot(steps, ys, "--" if m == "grpo_2x" else "-", marker="o", markersize=3,
                    label=entry["label"].replace("`", ""))
    axes[0].set(title="Held-out Acc@t1 (greedy)", xlabel="training step", ylabel="accuracy")
    axes[1].set(title="Sampled correction rate of wrong answers", xlabel="training step", ylabel="rate")
    if greedy:
        axes[2].set(title="Greedy Δi→c (held-out)", xlabel="training step", ylabel="fraction of problems")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Task {result.get('task', 'digits')}, every {result['curve_every']} steps, "
                 + over_seeds(result["seeds"]).replace(" ± std", ""))
    return fig


def plot_paired(plt, result):
    """One panel per metric: each comparison's per-seed differences (dots), their mean and 95% interval."""
    entries = with_warm_start(result)
    pairs = [(m, b) for m, b in PAIRS if m in entries and b in entries]
    fig, axes = plt.subplots(1, len(PAIRED), figsize=(4 * len(PAIRED), 0.5 * len(pairs) + 1.6), sharey=True)
    for ax, (name, f) in zip(axes, PAIRED):
        for y, (m, b) in enumerate(pairs):
            d = differences(entries, m, b, f)
            s = paired(d)
            ax.scatter(d, [y + 0.18] * len(d), s=9, color="gray", alpha=0.7)
            ax.errorbar([s["mean"]], [y], xerr=[[s["mean"] - s["lo"]], [s["hi"] - s["mean"]]], fmt="o",
                        color="C0" if s["lo"] > 0 else "C3" if s["hi"] < 0 else "C7", capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set(title=name, xlabel="difference")
    axes[0].set_yticks(range(len(pairs)), [f"{SHORT[m]} − {SHORT[b]}" for m, b in pairs], fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle(f"Task {result['task']}: paired differences per seed (dots), their mean and 95% t interval over "
                 f"{len(result['seeds'])} seeds (blue: above 0, red: below 0, gray: 0 inside)")
    return fig


def plot_hsweep(plt, result):
    entries = list(result["methods"].values())
    hs = [e["H"] for e in entries]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, f in (("Acc@t1", lambda r: r["after"]["acc_t1"]), ("Acc@t2", lambda r: r["after"]["acc_t2"]),
                    ("Δi→c", lambda r: r["after"]["delta_i2c"]), ("sampled correction rate", lambda r: r["sampled_corr_after"])):
        ys = [[f(r) for r in e["runs"]] for e in entries]
        axes[0].errorbar(hs, [statistics.mean(y) for y in ys], yerr=[statistics.pstdev(y) for y in ys], marker="o",
                         capsize=3, label=name)
    tokens = [[r["rollout_tokens"] / 1e3 for r in e["runs"]] for e in entries]
    axes[1].errorbar(hs, [statistics.mean(t) for t in tokens], yerr=[statistics.pstdev(t) for t in tokens],
                     marker="o", capsize=3, color="gray")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(hs, [str(h) for h in hs])
    axes[0].set(title="MGRPO after training, by H", xlabel="H (corrections per q')", ylabel="fraction")
    axes[0].legend(fontsize=8)
    axes[1].set(title="Rollout tokens per run (thousands)", xlabel="H (corrections per q')")
    return fig


# -----------------------------------------------------------------------------
# The command line


def main(argv=None):
    p = argparse.ArgumentParser(description="MGRPO ablations on the toy tasks (CPU).")
    p.add_argument("experiment", choices=["compute", "hsweep", "report"])
    p.add_argument("--task", default="digits", choices=list(toy.TASKS),
                   help="digits: largest digit, answer only; addition: column addition with the work shown; "
                        "answer_first: the sum boxed first, then the column check")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)),
                   help="default 0-9; one seed is the quick mode (no paired differences)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the task's, 150 for digits)")
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS),
                   help=f"compute only (default: {' '.join(DEFAULT_METHODS)})")
    p.add_argument("--H", type=int, nargs="+", default=H_VALUES, help="hsweep only")
    p.add_argument("--curve-every", type=int, default=10, help="evaluate every K steps for the curves (0: never)")
    p.add_argument("--n-eval", type=int, default=200, help="held-out problems")
    p.add_argument("--warm-target", type=float, default=None,
                   help="greedy accuracy that ends the warm start (default: the task's, 0.25 for digits; 0: none)")
    p.add_argument("--out", default=None,
                   help="folder for the results (default: a new folder in examples/runs/; "
                        "--out examples/results replaces the committed ones)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads per run (default 1; results depend on it, and it is recorded with them)")
    p.add_argument("--jobs", type=int, default=1,
                   help="processes running seeds side by side (default 1; the numbers do not depend on it)")
    opts = p.parse_args(argv)
    opts.steps = toy.TASKS[opts.task].steps if opts.steps is None else opts.steps
    if opts.experiment == "compute" and "grpo_g" in opts.methods and "mgrpo" not in opts.methods:
        p.error("--methods grpo_g needs mgrpo too: its G comes from MGRPO's rollout tokens")
    if min(opts.H) < 2:
        p.error("--H must be >= 2")
    for name in ("threads", "jobs", "steps", "n_eval"):
        if getattr(opts, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if opts.curve_every < 0:
        p.error("--curve-every must be >= 0 (0: no curves)")
    if len(set(opts.seeds)) != len(opts.seeds):
        p.error("--seeds: each seed once (the differences are paired by seed)")
    if opts.experiment == "report":
        if opts.out is None:
            p.error("report needs --out DIR, the folder holding the saved <experiment>.json")
        return report(opts.out)
    name = opts.experiment if opts.task == "digits" else f"{opts.experiment}-{opts.task}"
    if opts.out is None:
        opts.out = os.path.join(RUNS, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    made = not os.path.exists(opts.out)
    try:
        os.makedirs(opts.out, exist_ok=True)        # at the start: a folder that cannot be made fails in seconds
        probe = tempfile.NamedTemporaryFile(dir=opts.out)
        probe.close()
    except OSError as e:
        p.error(f"cannot write to --out {opts.out}: {e.strerror}")
    threads = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    t0, load0 = time.time(), os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory() as work:     # the warm starts, shared by the methods of a seed
            result = (compute if opts.experiment == "compute" else hsweep)(opts, work)
    except BaseException:
        if made and not os.listdir(opts.out):       # an interrupted call leaves no empty run folder behind
            os.rmdir(opts.out)
        raise
    finally:
        torch.set_num_threads(threads)              # a caller's process (a test, a notebook) keeps its own
    result.update(task=opts.task, seeds=opts.seeds, steps=opts.steps, curve_every=opts.curve_every,
                  n_eval=opts.n_eval, threads=opts.threads, jobs=opts.jobs, seconds=time.time() - t0,
                  load=[round(load0, 2), round(os.getloadavg()[0], 2)], numerics=numerics.numerics(opts.threads),
                  command=command_line(argv if argv is not None else sys.argv[1:]))
    md = render(result, opts.experiment)
    print("\n" + md)
    # each file is written whole and then renamed into place: an interrupted write leaves the old file or none
    write_atomic(os.path.join(opts.out, f"{name}.json"), json.dumps(result, indent=1))
    write_atomic(os.path.join(opts.out, f"{name}.md"), md)
    draw(opts.out)
    print(f"results in {opts.out}")
    return result


def command_line(argv):
    """The command as a user types it from the checkout: an --out inside the checkout relative to it."""
    argv = list(argv)
    for i, a in enumerate(argv[:-1]):
        if a == "--out" and os.path.abspath(argv[i + 1]).startswith(ROOT + os.sep):
            argv[i + 1] = os.path.relpath(os.path.abspath(argv[i + 1]), ROOT)
    return "python examples/ablations.py " + " ".join(argv)


def write_atomic(path, text):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def report(out):
    """The tables (.md) and PNGs again from the results saved in `out`: after a change of their layout,
    without rerunning anything."""
    for task in toy.TASKS:
        for experiment in ("compute", "hsweep"):
            name = experiment + ("" if task == "digits" else f"-{task}")
            path = os.path.join(out, f"{name}.json")
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    write_atomic(os.path.join(out, f"{name}.md"), render(json.load(f), experiment))
                print(f"wrote {os.path.join(out, name + '.md')}")
    draw(out)


def draw(out):
    """The PNGs of whatever results are saved in `out`."""
    try:
        import matplotlib
    except ImportError:
        print("(no plots: `pip install matplotlib`, then `python examples/ablations.py report --out DIR`; only the "
              "examples use it)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for task in toy.TASKS:          # digits keeps the file names it always had; other tasks add "-TASK"
        suffix = "" if task == "digits" else f"-{task}"
        for name, png, plot in (("compute", "curves", plot_curves), ("compute", "paired", plot_paired),
                                ("hsweep", "hsweep", plot_hsweep)):
            path = os.path.join(out, f"{name}{suffix}.json")
            if not os.path.exists(path):
                continue
            with open(path, encoding="utf-8") as f:
                result = json.load(f)
            if not result["methods"] or (png == "curves" and not result["curve_every"]) or \
                    (png == "paired" and len(result["seeds"]) < 2):
                continue
            fig = plot(plt, result)
            fig.tight_layout()
            fig.savefig(os.path.join(out, f"{png}{suffix}.tmp.png"), dpi=110)
            os.replace(os.path.join(out, f"{png}{suffix}.tmp.png"), os.path.join(out, f"{png}{suffix}.png"))
            plt.close(fig)
            print(f"drew {os.path.join(out, f'{png}{suffix}.png')}")


def cli(argv=None):
    """main for the command line: Ctrl-C ends the call with one line and exit code 130 (the shell's code for
    SIGINT), and leaves no result file behind (they are written only at the end, each whole)."""
    try:
        main(argv)
    except KeyboardInterrupt:
        print("\ninterrupted: no results written", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    cli()
