"""
A picture of a run: the curves in mgrpo.py's log.jsonl, in one PNG.

    python examples/plot_run.py out/                               # writes out/run.png
    python examples/plot_run.py grpo/ mgrpo/ --out compare.png     # several runs overlaid, one colour each

Four panels, over the training steps:
  Layer 1      l1_reward: mean reward of the Layer-1 answers (the fraction that is right)
  Layer 2      l2_correction_rate: reward of the corrections of *wrong* Layer-1 answers (solid), and
               l2_keep_frac: the share of q' groups that selection keeps, i.e. with a successful
               correction (dotted)
  KL           l1_kl (solid) and l2_kl (dashed): the k3 estimate per token against the reference
  evaluation   Acc@t1 (solid) and Acc@t2 (dashed) of every evaluation set, one marker per set
A run without Layer 2 (--layers 1) or without evaluation draws what it has. A value the log holds as null
or leaves out (no wrong answer to correct, no Layer-2 update in that step) is a gap in the line, not a zero.
Needs matplotlib (`pip install matplotlib`; only the examples use it).
"""
import argparse
import json
import math
import os
import sys

PANELS = {  # panel: [(log key, what the legend calls it, line style)]
    "Layer 1: reward": [("l1_reward", "reward", "-")],
    "Layer 2: corrections": [("l2_correction_rate", "correction rate", "-"), ("l2_keep_frac", "keep fraction", ":")],
    "KL to the reference": [("l1_kl", "Layer 1", "-"), ("l2_kl", "Layer 2", "--")],
}
EVAL = [("acc_t1", "Acc@t1", "-"), ("acc_t2", "Acc@t2", "--")]
MARKERS = "os^Dv<>p*h"


def die(msg):
    print(f"plot_run: error: {msg}", file=sys.stderr)
    sys.exit(2)


def read_log(path):
    """The step records of a run directory's log.jsonl (or of that file), in order. A line that is not JSON
    (the last line of a run killed mid-write) is skipped."""
    log_path = os.path.join(path, "log.jsonl") if os.path.isdir(path) else path
    if not os.path.isfile(log_path):
        die(f"no log.jsonl in {path}" if os.path.isdir(path) else f"not found: {path}")
    records = []
    with open(log_path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
    if not records:
        die(f"{log_path} holds no step")
    return records


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def curves(records):
    """{panel title: {(log key, legend label, line style): ([steps], [values])}}, with only the series that
    have at least one finite value; evaluation series are keyed by set name and metric."""
    out = {}

    def add(panel, key, steps_values):
        if steps_values[0]:
            out.setdefault(panel, {})[key] = steps_values

    for panel, series in PANELS.items():
        for name, label, style in series:
            points = [(r["step"], r[name]) for r in records if _number(r.get(name))]
            add(panel, (name, label, style), ([s for s, _ in points], [v for _, v in points]))
    sets = sorted({s for r in records if isinstance(r.get("eval"), dict) for s in r["eval"]})
    for s in sets:
        for name, label, style in EVAL:
            points = [(r["step"], r["eval"][s].get(name)) for r in records
                      if isinstance(r.get("eval"), dict) and isinstance(r["eval"].get(s), dict)]
            points = [(step, v) for step, v in points if _number(v)]
            add("evaluation", (f"{s}/{name}", f"{s} {label}", style), ([p for p, _ in points], [v for _, v in points]))
    return out


def draw(runs, path):
    """runs: [(run label, curves(...))] -> one PNG at `path`, four panels, one colour per run."""
    try:
        import matplotlib
    except ImportError:
        die("drawing needs matplotlib: pip install matplotlib (only the examples use it)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    titles = [*PANELS, "evaluation"]
    empty = {"Layer 2: corrections": "no Layer 2 in this log (--layers 1)",
             "evaluation": "no evaluation in this log"}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    sets = sorted({key.split("/")[0] for _, c in runs for key, _, _ in c.get("evaluation", {})})
    for ax, title in zip(axes.flat, titles):
        drawn = False
        for k, (run, c) in enumerate(runs):
            for (key, label, style), (xs, ys) in c.get(title, {}).items():
                marker = MARKERS[sets.index(key.split("/")[0]) % len(MARKERS)] if title == "evaluation" else None
                ax.plot(xs, ys, linestyle=style, marker=marker, markersize=4, color=f"C{k % 10}",
                        label=f"{run}: {label}" if len(runs) > 1 else label)
                drawn = True
        ax.set(title=title, xlabel="step")
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, empty.get(title, "not in this log"), ha="center", va="center", transform=ax.transAxes)
    axes[0][0].set_ylabel("fraction")
    axes[1][1].set_ylabel("accuracy")
    fig.suptitle(" vs ".join(run for run, _ in runs))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description="Draw the curves of one or more mgrpo.py runs from their log.jsonl.")
    p.add_argument("runs", nargs="+", help="output directories of mgrpo.py (or their log.jsonl files)")
    p.add_argument("--out", default=None, help="the PNG to write (default: run.png in the first directory)")
    p.error = die
    opts = p.parse_args(argv)
    names = [os.path.basename(os.path.normpath(r)) if os.path.isdir(r) else
             os.path.basename(os.path.dirname(os.path.abspath(r))) for r in opts.runs]
    if len(set(names)) < len(names):             # two runs called 'out': name them by the path given
        names = [os.path.normpath(r) for r in opts.runs]
    runs = [(name, curves(read_log(r))) for name, r in zip(names, opts.runs)]
    first = opts.runs[0] if os.path.isdir(opts.runs[0]) else os.path.dirname(os.path.abspath(opts.runs[0]))
    out = opts.out or os.path.join(first, "run.png")
    if os.path.dirname(os.path.abspath(out)) and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        die(f"--out: no such directory: {os.path.dirname(out)}")
    draw(runs, out)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
