"""Speed and memory of mgrpo.py's own training step on a Qwen2.5-0.5B-shaped model (random weights,
no download).

    python bench/bench_gpu.py                 # one GPU (~8 minutes on an H200)
    python bench/bench_gpu.py --smoke         # CPU, tiny model: checks the script runs (a test runs it)

Three measurements, each printed when it finishes and saved to bench_gpu.json in --out (default bench/results/,
wherever the command is run from). A --smoke run measures nothing worth keeping: it writes bench_gpu-smoke.json,
by default in the system's temporary folder, so it can never replace a GPU measurement or dirty the checkout.
  1. Update sweep: mgrpo.policy_update alone on synthetic rollouts shaped like a realistic step's
     (256 Layer-1 sequences of 128 + 256 tokens, 256 Layer-2 ones of 128 + 256 + 40 + 256), for
     several --micro-tokens budgets, with and without gradient checkpointing, and with the decoder
     compiled (torch.compile): update tokens/s, padding and peak memory. An out-of-memory point is
     recorded as such, not fatal.
  2. The realistic step (32 questions x G 8, H 4, 256 new tokens): mgrpo.train_step once to warm up
     (the static-cache decode step compiles here), then once timed while every generate and
     policy_update call is recorded. Then the recorded generate calls are replayed with mgrpo's own
     rollouts and with plain dynamic-cache `generate` (all rows of a call in one `generate`), the same
     prompts and lengths. Both are warmed on those very calls before either is timed, then timed in
     alternation `--rounds` times; the rollout ratio is the ratio of the medians.
  3. One step of the CLI defaults (8 questions x G 8, H 4, 512 new tokens) for peak memory.
Random weights almost never sample the stop token, so every rollout runs to its length cap: a worst
case. Rewards come from verify.reward on a synthetic completion whose boxed digit depends on the
sampled ids (about half right), so Layer 2 has work.
"""
import argparse
import copy
import json
import os
import random
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mgrpo  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")   # where the README keeps raw numbers
SMOKE_OUT = os.path.join(tempfile.gettempdir(), "mgrpo-bench-smoke")

QWEN25_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                  rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_gib(device):
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


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


