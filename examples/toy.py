"""
The toy task of the examples: MGRPO learning on a laptop CPU, through mgrpo.train_step itself.

    from toy import run_toy             # examples/ablations.py runs the experiments with it
    python examples/toy.py write DIR    # the task as files for the command line: DIR/model (warm-started),
                                        # DIR/train.jsonl and DIR/test.jsonl (the held-out problems)

The task: "What is the largest digit in 3 8 1 5?" -> \\boxed{8}. Four digits whose maximum is uniform on
0..9, so no constant answer earns more than ~10% (with four uniform digits '9' is right 34% of the time and
RL learns to always say 9); evaluation uses 200 problems that training never sees. The model is a 2-layer
Qwen2 with hidden size 64 and a byte-level BPE tokenizer with a chat template, both built here.

Before RL, a few supervised steps on the task itself (target \\boxed{max}) stop as soon as greedy accuracy
on training problems reaches 25%: a weak policy that solves some problems, as a pretrained model does when
RL starts. RL from scratch does not work here: a random model never writes a parsable answer, and after a
format-only warm start (a random listed digit in the box) the tiny model answers one constant digit for
every input, so the reward has no input-dependent behaviour to reinforce and RL only hops between
constants. Everything after the warm start is mgrpo.train_step, the function the command line uses, with
verify.reward as the reward.

Evaluation reports the paper's greedy metrics, plus a sampled correction rate: t1 sampled at temperature 1
(4 per problem), each wrong one followed by q' with the first guide and one sampled t2; the rate is the
fraction of those t2 that are right. Greedy t2 at this scale almost always repeats greedy t1, so the
greedy Δi→c stays near 0 even while Layer 2 learns to correct sampled mistakes.
"""
import argparse
import json
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mgrpo  # noqa: E402
from verify import reward as verify_reward  # noqa: E402

N_DIGITS = 4


def make_problems(n, seed, exclude=()):
    """n distinct problems {"question", "gold"}, none of whose digit lists is in `exclude`."""
    rng = random.Random(seed)
    seen, out = set(exclude), []
    while len(out) < n:
        # the maximum is drawn uniformly, so no constant answer pays (see the module docstring)
        m = rng.randrange(10)
        digits = [rng.randrange(m + 1) for _ in range(N_DIGITS - 1)]
        digits.insert(rng.randrange(N_DIGITS), m)
        digits = tuple(digits)
        if digits in seen:
            continue
        seen.add(digits)
        out.append({"question": f"What is the largest digit in {' '.join(map(str, digits))}?",
                    "gold": str(max(digits)), "digits": digits})
    return out


def split(seed, n_eval=200):
    """Held-out evaluation problems and a disjoint training pool (the rest of the 10,000)."""
    held_out = make_problems(n_eval, seed=10_000 + seed)
    train = make_problems(2000, seed=seed, exclude={p["digits"] for p in held_out})
    return train, held_out


def build_tiny(path, seed=0, hidden=64, vocab_size=400, corpus=None):
    """A random 2-layer Qwen2 and a byte-level BPE tokenizer with a chat template, saved to `path`
    (both load with from_pretrained). The tokenizer is byte-level so that text survives the save/load
    round trip unchanged (transformers rebuilds a 'qwen2' tokenizer as Qwen2Tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = corpus or [p["question"] + " " + mgrpo.INSTRUCTION + " \\boxed{" + p["gold"] + "}"
                        for p in make_problems(300, seed=99)] + mgrpo.GUIDES * 20
    bpe.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  chat_template=template)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def greedy_accuracy(run, problems, args):
    outs = mgrpo.generate(run.rollout, [run.tk.prompt(p["question"]) for p in problems], 1, run.tk,
                          args.max_new_tokens, greedy=True, gen_batch=args.gen_batch)
    return sum(verify_reward(run.tk.text(o), p["gold"]) for o, p in zip(outs, problems)) / len(problems)


def warm_start(run, problems, args, target=0.25, max_steps=400, lr=3e-3, batch=32):
    """Supervised steps on '\\boxed{gold}<eos>' after the Layer-1 prompt, stopped as soon as greedy
    accuracy on 128 training problems reaches `target`: a weak policy that solves some problems, as a
    pretrained model does before RL. (The step at which a tiny model 'gets' the task varies a lot with
    the seed, so a fixed step count would start some seeds at chance and others near the top.)"""
    rng = random.Random(args.seed)
    tk = run.tk
    probe = problems[:128]
    opt = torch.optim.AdamW(run.policy.parameters(), lr=lr)
    for step in range(max_steps):
        if step % 5 == 0 and greedy_accuracy(run, probe, args) >= target:
            return step
        run.policy.train()
        batch_p = rng.sample(problems, batch)
        prompts = [tk.prompt(p["question"]) for p in batch_p]
        targets = [tk.tok.encode(f"\\boxed{{{p['gold']}}}", add_special_tokens=False) + [tk.stop[0]]
                   for p in batch_p]
        ids, mask, comp = mgrpo.pack(prompts, targets, tk.pad, run.device)
        loss = -mgrpo.token_logprobs(run.policy, ids, mask, comp).sum() / comp.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        mgrpo.sync_rollout_model(run)
    return max_steps


def sampled_correction_rate(run, problems, args, n=4, seed=1234):
    """Sampling at temperature 1, as in training: n t1 answers per problem; each wrong one gets q' with the
    first guide and one sampled t2. Returns the fraction of those t2 that are right (fixed seed, so the
    number is repeatable; the training RNG is left untouched)."""
    tk = run.tk
    prompts = [tk.prompt(p["question"]) for p in problems]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        t1 = mgrpo.generate(run.rollout, prompts, n, tk, args.max_new_tokens, 1.0, gen_batch=args.gen_batch)
        wrong = [i for i, o in enumerate(t1) if verify_reward(tk.text(o), problems[i // n]["gold"]) == 0]
        q2 = [mgrpo.build_correction_prompt(prompts[i // n], tk.strip_stop(t1[i]), tk.guides[0]) for i in wrong]
        t2 = mgrpo.generate(run.rollout, q2, 1, tk, args.max_new_tokens, 1.0, gen_batch=args.gen_batch) if q2 else []
    fixed = [verify_reward(tk.text(o), problems[i // n]["gold"]) for i, o in zip(wrong, t2)]
    return sum(fixed) / len(fixed) if fixed else 0.0


def toy_args(**kw):
    """The mgrpo command line's own arguments, set for the toy (tiny model, short answers, CPU)."""
    a = mgrpo.build_parser().parse_args(["--model", "toy"])
    a.__dict__.update(dict(device="cpu", batch_size=16, G=8, H=4, lr=1e-3, beta=0.0, max_new_tokens=8,
                           micro_tokens=8192, gen_batch=512, grad_checkpointing=False, eval_n=200))
    a.__dict__.update(kw)
    return a


