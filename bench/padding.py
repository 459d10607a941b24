"""How much padding the update computes, on GSM8K-shaped rollouts with the real Qwen2.5 tokenizer (CPU,
no model, seconds).

    python bench/padding.py [--data-dir ../shared/data] [--tokenizer ../shared/qwen2.5-math-tokenizer]

Rollouts are built from real text: Layer-1 prompts are GSM8K questions in the chat template, G = 8
completions per question are GSM8K worked solutions drawn at random (real lengths, short ones: a model's
answers run longer), and Layer 2 takes half of them as wrong: q' = prompt + answer + guide, with H = 4
corrections, again drawn from the solutions. Two ways to cut the update into micro-batches are compared:
  before: 16 sequences at a time in arrival order, prompts left-padded and completions right-padded
          (width = longest prompt + longest completion), as mgrpo did until --micro-tokens;
  now:    mgrpo.micro_batches -- whole rows right-padded, longest first, at most --micro-tokens tokens.
"""
import argparse
import json
import os
import random
import sys
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mgrpo  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def padding_before(prompts, comps, per_mb=16):
    computed = sum(len(prompts[i:i + per_mb]) * (max(map(len, prompts[i:i + per_mb])) + max(map(len, comps[i:i + per_mb])))
                   for i in range(0, len(comps), per_mb))
    return 1 - sum(len(p) + len(c) for p, c in zip(prompts, comps)) / computed


def padding_now(prompts, comps, budget):
    lengths = [len(p) + len(c) for p, c in zip(prompts, comps)]
    mbs = mgrpo.micro_batches(lengths, budget)
    return 1 - sum(lengths) / sum(len(mb) * lengths[mb[0]] for mb in mbs), len(mbs)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.path.join(HERE, "..", "..", "shared", "data"))
    p.add_argument("--tokenizer", default=os.path.join(HERE, "..", "..", "shared", "qwen2.5-math-tokenizer"))
    p.add_argument("--questions", type=int, default=32)
    p.add_argument("--micro-tokens", type=int, default=mgrpo.build_parser().get_default("micro_tokens"))
    a = p.parse_args()
    from transformers import AutoTokenizer
    tk = mgrpo.Tokens(AutoTokenizer.from_pretrained(a.tokenizer), SimpleNamespace())
    with open(os.path.join(a.data_dir, "gsm8k", "train.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    rng = random.Random(0)
    solutions = [tk.tok.encode(r["answer"], add_special_tokens=False) + [tk.stop[0]] for r in rows[1000:3000]]
    questions = [tk.prompt(r["question"]) for r in rows[:a.questions]]
    G, H = 8, 4
    l1_prompts = [q for q in questions for _ in range(G)]
    l1_comps = [rng.choice(solutions) for _ in l1_prompts]
    wrong = [i for i in range(len(l1_comps)) if i % 2]
    l2_prompts = [mgrpo.build_correction_prompt(l1_prompts[i], tk.strip_stop(l1_comps[i]), rng.choice(tk.guides))
                  for i in wrong for _ in range(H)]
    l2_comps = [rng.choice(solutions) for _ in l2_prompts]
    print(f"{a.questions} GSM8K questions x G {G}; Layer 2 on half of them x H {H}; --micro-tokens {a.micro_tokens}")
    for name, ps, cs in (("Layer 1", l1_prompts, l1_comps), ("Layer 2", l2_prompts, l2_comps)):
        now, n_mb = padding_now(ps, cs, a.micro_tokens)
        tokens = sum(len(x) + len(y) for x, y in zip(ps, cs))
        print(f"{name}: {len(cs)} sequences, {tokens} tokens (mean {tokens / len(cs):.0f}); padding computed: "
              f"before {100 * padding_before(ps, cs):.1f}%, now {100 * now:.1f}% in {n_mb} micro-batches")


if __name__ == "__main__":
    main()