def build(cfg, device, args, compile_decoder=False):
    """What mgrpo.setup builds -- fp32 policy, bf16 rollout copy and reference on CUDA -- from a config."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    policy = Qwen2ForCausalLM(Qwen2Config(**cfg)).to(device)                 # fp32 master weights
    if args.grad_checkpointing:
        mgrpo.enable_checkpointing(policy)
    low = torch.bfloat16 if device.type == "cuda" else torch.float32
    rollout = copy.deepcopy(policy).to(low).requires_grad_(False) if low != torch.float32 else policy
    ref = copy.deepcopy(policy).to(low).eval().requires_grad_(False) if args.beta > 0 else None
    if compile_decoder:
        policy.get_decoder().compile(dynamic=True)      # in place: parameter names stay as they are
    opt = torch.optim.AdamW(policy.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    return SimpleNamespace(policy=policy, rollout=rollout, ref=ref, opt=opt, device=device, bad_steps=0, seconds={},
                           tk=fake_tokens(cfg["vocab_size"], args.prompt_len))


def step_args(**kw):
    a = mgrpo.build_parser().parse_args(["--model", "bench"])
    a.__dict__.update(kw)
    return a


# -----------------------------------------------------------------------------
# 1. The update alone


def update_sweep(cfg, device, points, layer_lens, n_seqs):
    """policy_update on synthetic rollouts of the given (prompt, completion) lengths, per sweep point."""
    out = []
    g = torch.Generator().manual_seed(0)
    V = cfg["vocab_size"] - 2
    prompts, comps = [], []
    for p_len, c_len in layer_lens:                  # lengths vary +-25% around the nominal, as real ones do
        for _ in range(n_seqs):
            jitter = lambda n: max(1, int(n * (0.75 + 0.5 * torch.rand(1, generator=g).item())))  # noqa: E731
            prompts.append(torch.randint(V, (jitter(p_len),), generator=g).tolist())
            comps.append(torch.randint(V, (jitter(c_len),), generator=g).tolist())
    adv = torch.randn(len(comps), generator=g)
    tokens = sum(len(p) + len(c) for p, c in zip(prompts, comps))
    for budget, ckpt, comp in points:
        args = step_args(micro_tokens=budget, grad_checkpointing=ckpt, prompt_len=0)
        r = {"micro_tokens": budget, "grad_checkpointing": ckpt, "compiled": comp, "seqs": len(comps),
             "tokens": tokens}
        run = None
        try:
            run = build(cfg, device, args, compile_decoder=comp)
            run.policy.train()
            mgrpo.policy_update(run, prompts, comps, adv, args)          # warm-up (and compilation)
            reset_peak(device)
            sync(device)
            t = time.perf_counter()
            st = mgrpo.policy_update(run, prompts, comps, adv, args)
            sync(device)
            r.update(sec=time.perf_counter() - t, pad_frac=st["pad_frac"], peak_gib=peak_gib(device))
            r["tok_per_s"] = tokens / r["sec"]
        except torch.cuda.OutOfMemoryError:
            r["oom"] = True
        except Exception as e:                        # e.g. a compiler that is missing on this machine
            r["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        print(json.dumps(r), flush=True)
        out.append(r)
        del run
        reset_peak(device)
    return out


# -----------------------------------------------------------------------------
# 2. The realistic step, and its rollouts replayed


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

        def upd(run, prompts, completions, adv, args, **kw):
            sync(self.device)
            t = time.perf_counter()
            out = self._upd(run, prompts, completions, adv, args, **kw)
            sync(self.device)
            self.updates.append(dict(sec=time.perf_counter() - t, seqs=len(completions), pad_frac=out["pad_frac"],
                                     tokens=sum(len(p) + len(c) for p, c in zip(prompts, completions))))
            return out

        mgrpo.generate, mgrpo.policy_update = gen, upd
        return self

    def __exit__(self, *exc):
        mgrpo.generate, mgrpo.policy_update = self._gen, self._upd


@torch.no_grad()
def plain_generate(model, rows, max_new, tk, device, temperature):
    """What a straightforward implementation does: one dynamic-cache generate call over all rows.
    Returns the number of completion tokens."""
    ids, mask = mgrpo.left_pad(rows, tk.pad, device)
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature, top_k=0,
                         top_p=1.0, max_new_tokens=max_new, eos_token_id=tk.stop, pad_token_id=tk.pad)
    return sum(len(mgrpo.cut_at_stop(r, tk.stop)) for r in out[:, ids.shape[1]:].tolist())


def replay_rollouts(run, gens, args, cache_len, rounds):
    """mgrpo's rollouts and plain generate on the recorded generate calls: both warmed on these very
    calls first, then timed in alternation. Returns median tokens/s of each and their ratio."""
    def ours(g):
        out = mgrpo.generate(run.rollout, g["prompts"], g["n"], run.tk, g["max_new"], args.temperature,
                             gen_batch=args.gen_batch, cache_len=cache_len)
        return sum(map(len, out))

    def plain(g):
        rows = [p for p in g["prompts"] for _ in range(g["n"])]
        return plain_generate(run.rollout, rows, g["max_new"], run.tk, run.device, args.temperature)

    impls = {"mgrpo": ours, "plain": plain}
    for fn in impls.values():                          # warm-up: same shapes, same allocator state
        for g in gens:
            fn(g)
    speed = {k: [] for k in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            sync(run.device)
            t = time.perf_counter()
            tokens = sum(fn(g) for g in gens)
            sync(run.device)
            speed[name].append(tokens / (time.perf_counter() - t))
    mg, pl = statistics.median(speed["mgrpo"]), statistics.median(speed["plain"])
    return {"replay_mgrpo_tok_per_s": mg, "replay_plain_tok_per_s": pl, "rollout_speedup": mg / pl,
            "replay_rounds": speed}


def one_step(run, args, cache_len, step):
    problems = [{"question": f"q{step}-{i}", "gold": "1"} for i in range(args.batch_size)]
    sync(run.device)
    run.cache_len = cache_len                      # what mgrpo.main sets after setup
    t = time.perf_counter()
    log = mgrpo.train_step(run, problems, args, random.Random(step))
    sync(run.device)
    return log, time.perf_counter() - t


def measure(cfg, device, args, label, rounds):
    """One warm-up step and one recorded step; with rounds > 0, the rollouts replayed (see the docstring)."""
    run = build(cfg, device, args)
    cache_len = None
    if args.static_cache == "on" or (args.static_cache == "auto" and device.type == "cuda"):
        cache_len = mgrpo.static_cache_len(args.prompt_len, args.max_new_tokens, run.tk.guides)
    res = {"config": label, "questions": args.batch_size, "G": args.G, "H": args.H, "prompt_len": args.prompt_len,
           "new_tokens": args.max_new_tokens, "micro_tokens": args.micro_tokens, "static_cache": bool(cache_len),
           "grad_checkpointing": args.grad_checkpointing}
    _, res["sec_first_step_incl_compile"] = one_step(run, args, cache_len, 0)
    reset_peak(device)
    with Recorder(device) as rec:
        log, sec = one_step(run, args, cache_len, 1)
    gen_sec, gen_tok = sum(g["sec"] for g in rec.gens), sum(g["tokens"] for g in rec.gens)
    upd_sec, upd_tok = sum(u["sec"] for u in rec.updates), sum(u["tokens"] for u in rec.updates)
    res.update(sec_step=sec, peak_gib=peak_gib(device), rollout_rows=[len(g["prompts"]) * g["n"] for g in rec.gens],
               gen_sec=gen_sec, gen_tokens=gen_tok, gen_tok_per_s=gen_tok / gen_sec, update_sec=upd_sec,
               update_tokens=upd_tok, update_seqs=[u["seqs"] for u in rec.updates],
               update_pad_frac=[round(u["pad_frac"], 3) for u in rec.updates],
               update_tok_per_s=upd_tok / max(upd_sec, 1e-9), other_sec=sec - gen_sec - upd_sec,
               other_frac=(sec - gen_sec - upd_sec) / sec,
               phases={k: v for k, v in log.items() if k.startswith("sec_")},
               l1_reward=log["l1_reward"], l2_samples_trained=log.get("l2_samples_trained"))
    if rounds:
        res.update(replay_rollouts(run, rec.gens, args, cache_len, rounds))
    del run
    reset_peak(device)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny model on the CPU (checks the script, not speed)")
    p.add_argument("--skip-default", action="store_true", help="leave out the CLI-defaults memory step")
    p.add_argument("--skip-sweep", action="store_true", help="leave out the update sweep")
    p.add_argument("--no-compile", action="store_true", help="leave the compiled-decoder points out of the sweep")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds of the rollout replay (0: no replay)")
    p.add_argument("--out", default=None,
                   help=f"folder for bench_gpu.json (default {RESULTS}; with --smoke, bench_gpu-smoke.json in {SMOKE_OUT})")
    a = p.parse_args(argv)
    a.out = a.out or (SMOKE_OUT if a.smoke else RESULTS)
    report_name = "bench_gpu-smoke.json" if a.smoke else "bench_gpu.json"
    os.makedirs(a.out, exist_ok=True)
    device = torch.device("cpu" if a.smoke or not torch.cuda.is_available() else "cuda")
    cfg = TINY if a.smoke else QWEN25_05B
    realistic = step_args(batch_size=32, G=8, H=4, max_new_tokens=256, prompt_len=128)
    default = step_args(prompt_len=150)                 # the CLI defaults; GSM8K chat prompts are ~150 tokens
    points = [(b, ck, False) for ck in (True, False) for b in (8192, 16384, 32768, 65536)]
    if not a.no_compile:
        points += [(16384, True, True), (32768, True, True)]
    layer_lens, n_seqs = [(128, 256), (128 + 256 + 40, 256)], 256
    if a.smoke:
        realistic = step_args(batch_size=2, G=4, H=2, max_new_tokens=6, micro_tokens=32, prompt_len=5, device="cpu")
        default = step_args(batch_size=2, G=2, H=2, max_new_tokens=6, micro_tokens=32, prompt_len=5,
                            static_cache="on")
        points, layer_lens, n_seqs = [(32, False, False), (32, True, False)], [(5, 6), (15, 6)], 4
    info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
            "transformers": __import__("transformers").__version__, "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(info), flush=True)
    report = {"info": info, "update_sweep": [], "results": []}

    def save():                                        # after each part, in case of a crash or a timeout
        with open(os.path.join(a.out, report_name), "w") as f:
            json.dump(report, f, indent=1)

    if not a.skip_sweep:
        report["update_sweep"] = update_sweep(cfg, device, points, layer_lens, n_seqs)
        save()
    plan = [("realistic (32q x G8, 256 new)", realistic, a.rounds)]
    if not a.skip_default:
        plan.append(("CLI defaults (8q x G8, 512 new)", default, 0))
    for label, args, rounds in plan:
        label = "smoke: " + label if a.smoke else label
        print(f"--- {label}", flush=True)
        report["results"].append(measure(cfg, device, args, label, rounds))
        print(json.dumps({k: v for k, v in report["results"][-1].items() if k != "replay_rounds"}), flush=True)
        save()

    print(f"\n{info}\nsaved {os.path.join(a.out, report_name)}")
    for r in report["update_sweep"]:
        what = ("OOM" if r.get("oom") else r.get("error") or
                f"{r['tok_per_s']:8.0f} tok/s, padding {100 * r['pad_frac']:4.1f}%, peak {r['peak_gib'] or 0:.2f} GiB")
        print(f"update: {r['seqs']} seqs, micro-tokens {r['micro_tokens']:6}, checkpointing "
              f"{'on ' if r['grad_checkpointing'] else 'off'}, {'compiled' if r['compiled'] else 'eager   '}: {what}")
    for r in report["results"]:
        print(f"{r['config']}: step {r['sec_step']:.2f} s, rollout {r['gen_tok_per_s']:.0f} tok/s, update "
              f"{r['update_tok_per_s']:.0f} tok/s, other {100 * r['other_frac']:.1f}%, peak {r['peak_gib'] or 0:.2f} GiB, "
              f"first step {r['sec_first_step_incl_compile']:.1f} s"
              + (f"; replay: mgrpo {r['replay_mgrpo_tok_per_s']:.0f} vs plain {r['replay_plain_tok_per_s']:.0f} "
                 f"tok/s = {r['rollout_speedup']:.2f}x" if "rollout_speedup" in r else ""))
    return report


if __name__ == "__main__":
    main()
