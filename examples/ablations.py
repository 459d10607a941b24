"""
The paper's own questions about MGRPO, asked on the toy task of toy.py (CPU, minutes to an hour).

    python examples/ablations.py compute     # matched-compute table + learning curves, 3 seeds
    python examples/ablations.py hsweep      # H in {2, 4, 8, 16} for MGRPO, 3 seeds
    python examples/ablations.py compute --seeds 0          # the quick mode: one seed
    python examples/ablations.py compute --methods grpo mgrpo --seeds 0   # GRPO vs MGRPO, one seed
    python examples/ablations.py plot --out DIR      # redraw the PNGs from DIR's saved results (matplotlib)
    python examples/ablations.py compute --task addition --methods grpo grpo_g mgrpo   # the addition task

compute: does Layer 2 make Layer 1 better, or is MGRPO's edge just more compute? MGRPO takes two
optimizer steps per training step and samples more. So beside GRPO and MGRPO it runs GRPO with twice
the steps (as many optimizer steps as MGRPO), GRPO with G raised until its rollout tokens per step match
MGRPO's (G is computed from the MGRPO runs of the same call), MGRPO without selection (--l2-select all:
plain GRPO on q') and MGRPO with a correction round for every answer (--l2-inputs all). Every run also
records held-out Acc@t1 and the sampled correction rate every 10 steps: the learning curves.
hsweep: sensitivity to H, the number of corrections per q'.

--task: the digits task of toy.py (default) or the addition task, whose answers show their work; each
task brings its own model, warm start, sampling temperature and step count (toy.TASKS). Every table starts
with the warm-started model before RL (the intrinsic baseline), and every run also records the greedy
Δi→c and Δc→i at each curve point.

Results go to a new run folder, examples/runs/<experiment>-<date>-<time>/ (ignored by git), or to --out DIR
(`--out examples/results` replaces the committed results): <experiment>.json (every run), <experiment>.md
(the table) and, with matplotlib installed (`pip install matplotlib`; only the examples use it), PNG plots;
a task other than digits adds "-TASK" to each name. The terminal shows one progress bar per run.

--threads (default 1): torch's CPU thread count. The runs are deterministic for a given thread count and
CPU kind, but a different thread count sums floats in another order and gives other numbers, so every
result records its thread count. One thread is also the fastest on a 2-core machine (docs/toy.md).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toy  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = os.path.join(HERE, "runs")     # the default output: a fresh folder per call, ignored by git
METHODS = {  # name -> (label, mgrpo flags as keywords, steps as a multiple of --steps)
    "grpo": ("GRPO (`--layers 1`)", {"layers": 1}, 1),
    "grpo_2x": ("GRPO, 2x steps", {"layers": 1}, 2),
    "grpo_g": ("GRPO, G matched to MGRPO's rollout tokens", {"layers": 1}, 1),
    "mgrpo": ("MGRPO", {}, 1),
    "mgrpo_select_all": ("MGRPO, no selection (`--l2-select all`)", {"l2_select": "all"}, 1),
    "mgrpo_inputs_all": ("MGRPO, `--l2-inputs all`", {"l2_inputs": "all"}, 1),
}
H_VALUES = [2, 4, 8, 16]


def ms(xs, digits=3):
    """mean ± std over seeds; a single seed has no spread to show."""
    xs = [x for x in xs if x is not None]
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{statistics.mean(xs):.{digits}f} ± {statistics.pstdev(xs):.{digits}f}"


def over_seeds(seeds):
    return f"mean ± std over seeds {seeds}" if len(seeds) > 1 else f"seed {seeds[0]}"


def run_seeds(label, steps, flags, work, opts):
    from tqdm.auto import tqdm
    runs = []
    for seed in opts.seeds:
        # one bar per run; the warm start and the evaluations inside it draw none of their own
        with tqdm(total=steps, desc=f"{label.replace('`', '')}, seed {seed}", leave=False, dynamic_ncols=True) as bar:
            r = toy.run_toy(seed, steps, work, warm_target=opts.warm_target, curve_every=opts.curve_every,
                            n_eval=opts.n_eval, log=None, task=opts.task, on_step=lambda step: bar.update(1),
                            warm_cache=opts.warm_cache, **flags)
        print(f"{label}, seed {seed}: held-out Acc@t1 {r['before']['acc_t1']:.3f} -> {r['after']['acc_t1']:.3f}, "
              f"sampled correction {r['sampled_corr_before']:.3f} -> {r['sampled_corr_after']:.3f}, "
              f"{r['optimizer_steps']} optimizer steps, {r['rollout_tokens']} rollout tokens, "
              f"{r['seconds']:.0f} s", flush=True)
        runs.append(r)
    return {"label": label, "flags": flags, "runs": runs}


METRICS = [("Acc@t1", lambda r: r["after"]["acc_t1"]), ("Acc@t2", lambda r: r["after"]["acc_t2"]),
           ("Δ(t1,t2)", lambda r: r["after"]["delta"]), ("Δi→c", lambda r: r["after"]["delta_i2c"]),
           ("Δc→i", lambda r: r["after"]["delta_c2i"]), ("sampled correction rate", lambda r: r["sampled_corr_after"])]
COST = [("optimizer steps", lambda r: r["optimizer_steps"]), ("rollout tokens", lambda r: r["rollout_tokens"])]


def table(entries, columns):
    """A markdown table: one row per entry (mean ± std over its seeds), one column per (header, value of a run)."""
    lines = ["| method | " + " | ".join(h for h, _ in columns) + " |", "|" + " --- |" * (len(columns) + 1)]
    for e in entries:
        cells = [ms([f(r) for r in e["runs"]], 0 if (h, f) in COST else 3) for h, f in columns]
        lines.append(f"| {e['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compute(opts, work):
    result = {}
    for m in sorted(opts.methods, key=lambda m: m != "mgrpo"):    # MGRPO first: GRPO's matched G comes from it
        label, flags, mult = METHODS[m]
        if m == "grpo_g":
            mg = result["mgrpo"]["runs"]   # G x (MGRPO's rollout tokens per step / its Layer-1 tokens per step)
            g = round(toy.toy_args(opts.task).G * sum(r["rollout_tokens"] for r in mg) / sum(r["l1_tokens"] for r in mg))
            label, flags = f"GRPO, G = {g} (rollout tokens matched to MGRPO)", {**flags, "G": g}
        result[m] = run_seeds(label, opts.steps * mult, flags, work, opts)
    entries = [result[m] for m in METHODS if m in result]
    first = entries[0]["runs"]
    # The intrinsic baseline: the warm-started model before any RL, asked to correct (the same for every method)
    intrinsic = {"label": "warm start, before RL (intrinsic)",
                 "runs": [{**r, "after": r["before"], "sampled_corr_after": r["sampled_corr_before"],
                           "optimizer_steps": 0, "rollout_tokens": 0} for r in first]}
    md = (f"Task `{opts.task}`, held-out problems ({opts.n_eval}), after {opts.steps} steps (GRPO 2x: "
          f"{2 * opts.steps}), {over_seeds(opts.seeds)}. The first row is the model every method starts from.\n\n"
          + table([intrinsic] + entries, METRICS + COST))
    return {"methods": {m: result[m] for m in METHODS if m in result}}, md


def hsweep(opts, work):
    result = {f"H={h}": {**run_seeds(f"H = {h}", opts.steps, {"H": h}, work, opts), "H": h} for h in opts.H}
    columns = [METRICS[0], METRICS[1], METRICS[3], METRICS[5], COST[1]]
    md = (f"MGRPO, held-out problems ({opts.n_eval}), after {opts.steps} steps, {over_seeds(opts.seeds)}."
          "\n\n" + table(result.values(), columns))
    return {"methods": result}, md


def plot_curves(plt, result):
    # results saved before the greedy Δi→c curve was recorded have two panels
    greedy = all("curve_greedy" in r for e in result["methods"].values() for r in e["runs"])
    fig, axes = plt.subplots(1, 3 if greedy else 2, figsize=(16 if greedy else 11, 4.2))
    for m, entry in result["methods"].items():
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


def main(argv=None):
    p = argparse.ArgumentParser(description="MGRPO ablations on the toy task (CPU).")
    p.add_argument("experiment", choices=["compute", "hsweep", "plot"])
    p.add_argument("--task", default="digits", choices=list(toy.TASKS),
                   help="digits: largest digit, answer only; addition: column addition with the work shown; "
                        "answer_first: the sum boxed first, then the column check")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one seed is the quick mode")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the task's, 150 for digits)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), help="compute only")
    p.add_argument("--H", type=int, nargs="+", default=H_VALUES, help="hsweep only")
    p.add_argument("--curve-every", type=int, default=10, help="evaluate every K steps for the curves (0: never)")
    p.add_argument("--n-eval", type=int, default=200, help="held-out problems")
    p.add_argument("--warm-target", type=float, default=None,
                   help="greedy accuracy that ends the warm start (default: the task's, 0.25 for digits; 0: none)")
    p.add_argument("--out", default=None,
                   help="folder for the results (default: a new folder in examples/runs/; "
                        "--out examples/results replaces the committed ones)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1; results depend on it, and it is recorded with them)")
    opts = p.parse_args(argv)
    opts.steps = toy.TASKS[opts.task].steps if opts.steps is None else opts.steps
    if opts.experiment == "compute" and "grpo_g" in opts.methods and "mgrpo" not in opts.methods:
        p.error("--methods grpo_g needs mgrpo too: its G comes from MGRPO's rollout tokens")
    if min(opts.H) < 2:
        p.error("--H must be >= 2")
    if opts.threads < 1:
        p.error("--threads must be >= 1")
    if opts.experiment == "plot":
        if opts.out is None:
            p.error("plot needs --out DIR, the folder holding the saved <experiment>.json")
        return draw(opts.out)
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
    opts.warm_cache = {}        # every method of this call starts from the same warm-started model per seed
    try:
        with tempfile.TemporaryDirectory() as work:
            result, md = (compute if opts.experiment == "compute" else hsweep)(opts, work)
    except BaseException:
        if made and not os.listdir(opts.out):       # an interrupted call leaves no empty run folder behind
            os.rmdir(opts.out)
        raise
    finally:
        torch.set_num_threads(threads)              # a caller's process (a test, a notebook) keeps its own
    result.update(task=opts.task, seeds=opts.seeds, steps=opts.steps, curve_every=opts.curve_every,
                  threads=opts.threads, seconds=time.time() - t0, load=[round(load0, 2), round(os.getloadavg()[0], 2)],
                  command="python examples/ablations.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    md += (f"\n\n`{result['command']}`: {result['seconds'] / 60:.1f} minutes on this machine, "
           f"{opts.threads} torch thread{'s' if opts.threads > 1 else ''} (1-minute load average "
           f"{result['load'][0]:.1f} at the start, {result['load'][1]:.1f} at the end).\n")
    print("\n" + md)
    # each file is written whole and then renamed into place: an interrupted write leaves the old file or none
    write_atomic(os.path.join(opts.out, f"{name}.json"), json.dumps(result, indent=1))
    write_atomic(os.path.join(opts.out, f"{name}.md"), md)
    draw(opts.out)
    print(f"results in {opts.out}")
    return result


def write_atomic(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def draw(out):
    """The PNGs of whatever results are saved in `out`."""
    try:
        import matplotlib
    except ImportError:
        print("(no plots: `pip install matplotlib`, then `python examples/ablations.py plot`; only the examples use it)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for task in toy.TASKS:          # digits keeps the file names it always had; other tasks add "-TASK"
        suffix = "" if task == "digits" else f"-{task}"
        for name, png, plot in (("compute", "curves", plot_curves), ("hsweep", "hsweep", plot_hsweep)):
            path = os.path.join(out, f"{name}{suffix}.json")
            if os.path.exists(path):
                with open(path) as f:
                    result = json.load(f)
                if name == "hsweep" or result["curve_every"]:
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
