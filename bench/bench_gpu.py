"""Speed and memory of mgrpo.py's own training step on a Qwen2.5-0.5B-shaped model (random weights,
no download), against plain dynamic-cache `generate` on the very same prompts.

    python bench/bench_gpu.py                 # one GPU: the realistic step, then the default CLI config
    python bench/bench_gpu.py --smoke         # CPU, tiny model: checks the script runs (used by the tests)

What it does:
  1. builds the model from Qwen2.5-0.5B's config, a bf16 rollout copy and a bf16 reference, as mgrpo.setup does;
  2. runs mgrpo.train_step once to warm up (compilation of the static-cache decode step shows here),
     then once timed, recording every generate and policy_update call it makes;
  3. replays the recorded generate calls with plain `model.generate` (dynamic cache, all rows of a layer
     in one call) -- the same prompts, the same lengths -- for the rollout speed ratio;
  4. runs one step of the default CLI config (8 questions x G 8, H 4, 512 new tokens) for peak memory.
Random weights almost never sample the stop token, so every rollout runs to max_new_tokens: a worst case.
Rewards come from verify.reward on a synthetic completion whose boxed digit is random (about half right).
"""
import argparse
import copy
import json
import os
import random
import sys
import time
from types import SimpleNamespace

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mgrpo  # noqa: E402

QWEN25_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                  rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def fake_tokens(vocab, prompt_len, seed=0):
    """What mgrpo.Tokens provides, without a tokenizer: fixed random prompt ids per question, and a
    completion 'text' of realistic length whose boxed answer depends on the sampled ids."""
    rng = random.Random(seed)
    prompts = {}

    def prompt(q):
        if q not in prompts:
            prompts[q] = [rng.randrange(vocab - 2) for _ in range(prompt_len)]
        return prompts[q]

    def text(ids):
        return "Let me work through this step by step. " * 15 + f"So the answer is \\boxed{{{sum(ids) % 2}}}."

    stop = [vocab - 1]
    return SimpleNamespace(prompt=prompt, text=text, stop=stop, pad=vocab - 2,
                           guides=[[rng.randrange(vocab - 2) for _ in range(40)] for _ in range(4)],
                           strip_stop=lambda ids: ids[:-1] if ids and ids[-1] in stop else ids)


def build(cfg, device, args):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    policy = Qwen2ForCausalLM(Qwen2Config(**cfg)).to(device)                 # fp32 master weights
    if args.grad_checkpointing:
        mgrpo.enable_checkpointing(policy)
    low = torch.bfloat16 if device.type == "cuda" else torch.float32
    rollout = copy.deepcopy(policy).to(low).requires_grad_(False) if low != torch.float32 else policy
    ref = copy.deepcopy(policy).to(low).eval().requires_grad_(False) if args.beta > 0 else None
    opt = torch.optim.AdamW(policy.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    return SimpleNamespace(policy=policy, rollout=rollout, ref=ref, opt=opt, device=device,
                           tk=fake_tokens(cfg["vocab_size"], args.prompt_len))


class Recorder:
    """Wraps mgrpo.generate and mgrpo.policy_update to log each call's inputs, tokens and seconds."""

    def __init__(self, device):
        self.device, self.gens, self.updates = device, [], []
        self._gen, self._upd = mgrpo.generate, mgrpo.policy_update

    def __enter__(self):
        def gen(model, prompts, n, tk, max_new_tokens, *a, **kw):
            sync(self.device)
            t = time.perf_counter()
            out = self._gen(model, prompts, n, tk, max_new_tokens, *a, **kw)
            sync(self.device)
            self.gens.append(dict(prompts=prompts, n=n, max_new=max_new_tokens, sec=time.perf_counter() - t,
                                  tokens=sum(map(len, out))))
            return out

        def upd(run, prompts, completions, adv, args):
            sync(self.device)
            t = time.perf_counter()
            out = self._upd(run, prompts, completions, adv, args)
            sync(self.device)
            self.updates.append(dict(sec=time.perf_counter() - t, seqs=len(completions),
                                     tokens=sum(len(p) + len(c) for p, c in zip(prompts, completions))))
            return out

        mgrpo.generate, mgrpo.policy_update = gen, upd
        return self

    def __exit__(self, *exc):
        mgrpo.generate, mgrpo.policy_update = self._gen, self._upd


@torch.no_grad()
def plain_generate(model, rows, max_new, tk, device, temperature):
    """What a straightforward implementation does: one dynamic-cache generate call over all rows."""
    ids, mask = mgrpo.left_pad(rows, tk.pad, device)
    sync(device)
    t = time.perf_counter()
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature, top_k=0,
                         top_p=1.0, max_new_tokens=max_new, eos_token_id=tk.stop, pad_token_id=tk.pad)
    sync(device)
    new = out[:, ids.shape[1]:]
    tokens = sum(len(mgrpo.cut_at_stop(r, tk.stop)) for r in new.tolist())
    return time.perf_counter() - t, tokens


