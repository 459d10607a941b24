"""
The toy tasks of the examples: MGRPO learning on a laptop CPU, through mgrpo.train_step itself.

    from toy import run_toy             # examples/ablations.py runs the experiments with it
    python examples/toy.py write DIR    # the digits task as files for the command line: DIR/model
                                        # (warm-started), DIR/train.jsonl and DIR/test.jsonl (held out)

`write` runs on one torch thread unless --threads says otherwise: the warm start's float sums, and so the
model it writes, depend on the thread count, and one thread was also the fastest on 2 cores (docs/toy.md).

The digits task ("digits"): "What is the largest digit in 3 8 1 5?" -> \\boxed{8}. The maximum is drawn
uniformly from 0..9 and the other three digits below it (with four uniform digits '9' would be right 34% of
the time and RL learns to always say 9). Problems never repeat, and that skews the maximum upwards: one
digit list has maximum 0 and fifteen have maximum 1, so after the 200 held-out problems (which training
never sees) the 2,000 of the training pool hold no maximum 0 and '9' or '8' answers 18-19% of them. The
best constant answer is right on 14-18% of the held-out problems (seeds 0, 1, 2; best_constant_accuracy),
below the 25% at which the warm start stops. The model is a 2-layer Qwen2 with hidden size 64 and a
byte-level BPE tokenizer with a chat template, both built here.

Before RL, a few supervised steps on the task itself (target \\boxed{max}) stop as soon as greedy accuracy
on training problems reaches 25%: a weak policy that solves some problems, as a pretrained model does when
RL starts. RL from scratch does not work here: a random model never writes a parsable answer, and after a
format-only warm start (a random listed digit in the box) the tiny model answers one constant digit for
every input, so the reward has no input-dependent behaviour to reinforce and RL only hops between
constants. Everything after the warm start is mgrpo.train_step, the function the command line uses, with
verify.reward as the reward.

Evaluation reports the paper's greedy metrics, plus a sampled correction rate: t1 sampled at the training
temperature (4 per problem), each wrong one followed by q' with the first guide and one sampled t2; the
rate is the fraction of those t2 that are right. On the digits task greedy t2 almost always repeats greedy
t1: the answer is one digit with no work shown, so there is nothing for a second look to find.

The addition task ("addition") is built so that there is: "What is 347 + 258?" -> '7+8=15, 4+5+1=10,
3+2+1=6. \\boxed{605}', every column written out with the carry it takes in, so a wrong answer sits next to
the work that shows it. Its tokenizer writes one token per digit. Its warm start stops at 50% greedy
accuracy and then teaches the form of a second turn (see warm_start); RL samples at temperature 0.5.

The answer_first task ("answer_first") turns the addition task around so that a wrong answer carries the
evidence of its own error and reading it off is easy: "What is 347 + 258?" -> '\\boxed{605}. Check: 7+8=15,
4+5+1=10, 3+2+1=6, ones first 506.' The box comes before the work, so a first answer must add three-digit
numbers in one go (this model almost never can); the check after it adds column by column (it learns to),
and ends with the sum's digits in the order the columns produce them. A second turn that reverses the
first answer's last number into its box is right whenever the check was. The reward reads the box only.
"""
import argparse
import contextlib
import io
import json
import os
import random
import re
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numerics  # noqa: E402,F401  (before torch: pins the CPU kernels, see numerics.py)
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mgrpo  # noqa: E402
from verify import reward as verify_reward  # noqa: E402

N_DIGITS = 4
ADD_DIGITS = 3


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


def best_constant_accuracy(problems):
    """The held-out accuracy of the best answer that ignores the question: the share of the commonest gold."""
    golds = [p["gold"] for p in problems]
    return max(map(golds.count, set(golds))) / len(golds)


def make_additions(n, seed, exclude=(), n_digits=3, work=None):
    """n distinct problems "What is 347 + 258?" (two n_digits-digit numbers), none of whose (a, b) is in
    `exclude`; gold is the sum and "work" the written answer that the warm start shows (column_work, or
    the function `work`(a, b))."""
    rng = random.Random(seed)
    seen, out = set(exclude), []
    lo, hi = 10 ** (n_digits - 1), 10 ** n_digits
    while len(out) < n:
        a, b = rng.randrange(lo, hi), rng.randrange(lo, hi)
        if (a, b) in seen:
            continue
        seen.add((a, b))
        out.append({"question": f"What is {a} + {b}?", "gold": str(a + b), "key": (a, b),
                    "work": (work or column_work)(a, b)})
    return out