def run_toy(seed, steps, workdir, warm_target=0.25, curve_every=10, n_eval=200, log=print, **kw):
    """Build, warm-start, evaluate, train `steps` steps through mgrpo.train_step (MGRPO, or GRPO with
    layers=1; any other mgrpo flag as a keyword), evaluate again. Returns a dict: the paper's greedy
    metrics before/after, the sampled correction rate before/after, the learning curve
    [(step, held-out Acc@t1, sampled correction rate)] every `curve_every` steps, the optimizer steps
    taken, the tokens generated in training (Layer 1 and Layer 2), warm-start steps and seconds."""
    t0 = time.time()
    path = build_tiny(os.path.join(workdir, f"model-{seed}"), seed=seed)
    args = toy_args(model=path, seed=seed, **kw)
    torch.manual_seed(seed)
    run = mgrpo.setup(args)
    train, held_out = split(seed)
    held_out = held_out[:n_eval]
    warm = warm_start(run, train, args, target=warm_target)

    def measure(tag):
        m = mgrpo.evaluate(run, held_out, args, os.path.join(workdir, f"eval-{seed}-{tag}.jsonl"))
        return m, sampled_correction_rate(run, held_out, args)

    out = {"warm_steps": warm, "optimizer_steps": 0, "l1_tokens": 0, "l2_tokens": 0}
    out["before"], out["sampled_corr_before"] = measure("before")
    out["curve"] = [(0, out["before"]["acc_t1"], out["sampled_corr_before"])]
    rng = random.Random(seed)
    torch.manual_seed(seed)                 # the RL phase's sampling starts from the same state for every method
    run.policy.train()
    for step in range(1, steps + 1):
        batch = [train[i] for i in mgrpo.batch_indices(step - 1, args.batch_size, len(train), seed)]
        st = mgrpo.train_step(run, batch, args, rng)
        out["optimizer_steps"] += 1 - st["l1_skipped"] + (st.get("l2_loss") is not None) - st.get("l2_skipped", 0)
        out["l1_tokens"] += st["l1_tokens"]
        out["l2_tokens"] += st.get("l2_tokens", 0)
        if curve_every and step % curve_every == 0 and step < steps:
            m, corr = measure("curve")
            out["curve"].append((step, m["acc_t1"], corr))
            if log:
                log(f"  seed {seed} step {step}: held-out Acc@t1 {m['acc_t1']:.3f}, sampled correction {corr:.3f}")
    out["after"], out["sampled_corr_after"] = measure("after")
    out["curve"].append((steps, out["after"]["acc_t1"], out["sampled_corr_after"]))
    out["rollout_tokens"] = out["l1_tokens"] + out["l2_tokens"]
    out["seconds"] = time.time() - t0
    return out


def write_task(folder, seed=0, warm_target=0.25):
    """The toy task as files, for `python mgrpo.py --model DIR/model --data DIR/train.jsonl --eval-data
    DIR/test.jsonl`: the tiny model after its warm start, the training pool and the held-out problems
    ({"question", "answer"} per line). Returns the warm-start steps taken."""
    path = build_tiny(os.path.join(folder, "model"), seed=seed)
    args = toy_args(model=path, seed=seed)
    torch.manual_seed(seed)
    run = mgrpo.setup(args)
    train, held_out = split(seed)
    steps = warm_start(run, train, args, target=warm_target)
    run.policy.save_pretrained(path)
    for name, problems in (("train", train), ("test", held_out)):
        with open(os.path.join(folder, f"{name}.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"question": p["question"], "answer": p["gold"]}) + "\n" for p in problems)
    return steps


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="Write the toy task (warm-started tiny model and data) for mgrpo.py.")
    p.add_argument("command", choices=["write"])
    p.add_argument("folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warm-target", type=float, default=0.25, help="greedy accuracy that ends the warm start")
    opts = p.parse_args()
    if os.path.exists(opts.folder) and os.listdir(opts.folder):
        p.error(f"{opts.folder} is not empty")
    warm = write_task(opts.folder, opts.seed, opts.warm_target)
    print(f"wrote {opts.folder}/model (after {warm} warm-start steps), {opts.folder}/train.jsonl, "
          f"{opts.folder}/test.jsonl")