def one_step(run, args, cache_len, step):
    problems = [{"question": f"q{step}-{i}", "gold": "1"} for i in range(args.batch_size)]
    sync(run.device)
    t = time.perf_counter()
    log = mgrpo.train_step(run, problems, args, random.Random(step), cache_len)
    sync(run.device)
    return log, time.perf_counter() - t


def step_args(**kw):
    a = mgrpo.build_parser().parse_args(["--model", "bench"])
    a.__dict__.update(kw)
    return a


def measure(cfg, device, args, label, replay):
    run = build(cfg, device, args)
    cache_len = None
    if args.static_cache == "on" or (args.static_cache == "auto" and device.type == "cuda"):
        cache_len = mgrpo.static_cache_len(args.prompt_len, args.max_new_tokens, run.tk.guides)
    res = {"config": label, "questions": args.batch_size, "G": args.G, "H": args.H, "prompt_len": args.prompt_len,
           "new_tokens": args.max_new_tokens, "micro_batch": args.micro_batch, "static_cache": bool(cache_len),
           "grad_checkpointing": args.grad_checkpointing}
    _, res["sec_first_step_incl_compile"] = one_step(run, args, cache_len, 0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with Recorder(device) as rec:
        log, sec = one_step(run, args, cache_len, 1)
    res["sec_step"] = sec
    res["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    gen_sec = sum(g["sec"] for g in rec.gens)
    gen_tok = sum(g["tokens"] for g in rec.gens)
    upd_sec = sum(u["sec"] for u in rec.updates)
    upd_tok = sum(u["tokens"] for u in rec.updates)
    res.update(rollout_rows=[len(g["prompts"]) * g["n"] for g in rec.gens], gen_sec=gen_sec, gen_tokens=gen_tok,
               gen_tok_per_s=gen_tok / gen_sec, update_sec=upd_sec, update_tokens=upd_tok,
               update_seqs=[u["seqs"] for u in rec.updates], update_tok_per_s=upd_tok / max(upd_sec, 1e-9),
               other_sec=sec - gen_sec - upd_sec, other_frac=(sec - gen_sec - upd_sec) / sec,
               phases={k: v for k, v in log.items() if k.startswith("sec_")},
               l1_reward=log["l1_reward"], l2_samples_kept=log.get("l2_samples_kept"))
    if replay:
        plain_sec = plain_tok = 0
        for g in rec.gens:
            rows = [p for p in g["prompts"] for _ in range(g["n"])]
            s, n = plain_generate(run.rollout, rows, g["max_new"], run.tk, device, args.temperature)
            plain_sec, plain_tok = plain_sec + s, plain_tok + n
        res.update(plain_gen_sec=plain_sec, plain_gen_tokens=plain_tok, plain_tok_per_s=plain_tok / plain_sec,
                   rollout_speedup=(gen_tok / gen_sec) / (plain_tok / plain_sec))
    del run
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return res


def update_sweep(cfg, device, seqs, prompt_len, new_tokens, smoke):
    """policy_update alone on synthetic rollouts, for several micro-batch sizes with and without
    gradient checkpointing: update tokens/s and peak memory (no generation, so no compilation)."""
    out = []
    for mb, ckpt in ([(2, False), (2, True)] if smoke else
                     [(8, False), (16, False), (8, True), (16, True), (32, True)]):
        args = step_args(micro_batch=mb, grad_checkpointing=ckpt, prompt_len=prompt_len)
        run = build(cfg, device, args)
        run.policy.train()
        g = torch.Generator().manual_seed(0)
        V = cfg["vocab_size"] - 2
        prompts = [torch.randint(V, (prompt_len,), generator=g).tolist() for _ in range(seqs)]
        comps = [torch.randint(V, (new_tokens,), generator=g).tolist() for _ in range(seqs)]
        adv = torch.randn(seqs, generator=g)
        mgrpo.policy_update(run, prompts, comps, adv, args)          # warm-up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync(device)
        t = time.perf_counter()
        mgrpo.policy_update(run, prompts, comps, adv, args)
        sync(device)
        sec = time.perf_counter() - t
        r = {"micro_batch": mb, "grad_checkpointing": ckpt, "seqs": seqs, "seq_len": prompt_len + new_tokens,
             "sec": sec, "tok_per_s": seqs * (prompt_len + new_tokens) / sec,
             "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None}
        print(json.dumps(r), flush=True)
        out.append(r)
        del run
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny model on the CPU (checks the script, not speed)")
    p.add_argument("--skip-default", action="store_true", help="only the realistic step")
    p.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for bench_gpu.json")
    a = p.parse_args(argv)
    device = torch.device("cpu" if a.smoke or not torch.cuda.is_available() else "cuda")
    cfg = TINY if a.smoke else QWEN25_05B
    results = []
    # The issue's realistic step: 32 questions x G 8, 128-token prompts, 256 new tokens, and Layer 2.
    realistic = step_args(batch_size=32, G=8, H=4, max_new_tokens=256, micro_batch=8, prompt_len=128)
    default = step_args(prompt_len=150)                 # the CLI defaults; GSM8K chat prompts are ~150 tokens
    if a.smoke:
        realistic = step_args(batch_size=2, G=4, H=2, max_new_tokens=6, micro_batch=2, prompt_len=5, device="cpu")
        default = step_args(batch_size=2, G=2, H=2, max_new_tokens=6, micro_batch=2, prompt_len=5,
                            static_cache="on")
    plan = [("realistic (32q x G8, 256 new)", realistic, True)]
    if not a.skip_default:
        plan.append(("CLI defaults (8q x G8, 512 new)", default, False))
    info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
            "transformers": __import__("transformers").__version__, "date": time.strftime("%Y-%m-%d")}
    sweep = update_sweep(cfg, device, 4 if a.smoke else 256, 5 if a.smoke else 128, 6 if a.smoke else 256, a.smoke)
    for label, args, replay in plan:
        label = "smoke: " + label if a.smoke else label
        print(f"--- {label}", flush=True)
        r = measure(cfg, device, args, label, replay)
        results.append(r)
        print(json.dumps(r, indent=1), flush=True)
        with open(os.path.join(a.out, "bench_gpu.json"), "w") as f:   # after each config, in case of a crash
            json.dump({"info": info, "results": results, "update_sweep": sweep}, f, indent=1)
    print(f"\n{info}")
    print(f"{'config':34} {'step s':>7} {'gen tok/s':>10} {'plain tok/s':>11} {'ratio':>6} {'upd tok/s':>10} "
          f"{'other':>6} {'peak GiB':>8} {'1st step s':>10}")
    for r in sweep:
        print(f"update only: {r['seqs']} seqs x {r['seq_len']} tokens, micro-batch {r['micro_batch']:2}, "
              f"checkpointing {'on ' if r['grad_checkpointing'] else 'off'}: {r['tok_per_s']:8.0f} tok/s, "
              f"peak {r['peak_gib'] or 0:.2f} GiB")
    for r in results:
        print(f"{r['config']:34} {r['sec_step']:7.2f} {r['gen_tok_per_s']:10.0f} {r.get('plain_tok_per_s', 0):11.0f} "
              f"{r.get('rollout_speedup', 0):6.2f} {r['update_tok_per_s']:10.0f} {100 * r['other_frac']:5.1f}% "
              f"{r['peak_gib'] or 0:8.2f} {r['sec_first_step_incl_compile']:10.1f}")
    return results


if __name__ == "__main__":
    main()