def column_work(a, b):
    """Column addition written out from the ones column up, each column's sum with the carry it takes
    in: column_work(347, 258) = '7+8=15, 4+5+1=10, 3+2+1=6. \\boxed{605}'. A dropped carry shows as a
    missing '+1' right after a column whose sum is 10 or more."""
    xs, ys = str(a)[::-1], str(b)[::-1]
    carry, cols = 0, []
    for x, y in zip(xs, ys):
        total = int(x) + int(y) + carry
        cols.append(f"{x}+{y}" + ("+1" if carry else "") + f"={total}")
        carry = total // 10
    return ", ".join(cols) + f". \\boxed{{{a + b}}}"


def answer_first_work(a, b, boxed=None):
    """The answer first, then the work that checks it: answer_first_work(347, 258) =
    '\\boxed{605}. Check: 7+8=15, 4+5+1=10, 3+2+1=6, ones first 506.' The check ends with the sum's digits
    in the order the columns produce them (ones first), so a check can be read off without redoing any
    column: reversed, its last number is the sum. `boxed` puts another number in the box (a wrong first
    answer, for measuring what a second turn can learn)."""
    xs, ys = str(a)[::-1], str(b)[::-1]
    carry, cols, digits = 0, [], ""
    for x, y in zip(xs, ys):
        total = int(x) + int(y) + carry
        cols.append(f"{x}+{y}" + ("+1" if carry else "") + f"={total}")
        digits += str(total % 10)
        carry = total // 10
    digits += "1" if carry else ""
    return f"\\boxed{{{a + b if boxed is None else boxed}}}. Check: " + ", ".join(cols) + f", ones first {digits}."


def one_digit_off(number, rng):
    """`number` (a string) with one digit changed, never to a leading zero."""
    i = rng.randrange(len(number))
    digits = [d for d in "0123456789" if d != number[i] and (i or d != "0")]
    return number[:i] + rng.choice(digits) + number[i + 1:]


# A task: how its problems are drawn, what the warm start writes after the prompt, how long an answer may
# be, and the model that learns it (examples/ablations.py --task NAME).
TASKS = {
    "digits": SimpleNamespace(
        problems=lambda n, seed, exclude=(): make_problems(n, seed, exclude),
        key=lambda p: p["digits"], work=lambda p: f"\\boxed{{{p['gold']}}}",
        max_new_tokens=8, layers=2, hidden=64, split_digits=False, second_turn=False, warm_target=0.25,
        misleading_boxes=False, warm_max_steps=None, probe_every=None,
        steps=150, flags={}),
    "addition": SimpleNamespace(
        problems=lambda n, seed, exclude=(): make_additions(n, seed, exclude, ADD_DIGITS),
        key=lambda p: p["key"], work=lambda p: p["work"],
        max_new_tokens=40, layers=2, hidden=64, split_digits=True, second_turn=True, warm_target=0.5,
        misleading_boxes=False, warm_max_steps=None, probe_every=None,
        # answers of 20-30 tokens: at temperature 1 this model gets 1 in 10 right and its RL falls apart
        # (two-digit sums, measured: held-out Acc@t1 0.50 -> 0.12 in 40 steps); at 0.5 it learns
        steps=100, flags=dict(temperature=0.5, lr=3e-4)),
    "answer_first": SimpleNamespace(
        problems=lambda n, seed, exclude=(): make_additions(n, seed, exclude, ADD_DIGITS, answer_first_work),
        key=lambda p: p["key"], work=lambda p: p["work"],
        max_new_tokens=48, layers=2, hidden=64, split_digits=True, second_turn=True,
        # the warm start ends when greedy checks read the right sum on 75% of 128 training problems (the box
        # itself stays near 0: measured, seed 0, 0.005 after 700 steps); the checks need 500-700 steps
        # (probed every 20 steps, not 5: a probe is a greedy pass over 128 problems, and 1,000 steps need few)
        misleading_boxes=True, warm_target=0.75, warm_max_steps=1000, probe_every=20,
        # β = 0.1 and lr 1e-4: with the addition task's β = 0 and lr 3e-4 the checks, which the reward never
        # reads, drift (seed 0: right on 0.625 of held-out first answers, 0.215 ten MGRPO steps later) and
        # the evidence goes with them; the KL to the warm start holds them (0.575-0.65 over 15 steps)
        steps=30, flags=dict(temperature=0.5, lr=1e-4, beta=0.1)),
}


