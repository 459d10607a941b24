"""verify.py on the real data of the paper's four benchmarks (../shared/data or --data-dir), with speed.

    python bench/verify_real_data.py [--data-dir ../shared/data] [--show-negatives] [--hard-only] [--markerless]

Prints, per data set: how many gold solutions earn reward 1 against their own gold answer; how many
gold answers equal themselves under the full parser (a '\\displaystyle ' prefix defeats the string
fast path); a negative control (2,000 random pairs of different gold answers judged equal); the time
per reward call (median, p99, max) over all the calls made; and, for Minerva's decimal answers, what
a float tolerance would change compared with our exact decimals. Then the hard cases: every case of
other projects' checker tests (../shared/checker-suites/peers.jsonl: equivalences sympy has to work on,
inequalities, long replies), five passes with the parse cache cleared, timed per call in wall time and
in this thread's CPU time (which other processes on a busy machine do not inflate). With --markerless, also
what is read where there is no marker: GSM8K's solutions without their '#### N' line and MATH-500's solutions
with every '\\boxed{X}' written as 'X', with and without the question (reward's optional argument), against
their own gold and another problem's; and GSM8K solutions cut at each earlier sentence or line end, which must
not read the final gold.
"""
import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from fractions import Fraction

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from verify import is_equiv, last_boxed, parse, reward  # noqa: E402

TIMES = []


def rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def timed_reward(completion, gold):
    t = time.perf_counter()
    r = reward(completion, gold)
    TIMES.append(time.perf_counter() - t)
    return r


def trivial(s):
    return re.sub(r"\s+|\\left|\\right|\\!|\\,|\$|\\displaystyle", "", s).replace("\\dfrac", "\\frac")


def negative_control(answers, n, rng, show):
    pairs = []
    while len(pairs) < n:
        x, y = rng.sample(answers, 2)
        if trivial(x) != trivial(y):
            pairs.append((x, y))
    t = time.perf_counter()
    equal = [(x, y) for x, y in pairs if is_equiv(x, y)]
    ms = 1e3 * (time.perf_counter() - t) / n
    if show:
        for x, y in equal:
            print(f"      judged equal: {x!r} ~ {y!r}")
    return len(equal), ms


def check(name, golds, completions, rng, a):
    hits = sum(timed_reward(c, g) for c, g in zip(completions, golds))
    self_eq = sum(is_equiv("\\displaystyle " + g, g) for g in golds)
    eq, ms = negative_control(sorted(set(golds)), a.pairs, rng, a.show_negatives)
    print(f"{name:14} reward(solution, gold) {int(hits)}/{len(golds)}   is_equiv(gold, gold) full parse "
          f"{self_eq}/{len(golds)}   negative control {eq}/{a.pairs} judged equal ({ms:.2f} ms/pair)")
    for c, g in zip(completions, golds):
        if reward(c, g) != 1.0:
            print(f"      miss: {g!r}")


DECIMAL = re.compile(r"^\s*(-?\d+\.\d+)(?:\s*\\times\s*10\^\{?(-?\d+)\}?)?\s*$")


def tolerance_effect(golds):
    """Minerva's decimal golds: a model answer with one more significant digit, or rounded to one fewer,
    judged by our exact decimals and by relative tolerances of 1e-4 (Qwen2.5-Math's evaluator) and 1e-6."""
    decimals = []
    for g in golds:
        m = DECIMAL.match(re.sub(r"\\mathrm\{[^{}]*\}|\\text\{[^{}]*\}|~", "", g))
        if m:
            decimals.append((m.group(1), int(m.group(2) or 0), g))
    print(f"minerva: {len(decimals)} of {len(golds)} gold answers are decimals (with or without 'x 10^k')")
    for label, variant in (("one more digit (…1)", lambda d: d + "1"),
                           ("rounded to one fewer digit", lambda d: str(round(float(d), max(len(d.split(".")[1]) - 1, 0))))):
        exact = tol4 = tol6 = 0
        for mant, exp, g in decimals:
            v = variant(mant)
            pred = v if exp == 0 else f"{v} \\times 10^{{{exp}}}"
            exact += is_equiv(pred, g)
            gv, pv = Fraction(mant) * Fraction(10) ** exp, Fraction(v) * Fraction(10) ** exp
            rel = abs(pv - gv) / abs(gv) if gv else abs(pv)
            tol4 += rel <= Fraction(1, 10**4)
            tol6 += rel <= Fraction(1, 10**6)
        print(f"   answer {label:28}: accepted exact {exact}/{len(decimals)}, with rel. tolerance 1e-4 "
              f"{tol4}/{len(decimals)}, 1e-6 {tol6}/{len(decimals)}")


def hard_cases(path, passes=5):
    """Per-call time on the peers' suite, each pass with the parse cache cleared (a reward computation meets
    each gold once per group, so the parse of a new answer is part of its cost)."""
    cases = rows(path)
    wall, cpu = [], []
    for _ in range(passes):
        parse.cache_clear()
        for c in cases:
            t, u = time.perf_counter(), time.thread_time()
            if c["api"] == "is_equiv":
                is_equiv(c["pred"], c["gold"])
            else:
                reward(c["pred"], c["gold"])
            wall.append(time.perf_counter() - t)
            cpu.append(time.thread_time() - u)
    for name, ts in (("wall", wall), ("thread CPU", cpu)):
        ts.sort()
        print(f"hard cases ({len(cases)} peers' cases x {passes} passes, parse cache cleared), {name}: median "
              f"{1e3 * statistics.median(ts):.3f} ms, p99 {1e3 * ts[int(0.99 * len(ts))]:.2f} ms, max "
              f"{1e3 * ts[-1]:.1f} ms")


