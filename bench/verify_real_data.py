"""Real-data checks of verify.py on GSM8K and MATH-500 (../shared/data or --data-dir), with speed.

    python bench/verify_real_data.py [--data-dir ../shared/data] [--show-negatives]

Prints: the fraction of gold solutions that earn reward 1 against their own gold answer, is_equiv(a, a)
over all MATH-500 answers, a negative control (2,000 random pairs of different answers judged equal),
and checks per second."""
import argparse
import json
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from verify import is_equiv, reward  # noqa: E402


def rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def gsm8k_gold(answer):
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


def timed(fn, items):
    t = time.perf_counter()
    out = [fn(*x) for x in items]
    return out, time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    p.add_argument("--show-negatives", action="store_true", help="print every negative-control pair judged equal")
    p.add_argument("--pairs", type=int, default=2000)
    a = p.parse_args()
    if not os.path.isdir(a.data_dir):
        sys.exit(f"no data directory at {a.data_dir}")
    for split in ("test", "train"):
        data = rows(os.path.join(a.data_dir, "gsm8k", f"{split}.jsonl"))
        items = [(r["answer"], gsm8k_gold(r["answer"])) for r in data]
        got, sec = timed(reward, items)
        bad = [i for i, g in enumerate(got) if g != 1.0]
        print(f"gsm8k/{split}: reward(solution, gold) = 1 for {len(data) - len(bad)}/{len(data)} "
              f"({1e3 * sec / len(data):.3f} ms/call, {len(data) / sec:,.0f} calls/s)")
        for i in bad[:5]:
            print("   miss:", items[i][1], "|", data[i]["answer"][-80:].replace("\n", " "))
        # a completion that spells the gold differently, so the parser runs (not the string fast path)
        spelled = [(f"She pays 3 + 4 = 7 dollars.\nThe answer is \\boxed{{\\${g}.00}}.", g) for _, g in items]
        got, sec = timed(reward, spelled)
        print(f"gsm8k/{split}: boxed '\\$N.00' completions: reward 1 for {int(sum(got))}/{len(got)} "
              f"({1e3 * sec / len(got):.3f} ms/call, {len(got) / sec:,.0f} calls/s)")

    math = rows(os.path.join(a.data_dir, "math500", "test.jsonl"))
    items = [(r["solution"], r["answer"]) for r in math]
    got, sec = timed(reward, items)
    bad = [i for i, g in enumerate(got) if g != 1.0]
    print(f"math500: reward(solution, answer) = 1 for {len(math) - len(bad)}/{len(math)} "
          f"= {100 * (len(math) - len(bad)) / len(math):.1f}% ({1e3 * sec / len(math):.2f} ms/call)")
    for i in bad:
        print("   miss:", repr(math[i]["answer"]))
    selfeq, sec = timed(is_equiv, [(r["answer"], r["answer"]) for r in math])
    print(f"math500: is_equiv(a, a) for {sum(selfeq)}/{len(math)} answers")
    # '\displaystyle a' differs as a string, so the fast path misses and both sides are fully parsed
    braced, sec = timed(is_equiv, [("\\displaystyle " + r["answer"], r["answer"]) for r in math])
    print(f"math500: is_equiv('\\displaystyle a', a) for {sum(braced)}/{len(math)} answers "
          f"({1e3 * sec / len(math):.2f} ms/call, full parse of both sides)")

    def trivial(s):
        return re.sub(r"\s+|\\left|\\right|\\!|\\,|\$", "", s).replace("\\dfrac", "\\frac")

    rng = random.Random(0)
    answers = [r["answer"] for r in math]
    pairs = []
    while len(pairs) < a.pairs:
        x, y = rng.sample(answers, 2)
        if trivial(x) != trivial(y):
            pairs.append((x, y))
    verdicts, sec = timed(is_equiv, pairs)
    equal = [pr for pr, v in zip(pairs, verdicts) if v]
    print(f"negative control: {len(equal)}/{len(pairs)} random pairs of different answers judged equal "
          f"({1e3 * sec / len(pairs):.2f} ms/pair)")
    if a.show_negatives:
        for x, y in equal:
            print(f"   judged equal: {x!r}  ~  {y!r}")
    slowest = max(((time.perf_counter(), is_equiv(x, y), time.perf_counter(), x, y) for x, y in pairs[:500]),
                  key=lambda t: t[2] - t[0])
    print(f"slowest of 500 pairs: {1e3 * (slowest[2] - slowest[0]):.1f} ms ({slowest[3]!r} vs {slowest[4]!r})")


if __name__ == "__main__":
    main()