def split(seed, n_eval=200, task="digits", n_train=2000):
    """Held-out evaluation problems and a disjoint training pool of n_train problems."""
    t = TASKS[task]
    held_out = t.problems(n_eval, 10_000 + seed)
    train = t.problems(n_train, seed, exclude={t.key(p) for p in held_out})
    return train, held_out


def build_tiny(path, seed=0, hidden=64, vocab_size=400, corpus=None, layers=2, split_digits=False):
    """A random 2-layer Qwen2 and a byte-level BPE tokenizer with a chat template, saved to `path`
    (both load with from_pretrained). The tokenizer is byte-level so that text survives the save/load
    round trip unchanged (transformers rebuilds a 'qwen2' tokenizer as Qwen2Tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()       # no "Writing model shards" bar for a model of a few hundred kB
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if split_digits:    # one token per digit, as Qwen2.5's tokenizer does: column arithmetic sees every digit
        bpe.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), bpe.pre_tokenizer])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = corpus or [p["question"] + " " + mgrpo.INSTRUCTION + " \\boxed{" + p["gold"] + "}"
                        for p in make_problems(300, seed=99)] + mgrpo.GUIDES * 20
    bpe.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  chat_template=template)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_task_model(path, task="digits", seed=0):
    """build_tiny with the task's model size, its tokenizer trained on the task's own text."""
    t = TASKS[task]
    corpus = None
    if task != "digits":    # (the digits task keeps the corpus its measured numbers were taken with)
        corpus = [p["question"] + " " + mgrpo.INSTRUCTION + " " + t.work(p) for p in t.problems(300, 99)]
        corpus += mgrpo.GUIDES * 20
    return build_tiny(path, seed=seed, hidden=t.hidden, corpus=corpus, layers=t.layers, split_digits=t.split_digits)


def greedy_accuracy(run, problems, args):
    outs = mgrpo.generate(run.rollout, [run.tk.prompt(p["question"]) for p in problems], 1, run.tk,
                          args.max_new_tokens, greedy=True, gen_batch=args.gen_batch)
    return sum(verify_reward(run.tk.text(o), p["gold"]) for o, p in zip(outs, problems)) / len(problems)


def greedy_repeat_rate(run, problems, args):
    """The fraction of problems whose greedy t2 (q' with the first guide after greedy t1) repeats t1 exactly."""
    tk = run.tk
    prompts = [tk.prompt(p["question"]) for p in problems]
    t1 = mgrpo.generate(run.rollout, prompts, 1, tk, args.max_new_tokens, greedy=True, gen_batch=args.gen_batch)
    q2 = [mgrpo.build_correction_prompt(pr, tk.strip_stop(o), tk.guides[0]) for pr, o in zip(prompts, t1)]
    t2 = mgrpo.generate(run.rollout, q2, 1, tk, args.max_new_tokens, greedy=True, gen_batch=args.gen_batch)
    return sum(tk.text(a) == tk.text(b) for a, b in zip(t1, t2)) / len(problems)


def greedy_check_accuracy(run, problems, args):
    """answer_first: the fraction of greedy first answers whose check, read off (its last number reversed),
    is the sum, whatever their box says."""
    outs = mgrpo.generate(run.rollout, [run.tk.prompt(p["question"]) for p in problems], 1, run.tk,
                          args.max_new_tokens, greedy=True, gen_batch=args.gen_batch)
    return sum(check_reads(run.tk.text(o)) == p["gold"] for o, p in zip(outs, problems)) / len(problems)


def check_reads(text):
    """The sum an answer_first check states: the digits after 'ones first', reversed (None without them)."""
    m = re.search(r"ones first (\d+)", text)
    return m.group(1)[::-1] if m else None


def warm_start(run, problems, args, target=0.25, max_steps=None, lr=3e-3, batch=32, task="digits",
               repeat_target=0.9):
    """Supervised steps on the task's worked answer ('\\boxed{gold}' for digits) + <eos> after the Layer-1
    prompt, stopped as soon as greedy accuracy on 128 training problems reaches `target`: a weak policy that
    solves some problems, as a pretrained model does before RL. (The step at which a tiny model 'gets' the
    task varies a lot with the seed, so a fixed step count would start some seeds at chance and others near
    the top.) Returns the steps taken.

    A task with `second_turn` then gets the second turn's format: q' = q + the right worked answer + a
    guide, answered with that same worked answer, until greedy t2 repeats greedy t1 word for word on
    `repeat_target` of the 128 problems (at most max_steps more steps). A pretrained model asked to re-check
    mostly repeats itself; a tiny model never trained on a second turn writes noise there instead. Every
    first answer shown is right, so this teaches the form of a second turn and never a correction: what to
    change in a wrong answer is left to Layer 2.

    answer_first (misleading_boxes): the first phase runs until greedy checks, not boxes, read the right sum
    on `target` of the probe problems (at most the task's warm_max_steps), and half of its first turns give a
    box one digit off as part of the prompt, followed by the right check (examples_with_misleading_boxes says
    why). No target boxes anything but the sum (a test checks)."""
    rng = random.Random(args.seed)
    tk, t = run.tk, TASKS[task]
    probe = problems[:128]
    opt = torch.optim.AdamW(run.policy.parameters(), lr=lr)

    def sft(prompts, targets):
        run.policy.train()
        ids, mask, comp = mgrpo.pack(prompts, targets, tk.pad, run.device)
        loss = -mgrpo.token_logprobs(run.policy, ids, mask, comp).sum() / comp.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        mgrpo.sync_rollout_model(run)

    def examples():
        batch_p = rng.sample(problems, batch)
        return ([tk.prompt(p["question"]) for p in batch_p],
                [tk.tok.encode(t.work(p), add_special_tokens=False) + [tk.stop[0]] for p in batch_p])

    def examples_with_misleading_boxes():
        # Half the batch opens with a box one digit off, given as part of the prompt (so never learnt as an
        # answer) and followed by the right check: without them the model learns to derive the check from
        # the box it has just written (box and check always agree in the data, and copying is easier than
        # adding), so a wrong box brings a wrong check and there is no evidence left to read.
        prompts, targets = examples()
        for i in range(batch // 2):
            p = rng.choice(problems)
            ids = tk.tok.encode(answer_first_work(*p["key"], boxed=one_digit_off(p["gold"], rng)),
                                add_special_tokens=False)
            k = next(j for j, x in enumerate(ids) if tk.tok.decode([x]).startswith("}"))
            prompts[i], targets[i] = tk.prompt(p["question"]) + ids[:k], ids[k:] + [tk.stop[0]]
        return prompts, targets

    steps = 0
    first_turns = examples_with_misleading_boxes if t.misleading_boxes else examples
    score = greedy_check_accuracy if t.misleading_boxes else greedy_accuracy
    first_max = max_steps or t.warm_max_steps or 400
    max_steps = max_steps or 400
    every = t.probe_every or 5
    while steps < first_max and not (steps % every == 0 and score(run, probe, args) >= target):
        sft(*first_turns())
        steps += 1
    if not t.second_turn or target <= 0:       # target 0: no warm start at all (the smoke tests)
        return steps
    for k in range(max_steps):
        if k % every == 0 and greedy_repeat_rate(run, probe, args) >= repeat_target:
            break
        prompts, targets = examples()
        h = batch // 2      # half first turns, or the model forgets how to answer without an answer to repeat
        sft(prompts[:h] + [mgrpo.build_correction_prompt(p, o[:-1], tk.guides[rng.randrange(len(tk.guides))])
                           for p, o in zip(prompts[h:], targets[h:])], targets)
        steps += 1
    return steps


def sampled_correction_rate(run, problems, args, n=4, seed=1234):
    """Sampling at the training temperature (args.temperature), as in training: n t1 answers per problem;
    each wrong one gets q' with the first guide and one sampled t2. Returns the fraction of those t2 that
    are right (fixed seed, so the number is repeatable; the training RNG is left untouched)."""
    tk = run.tk
    prompts = [tk.prompt(p["question"]) for p in problems]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        t1 = mgrpo.generate(run.rollout, prompts, n, tk, args.max_new_tokens, args.temperature,
                            gen_batch=args.gen_batch)
        wrong = [i for i, o in enumerate(t1) if verify_reward(tk.text(o), problems[i // n]["gold"]) == 0]
        q2 = [mgrpo.build_correction_prompt(prompts[i // n], tk.strip_stop(t1[i]), tk.guides[0]) for i in wrong]
        t2 = (mgrpo.generate(run.rollout, q2, 1, tk, args.max_new_tokens, args.temperature, gen_batch=args.gen_batch)
              if q2 else [])
    fixed = [verify_reward(tk.text(o), problems[i // n]["gold"]) for i, o in zip(wrong, t2)]
    return sum(fixed) / len(fixed) if fixed else 0.0


def toy_args(task="digits", **kw):
    """The mgrpo command line's own arguments, set for the toy (tiny model, short answers, CPU)."""
    a = mgrpo.build_parser().parse_args(["--model", "toy"])
    a.__dict__.update(dict(device="cpu", batch_size=16, G=8, H=4, lr=1e-3, beta=0.0,
                           max_new_tokens=TASKS[task].max_new_tokens,
                           micro_tokens=8192, gen_batch=512, grad_checkpointing=False, eval_n=200))
    a.__dict__.update(TASKS[task].flags)
    a.__dict__.update(kw)
    return a


def run_toy(seed, steps, workdir, warm_target=None, curve_every=10, n_eval=200, log=print, task="digits",
            on_step=None, warm_cache=None, **kw):
    """Build, warm-start, evaluate, train `steps` steps through mgrpo.train_step (MGRPO, or GRPO with
    layers=1; any other mgrpo flag as a keyword), evaluate again. Returns a dict: the paper's greedy
    metrics before/after, the sampled correction rate before/after, the learning curves every
    `curve_every` steps, "curve" [(step, held-out Acc@t1, sampled correction rate)] and "curve_greedy"
    [(step, greedy Δi→c, greedy Δc→i)], the optimizer steps taken, the tokens generated in training
    (Layer 1 and Layer 2), warm-start steps, seconds, and "steps": the training log's STEP_KEYS, one list
    each (one value per step). on_step(step) is called after every step, and evaluation shows no progress
    bars of its own when it is given (the caller shows progress). warm_cache: a dict, or a folder (shared by
    processes), that keeps the warm-started weights per (task, seed, warm_target), so that the methods of an
    experiment start from the same model without repeating its warm start (which is deterministic)."""
    t0 = time.time()
    path = build_task_model(os.path.join(workdir, f"model-{seed}"), task, seed)
    args = toy_args(task, model=path, seed=seed, **kw)
    torch.manual_seed(seed)
    run = mgrpo.setup(args)
    train, held_out = split(seed, task=task)
    held_out = held_out[:n_eval]
    warm_target = TASKS[task].warm_target if warm_target is None else warm_target
    key = (task, seed, warm_target)
    cached = cached_warm_start(warm_cache, key)
    if cached:
        warm, weights = cached
        run.policy.load_state_dict(weights)
        mgrpo.sync_rollout_model(run)
    else:
        warm = warm_start(run, train, args, target=warm_target, task=task)
        keep_warm_start(warm_cache, key, warm, run.policy)

    def measure(tag):
        # mgrpo.evaluate draws its own 'eval t1/t2' bars on stderr; a caller with its own bar hides them
        with contextlib.redirect_stderr(io.StringIO()) if on_step else contextlib.nullcontext():
            m = mgrpo.evaluate(run, held_out, args, os.path.join(workdir, f"eval-{seed}-{tag}.jsonl"))
        return m, sampled_correction_rate(run, held_out, args)

    out = {"warm_steps": warm, "optimizer_steps": 0, "l1_tokens": 0, "l2_tokens": 0, "steps": {k: [] for k in STEP_KEYS}}
    out["before"], out["sampled_corr_before"] = measure("before")
    out["curve"] = [(0, out["before"]["acc_t1"], out["sampled_corr_before"])]
    out["curve_greedy"] = [(0, out["before"]["delta_i2c"], out["before"]["delta_c2i"])]
    rng = random.Random(seed)
    torch.manual_seed(seed)                 # the RL phase's sampling starts from the same state for every method
    run.policy.train()
    for step in range(1, steps + 1):
        batch = [train[i] for i in mgrpo.batch_indices(step - 1, args.batch_size, len(train), seed)]
        st = mgrpo.train_step(run, batch, args, rng)
        out["optimizer_steps"] += 1 - st["l1_skipped"] + (st.get("l2_loss") is not None) - st.get("l2_skipped", 0)
        out["l1_tokens"] += st["l1_tokens"]
        out["l2_tokens"] += st.get("l2_tokens", 0)
        for k in STEP_KEYS:
            out["steps"][k].append(st.get(k))
        if on_step:
            on_step(step)
        if curve_every and step % curve_every == 0 and step < steps:
            m, corr = measure("curve")
            out["curve"].append((step, m["acc_t1"], corr))
            out["curve_greedy"].append((step, m["delta_i2c"], m["delta_c2i"]))
            if log:
                log(f"  seed {seed} step {step}: held-out Acc@t1 {m['acc_t1']:.3f}, sampled correction {corr:.3f}")
    out["after"], out["sampled_corr_after"] = measure("after")
    out["curve"].append((steps, out["after"]["acc_t1"], out["sampled_corr_after"]))
    out["curve_greedy"].append((steps, out["after"]["delta_i2c"], out["after"]["delta_c2i"]))
    out["rollout_tokens"] = out["l1_tokens"] + out["l2_tokens"]
    out["seconds"] = time.time() - t0
    return out


# What a toy run keeps of each step's log (run_toy's "steps"): how each layer's update went.
STEP_KEYS = ("l1_reward", "l2_reward", "l1_grad_norm", "l2_grad_norm", "l2_samples_trained", "l1_zero_std_frac",
             "l2_zero_std_frac")


def cached_warm_start(cache, key):
    """(warm-start steps, weights) from a warm_cache (dict or folder; see run_toy), or None."""
    if isinstance(cache, dict):
        return cache.get(key)
    path = cache and os.path.join(cache, "warm-{}-{}-{}.pt".format(*key))
    return torch.load(path, weights_only=True) if path and os.path.exists(path) else None


def keep_warm_start(cache, key, steps, model):
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if isinstance(cache, dict):
        cache[key] = steps, weights
    elif cache:                      # written whole, then renamed: another process never reads half a file
        path = os.path.join(cache, "warm-{}-{}-{}.pt".format(*key))
        torch.save((steps, weights), f"{path}.{os.getpid()}.tmp")
        os.replace(f"{path}.{os.getpid()}.tmp", path)


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


def main(argv=None):
    p = argparse.ArgumentParser(description="Write the toy task (warm-started tiny model and data) for mgrpo.py.")
    p.add_argument("command", choices=["write"])
    p.add_argument("folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warm-target", type=float, default=0.25, help="greedy accuracy that ends the warm start")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the model written depends on it)")
    opts = p.parse_args(argv)
    if os.path.exists(opts.folder) and os.listdir(opts.folder):
        p.error(f"{opts.folder} is not empty")
    if opts.threads < 1:
        p.error("--threads must be >= 1")
    threads = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    try:
        warm = write_task(opts.folder, opts.seed, opts.warm_target)
    finally:
        torch.set_num_threads(threads)              # a caller's process (a test, a notebook) keeps its own
    print(f"wrote {os.path.join(opts.folder, 'model')} (after {warm} warm-start steps), "
          f"{os.path.join(opts.folder, 'train.jsonl')}, {os.path.join(opts.folder, 'test.jsonl')}")


if __name__ == "__main__":
    main()