def markerless(data_dir):
    gsm = rows(os.path.join(data_dir, "gsm8k", "test.jsonl")) + rows(os.path.join(data_dir, "gsm8k", "train.jsonl"))
    golds = [r["answer"].rsplit("####", 1)[1].strip().replace(",", "") for r in gsm]
    bodies = [re.sub(r"<<[^>]*>>", "", r["answer"].rsplit("####", 1)[0]).strip() for r in gsm]
    m5 = rows(os.path.join(data_dir, "math500", "test.jsonl"))
    unboxed = [re.sub(r"\\boxed\{", "{", r["solution"]) for r in m5]
    for question in (False, True):
        def earn(text, gold, q):
            return reward(text, gold, question=q if question else None)
        own = sum(earn(b, g, r["question"]) for b, g, r in zip(bodies, golds, gsm))
        others = [(b, golds[(i * 7919 + 13) % len(gsm)], r) for i, (b, r) in enumerate(zip(bodies, gsm))]
        others = [(b, o, r) for (b, o, r), g in zip(others, golds) if o != g]
        wrong = sum(earn(b, o, r["question"]) for b, o, r in others)
        cuts = hits = 0
        for r, b, g in list(zip(gsm, bodies, golds))[:600]:
            for m in re.finditer(r"[.!?](?=\s)|\n", b):
                if m.end() < len(b.rstrip()) - 1:
                    cuts += 1
                    hits += earn(b[:m.end()], g, r["question"])
        m5_own = sum(earn(u, r["answer"], r["problem"]) for u, r in zip(unboxed, m5))
        m5_wrong = sum(earn(u, m5[(i + 1) % len(m5)]["answer"], r["problem"]) for i, (u, r) in enumerate(zip(unboxed, m5))
                       if m5[(i + 1) % len(m5)]["answer"] != r["answer"])
        print(f"markerless, {'with' if question else 'without'} the question: GSM8K without '####' earns its gold "
              f"{int(own)}/{len(gsm)}, another problem's {int(wrong)}/{len(others)}; cut at an earlier sentence or line "
              f"end: the final gold {int(hits)}/{cuts}; MATH-500 unboxed: its gold {int(m5_own)}/{len(m5)}, the next "
              f"problem's {int(m5_wrong)}")


def machine():
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"{model}, {os.cpu_count()} cores, one thread (this process), load average {load}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    p.add_argument("--show-negatives", action="store_true", help="print every negative-control pair judged equal")
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--peers", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "checker-suites",
                                                   "peers.jsonl"))
    p.add_argument("--hard-only", action="store_true", help="only the hard cases' timing")
    p.add_argument("--markerless", action="store_true", help="also what is read where there is no answer marker")
    a = p.parse_args()
    print(machine())
    if a.hard_only:
        hard_cases(a.peers)
        return
    if not os.path.isdir(a.data_dir):
        sys.exit(f"no data directory at {a.data_dir}")
    rng = random.Random(0)
    gsm = rows(os.path.join(a.data_dir, "gsm8k", "test.jsonl")) + rows(os.path.join(a.data_dir, "gsm8k", "train.jsonl"))
    golds = [r["answer"].rsplit("####", 1)[1].strip().replace(",", "") for r in gsm]
    check("gsm8k", golds, [r["answer"] for r in gsm], rng, a)
    # a completion that spells the gold differently, so the parser runs (not the string fast path)
    spelled = [f"She pays 3 + 4 = 7 dollars.\nThe answer is \\boxed{{\\${g}.00}}." for g in golds]
    print(f"{'':14} boxed '\\$N.00' completions: reward 1 for {int(sum(timed_reward(c, g) for c, g in zip(spelled, golds)))}"
          f"/{len(golds)}")
    m5 = rows(os.path.join(a.data_dir, "math500", "test.jsonl"))
    check("math500", [r["answer"] for r in m5], [r["solution"] for r in m5], rng, a)
    mm = rows(os.path.join(a.data_dir, "minerva_math", "test.jsonl"))
    minerva = [last_boxed(r["solution"]) for r in mm]
    check("minerva_math", minerva, [r["solution"] for r in mm], rng, a)
    ob = rows(os.path.join(a.data_dir, "olympiadbench", "test.jsonl"))
    olymp = [r["final_answer"][0].strip().strip("$").strip() for r in ob]
    check("olympiadbench", olymp, [f"So the answer is $\\boxed{{{g}}}$." for g in olymp], rng, a)
    eq, ms = negative_control(sorted(set(minerva + olymp + [r["answer"] for r in m5])), a.pairs, rng, a.show_negatives)
    print(f"negative control across math500, minerva_math, olympiadbench: {eq}/{a.pairs} judged equal ({ms:.2f} ms/pair)")
    tolerance_effect(minerva)
    TIMES.sort()
    print(f"reward() over all {len(TIMES)} calls above: median {1e3 * statistics.median(TIMES):.3f} ms, p99 "
          f"{1e3 * TIMES[int(0.99 * len(TIMES))]:.2f} ms, max {1e3 * TIMES[-1]:.1f} ms")
    if os.path.isfile(a.peers):
        hard_cases(a.peers)
    if a.markerless:
        markerless(a.data_dir)
    print(machine())


if __name__ == "__main__":
    main()
