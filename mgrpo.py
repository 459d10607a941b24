"""
Multi-Layer GRPO (MGRPO, arXiv 2506.04746) in one file.

MGRPO trains one policy πθ with two layers of GRPO in every step:

  Layer 1  standard GRPO. For a question q sample G answers o_1..o_G, reward each (by default a rule,
           verify.reward: 0 or 1), and push up the answers that beat their group.
  Layer 2  self-correction. For a wrong Layer-1 answer o build q' = q + o + p_guide (a guiding phrase
           asking to re-check the work), sample H corrections, keep the successful ones and push those
           up too -- on the same policy, with the same optimizer.

One step (train_step: grpo_layer, then correction_layer), in pseudocode, over a batch of B questions:

  Layer 1:  for each question q:  o_1..o_G ~ πθ(·|q),  r_i = reward(o_i),  A = group_advantages(r)
            then, over all B·G answers: θ <- --mu AdamW steps (1) on -J(q, o, A), norm-clipped # policy_update
  Layer 2:  for each wrong o_i:   q' = q + o_i + p_guide,  c_1..c_H ~ πθ(·|q'),  A' = group_advantages(r')
            then, over the c_j that are correct with A'_j > 0: the same on -J(q', c, A')
                                                                  # select_corrections, policy_update

Equations and the function that computes each, in the order Part I defines them:

  A_i = (r_i - mean(r)) / (std(r) + eps)                          group_advantages()
  correct: r >= CORRECT (1.0, full marks)                         is_correct()
  selection: corrections with r >= CORRECT and A > 0              select_corrections()
  ρ_{i,t} = πθ(o_{i,t} | q, o_{i,<t}) / πθ_old(o_{i,t} | ...)     grpo_loss()
  KL_{i,t} = πref/πθ - log(πref/πθ) - 1      (k3 estimator)       grpo_loss()
  J = 1/N Σ_i 1/|o_i| Σ_t [min(ρ A_i, clip(ρ, 1-ε, 1+ε) A_i) - β KL_{i,t}];  loss = -J
      grpo_loss() on one micro-batch, times micro_batch_weight(), its share of N: B·G in Layer 1 (B
      questions over all ranks, G answers each; the paper's 1/G per question), in Layer 2 the corrections
      trained or B·G again (--l2-loss-norm; token-mean: tokens); N spans every micro-batch and rank
  q = template(user: question + INSTRUCTION) + generation prompt  layer1_prompt() (run.tk.prompt's text)
  q' = q + o + p_guide                                            build_correction_prompt()
  r = reward(completion, problem) in [0, 1]                       score()
  one step; Layer 1; Layer 2; the update of either     train_step(), grpo_layer(), correction_layer(), policy_update()
  πθ(· | q, o_<t) = softmax(z / T), z the model's own logits,
      T the sampling temperature; likewise πθ_old and πref        token_logprobs()
  the training loop                                               train()
  Acc@t1, Acc@t2 (t2: the answer on q'), Δ(t1,t2), Δi→c, Δc→i     evaluate(), self_correction_metrics()
  pass@k = 1 - C(n-c, k) / C(n, k)      (unbiased, Chen et al.)   pass_at_k()

GRPO variants, one flag each (docs/variants.md): --scale-rewards (Dr. GRPO, Lite PPO), --loss-agg (DAPO,
Dr. GRPO), --clip-eps-high (DAPO), --importance-sampling sequence (GSPO), --mask-truncated (DAPO).

How to read it: Part I, the algorithm, top to bottom. Part II, the engine room (sampling, batching, models,
data, many GPUs, checkpoints, how a run ends, the command line), only makes Part I run and can be skipped.

Deliberate choices (the reason is at the code; README.md, "Choices the paper leaves open", has them all):
  - Layer 2 trains only on correct corrections with a positive advantage (select_corrections), sampled
    from the rollout copy refreshed after Layer 1's update, with the same optimizer (correction_layer).
  - Layer 2's J divides by Layer 1's N, B·G, the same every step (--l2-loss-norm batch), not by the
    corrections it trains (trained: 1 to 136 a step on the toys, a lone success getting a whole step). Over
    10 paired seeds of three toy tasks B·G was level with it or ahead on Acc@t1 and Acc@t2 (addition: +0.058,
    +0.051), with Layer 2's gradient clipped on 0-6% of its steps against 27-85%; it gave up greedy Δi→c on
    addition (-0.022). docs/variants.md has the tables.
  - q' reuses o's sampled token ids, never re-tokenised text, and keeps o as sampled even where a chat
    template would rewrite an earlier turn (build_correction_prompt).
  - Population std, eps added to it; an all-equal group gets advantage 0 (group_advantages).
  - With --mu 1, πθ_old is πθ detached: ρ = 1, and the gradient is the policy gradient (plus the KL term's)
    (policy_update).
  - Log-probs at the sampling temperature, from the model's own output logits, so ρ, the KL and the
    gradient refer to the distribution the rollouts came from (token_logprobs), up to the bf16 rounding of
    the rollout copy on CUDA, which --mu 1 (ρ = 1) leaves uncorrected; dropout is off (load_model).
  - fp32 master weights; bf16 autocast, a bf16 rollout copy and a bf16 πref on CUDA; πref is the initial --model.
  - A reward is a number in [0, 1]; one threshold, CORRECT, decides what is correct everywhere.
"""

import argparse
import contextlib
import difflib
import errno
import glob
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.checkpoint import checkpoint as recompute
from tqdm.auto import tqdm  # ships with transformers

from verify import last_boxed, reward

# =============================================================================
# PART I: THE ALGORITHM
# =============================================================================
# Part I calls these names of Part II (a test keeps the list complete). What each does, so you need not look:
#   run   the trainer's state (setup): run.policy πθ, fp32 master weights; run.rollout, the copy that samples
#         (bf16 on CUDA, refreshed after every update; on the CPU the policy itself); run.ref πref, the initial
#         --model, frozen (bf16 on CUDA; None when β = 0); run.opt, AdamW over the policy (betas 0.9, 0.99, no
#         weight decay, constant --lr); run.device; run.reward(text, problem); run.tk, token ids: tk.prompt(question)
#         is q, tk.guides the guides in the chat template's turn markers, tk.stop the stop ids, tk.strip_stop(o)
#         o without its stop token, tk.text(ids) the text
#   args  the flags (build_parser), by default --G 8 --H 4 --lr 1e-6 --beta 0.04 --clip-eps 0.2 --mu 1
#         --max-grad-norm 1.0 --temperature 1.0 --layers 2 (MGRPO) --l2-loss-norm batch
#   sample(run, prompts, n, args)  n completions per prompt from run.rollout: pure samples at --temperature (no
#         top-k, top-p or penalty), id lists, group-major, each cut after its stop token
#   world, all_reduce, std_over_ranks, is_main, my_share, gather  torchrun's ranks (FSDP2, set up by shard, averages
#         gradients over them; clip_grad_norm_'s norm is theirs): their number, sums, std, rank 0?, this rank's
#         share of a list, all ranks' lists; in one process: 1, the values, x's population std, True, the lists
#   plan_micro_batches  packs a layer's rows (prompt + completion, right-padded, longest first) into micro-batches
#         of at most --micro-tokens tokens with padding, each with ids, mask (attention), comp (completion tokens,
#         stop token included), scored (comp without the excluded completions), adv, n_seq (excluded ones count),
#         n_tok (the tokens J counts: scored) and token_share; returns them, the layer's N = (n_seq, n_tok) summed
#         over all ranks, and the padding fraction. A rank with fewer micro-batches than the busiest gets empty
#         stand-ins (n_seq 0, weight 0), or FSDP would wait forever
#   guard_non_finite  the gradient norm and the loss summed over the ranks, and whether both are finite (a NaN or
#         inf skips the optimizer step; 5 skipped in a row end the run)
#   frozen_logprobs, sync_rollout_model  token_logprobs without gradient per micro-batch; copies πθ into run.rollout
#   update_stats  policy_update's dict: N, pad_frac, skipped, and means over its --mu steps of grad_norm (before
#         clipping), loss (summed over ranks), kl and clip_frac (over the layer's tokens, token_share weighting)
#   autocast(device)  bf16 compute on CUDA, fp32 on the CPU
#   final_hidden_states, output_logits  the model's own forward up to its last hidden states; its own logits
#         (lm_head, then the family's scaling or soft-cap)
#   phase(run, name, args)  times a block (the log's sec_*); out of GPU memory: one line naming the flag to lower
#   step_log, steps_with_progress, end_step, batch_indices, eval_sampling_rng, write_jsonl, die  the log line,
#         the progress bar, log.jsonl and checkpoints, data order, evaluation's random stream, files, errors

# -----------------------------------------------------------------------------
# The GRPO maths: pure functions of tensors.


def group_advantages(rewards, eps=1e-4, scale="group", batch_std=None):
    """rewards [n_groups, group_size] -> advantages, same shape: each reward minus its group's mean, divided
    by (std + eps), the std chosen by `scale` (--scale-rewards):
      'group'  the group's own std: GRPO (DeepSeekMath, arXiv 2402.03300)
      'batch'  the std of every reward of the layer: Lite PPO (arXiv 2508.08221); batch_std if given (the
               std over all ranks' rewards), else that of `rewards`
      'none'   no division: Dr. GRPO (arXiv 2503.20783), since dividing by the group's std gives questions
               that are nearly always or nearly never solved the largest steps
    Population stds (no Bessel correction). An all-equal group gets exactly 0 (numerator 0, eps keeps the
    denominator positive), never NaN. Raises ValueError for another scale. Example: rewards [[1, 0, 0, 0]],
    'group': mean 0.25, std 0.433 -> [[1.732, -0.577, -0.577, -0.577]] (to eps); 'none': [[0.75, -0.25, ...]]."""
    r = rewards.float()
    mean = r.mean(-1, keepdim=True)                                       # [n_groups, 1]
    if scale == "group":
        std = r.std(-1, keepdim=True, unbiased=False)
    elif scale == "batch":
        std = r.std(unbiased=False) if batch_std is None else batch_std
    elif scale == "none":
        return r - mean
    else:
        raise ValueError(f"unknown reward scaling {scale!r}")
    return (r - mean) / (std + eps)


# What counts as correct. A reward is a number in [0, 1]; an answer is correct when its reward reaches
# CORRECT. This one test decides which Layer-1 answers get a correction round (those below it), which
# corrections selection trains on (those that reach it) and Acc@t1/Acc@t2. verify.reward gives 0 or 1. For
# a graded reward (the share of unit tests passed, partial credit), set CORRECT to the level that counts as
# solved; at 1.0 only full marks count, and every answer below them gets a correction round.
CORRECT = 1.0


def is_correct(rewards):
    """rewards (tensor, any shape) -> bool tensor of the same shape: reward >= CORRECT."""
    return rewards >= CORRECT


def select_corrections(rewards, advantages, mode, truncated=None):
    """Layer-2 rewards and advantages [n_groups, H] -> bool [n_groups, H], the corrections the update trains on.
    'successful': the paper's successful corrections, read as the correct ones (is_correct) with a positive
    advantage and, where `truncated` ([n_groups, H] bool) is given (--mask-truncated), that finished; 'all':
    every correction (plain GRPO on q'). correction_layer says why. Raises ValueError for another mode."""
    if mode == "successful":
        train_on = is_correct(rewards) & (advantages > 0)
        return train_on if truncated is None else train_on & ~truncated
    if mode == "all":
        return torch.ones_like(rewards, dtype=torch.bool)
    raise ValueError(f"unknown selection mode {mode!r}")


def grpo_loss(logp, old_logp, ref_logp, adv, scored, clip_eps, beta, agg="seq-mean-token-mean", clip_eps_high=None,
              importance_sampling="token", max_new_tokens=None):
    """-J: the clipped GRPO objective with a k3 KL penalty, negated so it can be minimised.
    logp, old_logp, ref_logp: [n_seq, T] log-probs under πθ, πθ_old, πref (ref_logp may be None when beta == 0);
    adv: [n_seq]; scored: [n_seq, T] bool, the tokens that have a term in J (completion tokens; padding and
    the completions excluded by --mask-truncated are False). The defaults are the paper's objective; the last four
    arguments are the variants of docs/variants.md (agg: 'token-mean' DAPO, 'seq-mean-token-sum-norm' Dr. GRPO;
    clip_eps_high: DAPO's clip-higher, arXiv 2503.14476; importance_sampling 'sequence': GSPO, arXiv
    2507.18071). Returns (-J, {"kl", "clip_frac"}: 0-d means over the scored tokens). Raises ValueError for
    an unknown agg or importance_sampling."""
    mask = scored.bool()
    # Padding may hold anything (even inf): zero the log-ratios there *before* exp, or NaN would leak into
    # the gradient through 0 * inf in backward.
    log_ratio = torch.where(mask, logp - old_logp, 0.0)                 # log ρ [n, T]
    # ---- variants of ρ and of its clip range: a first reading can skip this block --------------------------
    if importance_sampling == "sequence":    # GSPO: one ratio per sequence, exp of its mean token log-ratio
        per_seq = log_ratio.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)      # [n, 1]
        log_ratio = per_seq.expand_as(logp)
    elif importance_sampling != "token":
        raise ValueError(f"unknown importance sampling level {importance_sampling!r}")
    high = clip_eps if clip_eps_high is None else clip_eps_high           # DAPO's clip-higher: [1-ε, 1+ε_high]
    # ---- end of the variants ------------------------------------------------------------------------------
    ratio = torch.exp(log_ratio)                                        # ρ_{i,t} [n, T]
    a = adv[:, None]                                                    # A_i [n, 1]
    surrogate = torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + high) * a)
    kl = torch.zeros_like(logp)
    if beta > 0:
        d = torch.where(mask, ref_logp - logp, 0.0)                     # log(πref/πθ)
        kl = torch.exp(d) - d - 1                                       # k3: πref/πθ - log(πref/πθ) - 1
    per_token = torch.where(mask, surrogate - beta * kl, 0.0)           # [n, T]
    lengths = mask.sum(-1)                                              # |o_i| [n]
    # ---- the aggregation: the paper's 1/n Σ_i 1/|o_i| Σ_t, or a variant's ----------------------------------
    if agg == "seq-mean-token-mean":
        J = (per_token.sum(-1) / lengths.clamp(min=1)).mean()
    elif agg == "token-mean":                # DAPO: one mean over every token, Σ_i,t / Σ|o_i|
        J = per_token.sum() / lengths.sum().clamp(min=1)
    elif agg == "seq-mean-token-sum-norm":   # Dr. GRPO: a constant in place of |o_i|
        J = (per_token.sum(-1) / max_new_tokens).mean()
    else:
        raise ValueError(f"unknown loss aggregation {agg!r}")
    clipped = ((ratio < 1 - clip_eps) & (a < 0)) | ((ratio > 1 + high) & (a > 0))
    n_scored = mask.sum().clamp(min=1)
    # 0-d tensors, not floats: .item() here would stall the GPU once per micro-batch
    stats = {"kl": (torch.where(mask, kl, 0.0).sum() / n_scored).detach(),
             "clip_frac": ((clipped & mask).sum() / n_scored).detach()}
    return -J, stats


def micro_batch_weight(n_seq, n_tok, layer_seq, layer_tok, agg):
    """grpo_loss averages over one micro-batch of n_seq sequences and n_tok completion tokens; times this weight
    it is that micro-batch's share of J's mean over the layer's N (layer_seq, layer_tok: over every micro-batch
    and rank): n_tok / layer_tok for 'token-mean', n_seq / layer_seq for the two means over sequences."""
    if agg == "token-mean":
        return n_tok / layer_tok if layer_tok else 0.0      # every token masked out: nothing to train
    return n_seq / layer_seq


# -----------------------------------------------------------------------------
# Prompts: q and q' = q + o + p_guide, on token ids: q' reuses the exact sampled tokens of o instead of
# re-tokenising decoded text (which can split differently). Tokens (Part II) turns these texts into ids once.

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

# p_guide: neutral wording, because with --l2-inputs all it also follows correct answers.
GUIDES = [
    "Please re-check the solution above step by step. If you find an error, correct it; "
    "then give the final answer again within \\boxed{}.",
    "Review your previous answer carefully and verify each calculation. Fix any mistake "
    "and restate the final answer within \\boxed{}.",
    "Let's verify the reasoning above one step at a time. If something is wrong, redo it "
    "correctly, and put the final answer within \\boxed{}.",
    "Double-check every step of the solution. Correct anything that is wrong and write "
    "the final answer within \\boxed{}.",
]


def layer1_prompt(tok, question):
    """q as text: the user turn rendered by the tokenizer's own chat template with its generation
    prompt, exactly apply_chat_template([user], add_generation_prompt=True) -- so that a template
    which prefills the assistant turn (R1-Distill's '<think>\\n') prefills it here too. Without a chat
    template, a plain 'Question: ... Answer:' format."""
    content = question.strip() + "\n" + INSTRUCTION
    if not getattr(tok, "chat_template", None):
        return "Question: " + content + "\nAnswer: "
    return tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)


def build_correction_prompt(prompt, response, guide):
    """q' = q + o + p_guide. Token-id lists (or strings): `prompt` the Layer-1 prompt (run.tk.prompt),
    `response` o as sampled without its stop token, `guide` already wrapped in the template's turn
    markers (run.tk.guides). o is kept as sampled even where a template would rewrite it in history
    (Qwen3 and R1-Distill drop the reasoning of earlier assistant turns): q' is the paper's q + o + p_guide."""
    return prompt + response + guide


# -----------------------------------------------------------------------------
# Rewards: any function of (completion text, problem row) into [0, 1]; by default the rule of verify.py.


def rule_reward(completion, problem):
    """The default reward (run.reward): verify.reward of the completion's text against problem["gold"], given
    the question (its numbers are context, not answers, in a final sentence of prose)."""
    return reward(completion, problem["gold"], question=problem.get("question"))


def score(run, completions, problems):
    """completions: n id lists, completions[i] answering problems[i] (rows of load_problems) -> [n] float
    rewards from run.reward(text, problem) (rule_reward where run has none). A reward that is not a number
    in [0, 1] ends the run with one line (exit 2): above 1 or below 0 the advantages and the correctness
    test above would silently mean something else."""
    reward_fn = getattr(run, "reward", None) or rule_reward
    rewards = []
    for ids, problem in zip(completions, problems):
        r = reward_fn(run.tk.text(ids), problem)
        if not (isinstance(r, (int, float, np.integer, np.floating)) and 0 <= r <= 1):     # NaN fails too
            die(f"the reward returned {r!r} for an answer to {problem['question'][:50]!r}: a reward must be a "
                "number in [0, 1]", every_rank=True)
        rewards.append(float(r))
    return torch.tensor(rewards, dtype=torch.float32)


def is_truncated(completions, stop, max_new_tokens):
    """completions: n id lists as sampled, each cut after its first stop token if it has one (cut_at_stop)
    -> [n] bool: the ones cut off at --max-new-tokens before a stop token. They are scored like any other; with
    --mask-truncated they get no policy-gradient or KL term (DAPO's overlong filtering, arXiv 2503.14476)."""
    return torch.tensor([len(c) >= max_new_tokens and not (c and c[-1] in stop) for c in completions], dtype=bool)


# -----------------------------------------------------------------------------
# One training step: Layer 1, then Layer 2, each ending in the same policy_update.


def train_step(run, batch, args, rng):
    """One MGRPO step on this rank's problems (rows of load_problems). Returns the step's log entries over all
    ranks (step_log): the same keys every step (--layers 2: the l2_* ones too), null where nothing was measured."""
    l1 = grpo_layer(run, batch, args)                                           # Layer 1: GRPO on q
    l2 = correction_layer(run, batch, l1, args, rng) if args.layers == 2 else None   # Layer 2: on q'
    return step_log(run, l1, l2, args)


def grpo_layer(run, batch, args):
    """Layer 1, standard GRPO on q: G answers per question, their rewards and group advantages, one update.
    Returns what it computed: prompts (b id lists, b = this rank's questions), answers (b*G id lists,
    group-major), rewards [b, G], truncated [b*G] bool and update (policy_update's statistics)."""
    tk, b, G = run.tk, len(batch), args.G
    prompts = [tk.prompt(p["question"]) for p in batch]                             # q, b id lists
    with phase(run, "gen1", args):
        answers = sample(run, prompts, G, args)                                     # o_1..o_G per q
    with phase(run, "reward1", args):
        rewards = score(run, answers, [p for p in batch for _ in range(G)]).view(b, G)              # [b, G]
    advantages = group_advantages(rewards, scale=args.scale_rewards, batch_std=std_over_ranks(rewards))  # [b, G]
    truncated = is_truncated(answers, tk.stop, args.max_new_tokens)                 # [b*G]
    with phase(run, "update1", args):
        update = policy_update(run, [prompts[i // G] for i in range(b * G)], answers, advantages.flatten(), args,
                               excluded=truncated.tolist() if args.mask_truncated else None)
    return SimpleNamespace(prompts=prompts, answers=answers, rewards=rewards, truncated=truncated, update=update)


def correction_layer(run, batch, l1, args, rng):
    """Layer 2, self-correction, on this rank's problems, after Layer 1's update. l1: what grpo_layer
    computed. Its decisions, and why:

    1. Who gets a correction round (--l2-inputs): the wrong Layer-1 answers (not is_correct); correcting
       a right one teaches little and costs H rollouts. `all`: every answer, to teach "keep it right" too.
    2. q' = q + o + p_guide (build_correction_prompt): o as sampled, without its stop token, then one of
       GUIDES drawn at random, wrapped in the chat template's turn markers (Tokens.guides).
    3. H corrections per q', sampled from run.rollout, refreshed after Layer 1's update (sync_rollout_model).
    4. Advantages over all H corrections of a q', before selection: a success counts for more in a group
       where few succeed.
    5. Selection (select_corrections; --l2-select successful, the paper): only the correct corrections with a
       positive advantage, which the update pushes up. A group whose corrections all succeed has advantage 0:
       it carries no policy gradient, and counting it in the mean would shrink every other group's step by an
       amount that changes from batch to batch. With a graded reward (CORRECT < 1) a correct answer below its
       group's mean has A < 0: training on it would push a success down. `all`: every correction, plain GRPO
       on q' as Layer 1 is on q. With --mask-truncated, `successful` also leaves out the corrections cut off
       at --max-new-tokens: one that never finished is no success.
    6. One update (policy_update) on the trained corrections, πθ_old and πref as in Layer 1. Layer 2's N
       (J's 1/N, --l2-loss-norm): 'batch', Layer 1's N (B·G; token-mean: Layer 1's tokens), the same every
       step, so a correction weighs what an answer does; 'trained', the corrections trained in this step over
       all ranks (token-mean: their tokens), so a lone success gets the whole step's weight.

    Returns what it computed: chosen (the answers that got a q'), n_q (q' on all ranks), rewards [n, H],
    corrections (n*H id lists, group-major), truncated [n, H], n_trained (over all ranks), update (None
    without one); None when no rank had a q'. A rank without q' still joins every collective."""
    tk, G, H = run.tk, args.G, args.H
    correct1 = is_correct(l1.rewards).flatten()                                     # [b*G]
    chosen = [i for i in range(len(l1.answers)) if args.l2_inputs == "all" or not correct1[i]]      # 1.
    (n_q,) = all_reduce([len(chosen)])                                              # q' on all ranks
    if not n_q:
        return None
    q_prime = [build_correction_prompt(l1.prompts[i // G], tk.strip_stop(l1.answers[i]),            # 2.
                                       tk.guides[rng.randrange(len(tk.guides))]) for i in chosen]
    with phase(run, "gen2", args):                                                                  # 3.
        corrections = sample(run, q_prime, H, args)                                 # len(chosen)*H, group-major
    with phase(run, "reward2", args):
        rewards = score(run, corrections, [batch[i // G] for i in chosen for _ in range(H)]).view(len(chosen), H)
    advantages = group_advantages(rewards, scale=args.scale_rewards, batch_std=std_over_ranks(rewards))  # 4.
    truncated = is_truncated(corrections, tk.stop, args.max_new_tokens).view(-1, H)     # [len(chosen), H]
    selected = select_corrections(rewards, advantages, args.l2_select,                              # 5.
                                  truncated if args.mask_truncated else None)
    trained = selected.flatten().nonzero().flatten().tolist()                       # rows of `corrections`
    (n_trained,) = all_reduce([len(trained)])                                       # on all ranks
    update = None
    if n_trained:                                                                                   # 6.
        with phase(run, "update2", args):
            update = policy_update(run, [q_prime[j // H] for j in trained], [corrections[j] for j in trained],
                                   advantages.flatten()[trained], args,
                                   excluded=truncated.flatten()[trained].tolist() if args.mask_truncated else None,
                                   N=l1.update["N"] if args.l2_loss_norm == "batch" else None)
    return SimpleNamespace(chosen=chosen, n_q=n_q, rewards=rewards, corrections=corrections, truncated=truncated,
                           correct_before=correct1[chosen], n_trained=n_trained, update=update)


def policy_update(run, prompts, completions, adv, args, excluded=None, N=None):
    """One layer's update of πθ: --mu optimizer steps on the same rollouts, each on the gradient of -J
    accumulated over micro-batches. prompts, completions: this rank's id lists; adv: [n] advantages;
    excluded: n bools, the completions whose tokens get no term in J (--mask-truncated), though they still
    count in its 1/N (token-mean: their tokens do not), as in TRL; N: J's normaliser (sequences, tokens), None
    for this update's own, summed over all ranks. Returns the means over the --mu steps of kl, clip_frac, loss
    (summed over ranks) and grad_norm (before clipping), pad_frac, skipped (non-finite steps) and N."""
    mbs, own_N, pad_frac = plan_micro_batches(run, prompts, completions, adv, args, excluded)   # packed rows
    # J's 1/N spans every micro-batch on every rank: each micro-batch's loss (a mean over its own sequences,
    # or tokens) is weighted by its share of N, so that the summed gradients are one pass over the layer.
    N = N or own_N
    weights = [micro_batch_weight(mb.n_seq, mb.n_tok, *N, args.loss_agg) for mb in mbs]
    ref_lp = frozen_logprobs(run, run.ref, mbs, args) if args.beta > 0 else [None] * len(mbs)    # log πref
    old_lp = frozen_logprobs(run, run.policy, mbs, args) if args.mu > 1 else [None] * len(mbs)   # log πθ_old
    passes, terms = [], []
    for _ in range(args.mu):
        run.opt.zero_grad(set_to_none=True)
        pass_loss = 0.0
        for mb, w, ref, old in zip(mbs, weights, ref_lp, old_lp):
            with autocast(run.device):
                lp = token_logprobs(run.policy, mb.ids, mb.mask, mb.comp, args.temperature)   # log πθ [b, L]
            # With mu == 1, πθ_old is the current policy: ρ == 1, and its gradient is the policy gradient.
            old = lp.detach() if old is None else old
            loss, st = grpo_loss(lp, old, ref, mb.adv, mb.scored, args.clip_eps, args.beta, args.loss_agg,
                                 args.clip_eps_high, args.importance_sampling, args.max_new_tokens)
            # this micro-batch's share of the layer's -J; × world(): FSDP2's reduce-scatter averages gradients
            # over the ranks, and w already divides by the whole layer
            (loss * w * world()).backward()
            pass_loss = pass_loss + loss.detach() * w
            terms.append((st, mb.token_share))
        # --max-grad-norm 0: no clipping (an infinite bound only measures the norm); under FSDP2 the norm is
        # that of the whole gradient, over all ranks
        norm = torch.nn.utils.clip_grad_norm_(run.policy.parameters(), args.max_grad_norm or math.inf)
        passes.append(guard_non_finite(run, norm, pass_loss))    # norm and loss over all ranks; finite?
        if passes[-1].finite:                    # a NaN or inf (a bf16 overflow) would ruin AdamW's state
            run.opt.step()
    run.opt.zero_grad(set_to_none=True)
    sync_rollout_model(run)                      # the next rollouts, Layer 2's included, come from the new πθ
    return update_stats(passes, terms, pad_frac, N, args.mu)


# -----------------------------------------------------------------------------
# Log-probs: log πθ(o_t | q, o_<t) per completion token, for the rollouts, πθ_old, πref and the gradient.


def token_logprobs(model, ids, mask, comp, temperature=1.0, chunk=1024):
    """ids, mask, comp: [b, L], rows right-padded; comp marks the completion tokens (never column 0).
    Returns [b, L] fp32 log-probs of the completion tokens under softmax(z / temperature), z the
    model's own output logits (output_logits), the distribution the rollouts were sampled from; 0
    where comp is not set."""
    h = final_hidden_states(model, ids, mask)                                                      # [b, L, d]
    hs, ts = h[:, :-1][comp[:, 1:]], ids[comp]     # [n, d] states that predict completion tokens; [n] those tokens
    head = model.get_output_embeddings()

    def logp(h, t):                              # [c, d], [c] -> [c]: log softmax(z / T) at the sampled token
        z = output_logits(head, h, model.config) / temperature                  # [c, V] fp32
        return z.gather(-1, t[:, None]).squeeze(-1) - z.logsumexp(-1)

    # fp32 logits over the whole vocabulary for `chunk` tokens at a time, never for the whole batch, and
    # under a gradient recomputed in backward instead of kept
    f = (lambda *x: recompute(logp, *x, use_reentrant=False)) if torch.is_grad_enabled() else logp
    parts = [f(hs[i:i + chunk], ts[i:i + chunk]) for i in range(0, len(ts), chunk)]
    out = torch.zeros(comp.shape, dtype=torch.float32, device=ids.device)
    out[comp] = torch.cat(parts)
    return out


# -----------------------------------------------------------------------------
# The training loop.


def train(run, train_set, eval_sets, args, rng, start, progress):
    """Steps start+1 .. --steps: each trains on --batch-size questions (this rank's share) and evaluates every
    --eval-every steps and at the end; end_step writes its log line and checkpoints. progress: the step in
    progress, for a stop's message. Returns the last step's log."""
    for step in steps_with_progress(start, args, progress):                 # a progress bar over the steps
        batch = [train_set[i] for i in my_share(batch_indices(step - 1, args.batch_size, len(train_set), args.seed))]
        log = {"step": step, **train_step(run, batch, args, rng)}
        if eval_sets and ((args.eval_every and step % args.eval_every == 0) or step == args.steps):
            log["eval"] = evaluate_sets(run, eval_sets, args, f"eval-{{name}}-{step:06d}.jsonl")
        log = end_step(run, log, rng, args, progress)
    return log


# -----------------------------------------------------------------------------
# Evaluation: t1 with the Layer-1 prompt, then t2 on q' with the first guide. Greedy by default; with
# --eval-samples K > 1, K sampled t1 per problem, each followed by one sampled t2 on its own q'.

# Reasoning models are documented to loop under greedy decoding; DeepSeek-R1's and Qwen3's (thinking mode)
# model cards ask for sampling at temperature 0.6, so that is the default when evaluation samples.
EVAL_TEMPERATURE = 0.6


def evaluate(run, problems, args, path):
    """Each rank answers its share of the problems; rank 0 writes one line per problem, in order: question,
    gold, t1, t2, correct_t1, correct_t2 (is_correct of run.reward) -- each a list of K samples with
    --eval-samples K > 1. Returns self_correction_metrics of those rows."""
    tk, mine, K = run.tk, my_share(problems), args.eval_samples
    greedy, T = K == 1, args.eval_temperature or EVAL_TEMPERATURE    # T is unused when greedy
    prompts = [tk.prompt(p["question"]) for p in mine]
    with contextlib.nullcontext() if greedy else eval_sampling_rng(args, run.device):
        t1 = sample(run, prompts, K, args, T, greedy=greedy, desc="eval t1")                  # group-major, n*K
        q2 = [build_correction_prompt(prompts[i // K], tk.strip_stop(o), tk.guides[0]) for i, o in enumerate(t1)]
        t2 = sample(run, q2, 1, args, T, greedy=greedy, desc="eval t2")
    each = [p for p in mine for _ in range(K)]
    ok1, ok2 = is_correct(score(run, t1, each)).tolist(), is_correct(score(run, t2, each)).tolist()
    rows = []
    for i, p in enumerate(mine):
        a, b = [tk.text(o) for o in t1[i * K:(i + 1) * K]], [tk.text(o) for o in t2[i * K:(i + 1) * K]]
        ok_a, ok_b = ok1[i * K:(i + 1) * K], ok2[i * K:(i + 1) * K]
        if greedy:                                       # one answer: plain values, not lists of one
            a, b, ok_a, ok_b = a[0], b[0], ok_a[0], ok_b[0]
        rows.append({"question": p["question"], "gold": p["gold"], "t1": a, "t2": b, "correct_t1": ok_a,
                     "correct_t2": ok_b})
    rows = gather(rows)
    if is_main():
        write_jsonl(path, rows)
    return self_correction_metrics([r["correct_t1"] for r in rows], [r["correct_t2"] for r in rows])


def evaluate_sets(run, eval_sets, args, filename):
    """Every evaluation set: {name: metrics}, and its per-problem file (filename with {name} filled in)."""
    with phase(run, "eval", args):
        return {name: evaluate(run, problems, args, os.path.join(args.output_dir, filename.format(name=name)))
                for name, problems in eval_sets.items()}


def self_correction_metrics(correct_t1, correct_t2):
    """Correctness at turn 1 and turn 2 -> the paper's metrics, as fractions. Either [n_problems] (one greedy
    answer each), or [n_problems, K] (K sampled t1 per problem, each t2 the correction of the t1 beside it):
    then every metric is the mean over the K samples of that metric, so Δ = Acc@t2 - Acc@t1 still holds, and
    `pass@K` is added: pass_at_k(K, right t1 of the problem, K), averaged over problems."""
    t1 = torch.as_tensor(correct_t1, dtype=torch.bool)
    t2 = torch.as_tensor(correct_t2, dtype=torch.bool)
    n = max(t1.numel(), 1)      # with K samples each, the mean over samples of a metric is its mean over all
    m = {"acc_t1": t1.sum().item() / n, "acc_t2": t2.sum().item() / n,
         "delta_i2c": (~t1 & t2).sum().item() / n, "delta_c2i": (t1 & ~t2).sum().item() / n}
    m["delta"] = m["delta_i2c"] - m["delta_c2i"]  # equals acc_t2 - acc_t1, without rounding drift
    if t1.dim() == 2 and len(t1):
        K = t1.shape[1]
        m[f"pass@{K}"] = sum(pass_at_k(K, c, K) for c in t1.sum(-1).tolist()) / len(t1)
    return m


def pass_at_k(n, c, k):
    """pass@k from n samples of which c are right: the chance that k of them, drawn without replacement,
    hold at least one right answer, 1 - C(n-c, k) / C(n, k) -- the unbiased estimator of Chen et al. 2021
    ("Evaluating Large Language Models Trained on Code"). Integer binomials, so the value is exact up to one
    rounding. Raises ValueError unless 0 <= c <= n and 1 <= k <= n."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


# =============================================================================
# PART II: THE ENGINE ROOM
# Everything below only makes Part I run (the module docstring lists what); a reader of the algorithm can stop here.
# =============================================================================

# -----------------------------------------------------------------------------
# Rollouts: plain Hugging Face generate, all prompts of a layer in one batched call.


def guide_turn(tok, guide):
    """p_guide as text, wrapped in the template's turn markers: what the template writes after an
    assistant answer o in [user, assistant o, user p_guide] + generation prompt, i.e. the end of o's
    turn, the guide's user turn and the generation prompt."""
    if not getattr(tok, "chat_template", None):
        return "\n\n" + guide + "\n"
    o = "\x00O\x00"
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": o}, {"role": "user", "content": guide}]
    s = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    if s.count(o) != 1:
        die("the tokenizer's chat template does not render an assistant turn verbatim")
    return s.split(o)[1]


class Tokens:
    """Token ids the loop needs, computed once: guide phrases wrapped in turn markers, stop ids, pad.
    `model` (optional) contributes the end-of-sequence ids of its generation_config."""

    def __init__(self, tok, model=None):
        self.tok = tok
        self.guides = [tok.encode(guide_turn(tok, g), add_special_tokens=False) for g in GUIDES]
        stop = {tok.eos_token_id}
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        stop.update(eos if isinstance(eos, list) else [eos])
        # The token that ends an assistant turn (<|im_end|>, <|eot_id|>, <end_of_turn>, <|end|>, </s>, ...)
        # opens every guide turn; the model writes it when it is done, so it must stop generation too.
        stop.update(t for t in self.guides[0][:1] if t in tok.all_special_ids or
                    getattr(tok.added_tokens_decoder.get(t), "special", False))
        self.stop = sorted(t for t in stop if t is not None)
        if not self.stop:
            die("the tokenizer has no end-of-sequence token")
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else self.stop[0]
        # BOS as the tokenizer itself writes it: a tokenizer that starts plain text with BOS (Llama-2 and
        # Mistral base models) gets it in front of every prompt, once, also where the template writes it.
        bos = tok.bos_token_id
        adds_bos = tok.encode("a")[:1] == [bos] != tok.encode("a", add_special_tokens=False)[:1]
        self.bos = [bos] if bos is not None and adds_bos else []

    def prompt(self, question):
        """The Layer-1 prompt q as token ids: layer1_prompt's text as the tokenizer encodes it, BOS once."""
        ids = self.tok.encode(layer1_prompt(self.tok, question), add_special_tokens=False)
        return self.bos + ids if self.bos and ids[:1] != self.bos else ids

    def text(self, ids):
        return self.tok.decode(ids, skip_special_tokens=True)

    def strip_stop(self, ids):
        return ids[:-1] if ids and ids[-1] in self.stop else ids


def sample(run, prompts, n, args, temperature=None, greedy=False, desc=None):
    """n completions per prompt (id lists, group-major) from the rollout copy of πθ, with the run's
    settings: --max-new-tokens, --gen-batch, the static cache length; at --temperature unless given."""
    return generate(run.rollout, prompts, n, run.tk, args.max_new_tokens, temperature or args.temperature,
                    greedy=greedy, gen_batch=args.gen_batch, cache_len=getattr(run, "cache_len", None), desc=desc)


@contextlib.contextmanager
def eval_sampling_rng(args, device):
    """Sampled evaluation draws from a stream of its own, seeded by --seed and the rank, and puts the
    training random state back afterwards: a run trains the same whether or not it evaluates by sampling,
    and every evaluation of a run samples with the same random numbers."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(1_000_003 * (args.seed + 1) + rank())
        yield


@torch.no_grad()
def generate(model, prompts, n, tk, max_new_tokens, temperature=1.0, greedy=False, gen_batch=256, cache_len=None,
             desc=None):
    """n completions per prompt from softmax(z / temperature), or the argmax (greedy): id lists, group-major
    (row i*n + j is prompt i's j-th). With cache_len (static cache) every call has one max_cache_len and a
    power-of-two number of rows, so the compiled decode step is reused. desc: a progress bar's label."""
    from transformers import GenerationConfig

    rows = [p for p in prompts for _ in range(n)]
    cfg = dict(max_new_tokens=max_new_tokens, eos_token_id=tk.stop, pad_token_id=tk.pad, do_sample=not greedy)
    if not greedy:
        cfg.update(temperature=temperature, top_k=0, top_p=1.0)
    if cache_len:  # newer transformers read max_cache_len, older ones cache_config; each ignores the other
        cfg.update(cache_implementation="static", max_cache_len=cache_len, cache_config={"max_cache_len": cache_len})
    gcfg = GenerationConfig(**cfg)
    # transformers fills every setting we leave unset from the model's own generation_config.json
    # (repetition penalties, top-k, n-gram bans, ...). With a blank one for the call, rollouts are pure
    # samples of πθ and greedy evaluation is pure argmax; the model keeps its file for save_pretrained.
    model_gcfg, model.generation_config = model.generation_config, GenerationConfig()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    bar = tqdm(total=len(rows), desc=desc, leave=False, disable=desc is None or not is_main(), dynamic_ncols=True)
    try:
        for s in range(0, len(rows), gen_batch):
            chunk = rows[s:s + gen_batch]
            n_real = len(chunk)
            extra = {}
            if cache_len:
                size = min(gen_batch, 1 << (n_real - 1).bit_length())
                chunk = chunk + [chunk[0]] * (size - n_real)
                done = torch.arange(size, device=device) >= n_real      # filler rows: finished from the start,
                extra["stopping_criteria"] = [lambda input_ids, scores, **kw: done]   # so they never delay a batch
            ids, mask = left_pad(chunk, tk.pad, device)
            seq = model.generate(input_ids=ids, attention_mask=mask, generation_config=gcfg, **extra)
            out += [cut_at_stop(row, tk.stop) for row in seq[:n_real, ids.shape[1]:].tolist()]
            bar.update(n_real)
    finally:
        bar.close()
        model.train(was_training)
        model.generation_config = model_gcfg
    return out


def pad_rows(rows, value, device, side="right", dtype=torch.long):
    """list of lists -> [n, L] tensor on device, each row padded with value up to the longest (on `side`)."""
    rows = [torch.tensor(r, dtype=dtype) for r in rows]
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=value, padding_side=side).to(device)


def left_pad(rows, pad, device):
    """list of id lists -> (ids, attention_mask) [n, L], left-padded so every row ends at column L-1."""
    return pad_rows(rows, pad, device, "left"), pad_rows([[1] * len(r) for r in rows], 0, device, "left")


def cut_at_stop(row, stop):
    """Completion ids up to and including the first stop token (tokens after it are padding)."""
    return next((row[:j + 1] for j, t in enumerate(row) if t in stop), row)


def longest_sequence(longest_prompt, max_new_tokens, guides, layers=2):
    """Tokens in the longest sequence a run builds: prompt + answer, and with Layer 2 (or evaluation's
    t2) the longest q' + correction = prompt + answer + guide + correction."""
    return longest_prompt + layers * max_new_tokens + (max(map(len, guides)) if layers == 2 else 0)


def static_cache_len(longest_prompt, max_new_tokens, guides):
    """One KV-cache length for the whole run, longest_sequence rounded up to 128: the compiled decode step is
    reused by every call of the same row count."""
    return -(-longest_sequence(longest_prompt, max_new_tokens, guides) // 128) * 128


# -----------------------------------------------------------------------------
# Log-prob internals: the logits as the model's own forward returns them, checked against that forward at start.


def output_logits(head, h, config):
    """[n, d] final hidden states -> [n, V] fp32 logits as the model's forward returns them: lm_head, then what the
    family's forward applies after it (read from its config): Granite divides by `logits_scaling`, Cohere
    multiplies by `logit_scale`, Gemma-2/3 soft-cap at `final_logit_softcapping` (c · tanh(z / c))."""
    z = head(h).float()
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(cfg, "logits_scaling", None):
        z = z / cfg.logits_scaling
    if getattr(cfg, "logit_scale", None):
        z = z * cfg.logit_scale
    cap = getattr(cfg, "final_logit_softcapping", None)
    if cap:
        z = torch.tanh(z / cap) * cap
    return z


def final_hidden_states(model, ids, mask):
    """[b, L, d] hidden states after the last layer, from the model's own forward (under FSDP its hooks
    gather the weights and reduce the gradients) with its logits cut to one position."""
    seen, decoder = [], model.get_decoder()
    decoder = model.base_model if decoder is model else decoder     # transformers 4.x: GPT-2 returns itself
    hook = decoder.register_forward_hook(lambda module, args, out: seen.append(out.last_hidden_state))
    try:
        model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=1)
    finally:
        hook.remove()
    return seen[0]


@torch.no_grad()
def check_logprobs(model, n=16, tol=1e-3):
    """Refuse (one line, exit 2) a model whose own output logits token_logprobs does not reproduce: an
    unknown post-processing of lm_head's output would otherwise train πθ on log-probs of a distribution
    the rollouts never came from. Compares both on n tokens; tol in nats (float rounding is ~1e-6)."""
    V = model.get_output_embeddings().weight.shape[0]
    ids = (torch.arange(n, device=next(model.parameters()).device) * 7919 % V)[None]   # any tokens will do
    mask, comp = torch.ones_like(ids), torch.ones_like(ids, dtype=torch.bool)
    comp[:, 0] = False
    was_training = model.training
    model.eval()
    try:
        fast = token_logprobs(model, ids, mask, comp)[comp]
        own = torch.log_softmax(model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float(), -1)
    finally:
        model.train(was_training)
    own = own[0, :-1].gather(-1, ids[0, 1:, None]).squeeze(-1)
    diff = (fast - own).abs().max().item()
    if not diff <= tol:                                                          # NaN fails too
        die(f"{type(model).__name__}: log-probs from its hidden states differ from its own forward's logits by "
            f"{diff:.3g} nats: its forward post-processes the logits in a way mgrpo.output_logits does not know")


# -----------------------------------------------------------------------------
# The update's machinery: micro-batches, accumulation over them and over ranks, the optimizer step.


def autocast(device):
    # bf16 compute on CUDA over fp32 master weights; plain fp32 on CPU (bf16 matmuls there are slow).
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def pack(prompts, completions, pad, device):
    """Rows prompt + completion, right-padded (so positions need no correction) -> ids, attention mask
    and completion mask, each [b, L]."""
    pairs = list(zip(prompts, completions))
    return (pad_rows([p + c for p, c in pairs], pad, device), pad_rows([[1] * len(p + c) for p, c in pairs], 0, device),
            pad_rows([[False] * len(p) + [True] * len(c) for p, c in pairs], False, device, dtype=torch.bool))


def micro_batches(lengths, budget):
    """Sequence indices grouped so that each micro-batch holds at most `budget` tokens with its padding
    (rows x longest row; a longer sequence goes alone). Longest first: rows of similar length share a
    micro-batch, so little padding is computed, and the most memory-hungry pass comes first."""
    mbs = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if mbs and (len(mbs[-1]) + 1) * lengths[mbs[-1][0]] <= budget:
            mbs[-1].append(i)
        else:
            mbs.append([i])
    return mbs


def plan_micro_batches(run, prompts, completions, adv, args, excluded=None):
    """This rank's rollouts of one layer packed into micro-batches (micro_batches, pack): (mbs, N, pad_frac) as
    the list where Part I begins says; ids, mask, comp and scored are [b, L], adv [b].

    Many GPUs: summing the normalisers over all ranks makes an update on R ranks equal one process's update
    on the union of their rollouts; and each rank runs as many micro-batches as the busiest one (FSDP would
    wait forever otherwise): the extra ones are empty, zero-weight passes on a one-token stand-in."""
    lengths = [len(p) + len(c) for p, c in zip(prompts, completions)]
    counted = [0 if excluded and excluded[i] else len(c) for i, c in enumerate(completions)]   # tokens J counts
    rows = micro_batches(lengths, args.micro_tokens)
    n_seq, n_tok, real, computed, n_mb = all_reduce([len(completions), sum(counted), sum(lengths),
                                                     sum(len(mb) * lengths[mb[0]] for mb in rows)], "sum") + \
        all_reduce([len(rows)], "max")
    rows += [[]] * (int(n_mb) - len(rows))
    pad, mbs = run.tk.pad, []
    for mb in rows:
        ids, mask, comp = pack([prompts[i] for i in mb], [completions[i] for i in mb], pad, run.device) if mb else \
            pack([[pad]], [[pad]], pad, run.device)
        scored = comp
        if excluded:                               # log-probs are still computed, so every pass has a graph
            scored = comp.clone()
            scored[[j for j, i in enumerate(mb) if excluded[i]]] = False
        mb_tok = sum(counted[i] for i in mb)
        mbs.append(SimpleNamespace(
            ids=ids, mask=mask, comp=comp, scored=scored, adv=adv[mb].to(run.device) if mb else torch.zeros(1, device=run.device),
            n_seq=len(mb), n_tok=mb_tok, token_share=mb_tok / n_tok if n_tok else 0.0))
    return mbs, (n_seq, n_tok), 1 - real / computed


def frozen_logprobs(run, model, mbs, args):
    """token_logprobs of every micro-batch without gradients, at the sampling temperature: log πref, or
    log πθ_old before the first of --mu steps. FSDP keeps a root's weights gathered until a backward,
    which never comes for the reference: it is resharded here."""
    with torch.no_grad(), autocast(run.device):
        out = [token_logprobs(model, mb.ids, mb.mask, mb.comp, args.temperature) for mb in mbs]
    if model is run.ref and hasattr(model, "reshard"):
        model.reshard()
    return out


MAX_BAD_STEPS = 5  # non-finite optimizer steps in a row before the run stops


def guard_non_finite(run, norm, loss):
    """(norm, loss, finite) before an optimizer step: the gradient norm over all ranks (FSDP's is a DTensor),
    the loss summed over them (one host sync per step), both finite? MAX_BAD_STEPS skipped steps in a row end
    the run (exit 1) before a checkpoint can hold NaN."""
    norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    (loss,) = all_reduce([loss])
    finite = bool(torch.isfinite(norm)) and math.isfinite(loss)
    run.bad_steps = 0 if finite else run.bad_steps + 1
    if run.bad_steps >= MAX_BAD_STEPS:
        die(f"{run.bad_steps} optimizer steps in a row had a non-finite loss or gradient; stopping "
            "(the checkpoints written so far are finite; resume from the last one)", code=1)
    return SimpleNamespace(norm=norm, loss=loss, finite=finite)


def sync_rollout_model(run):
    """Copy the fp32 master weights into the rollout copy: one cheap copy per update instead of casting
    the fp32 weights on every decode step. Under FSDP, one parameter at a time is gathered, already in
    the copy's dtype, so no rank ever holds the whole fp32 model."""
    if run.rollout is not run.policy:
        with torch.no_grad():
            for dst, src in zip(run.rollout.parameters(), run.policy.parameters()):
                dst.copy_(src.to(dst.dtype).full_tensor() if hasattr(src, "full_tensor") else src)


def update_stats(passes, terms, pad_frac, N, mu):
    """policy_update's return: the means over its --mu passes (guard_non_finite's) of grad_norm and loss, kl and
    clip_frac (means over the layer's tokens: each micro-batch's weighted by its token_share, summed over the
    ranks), skipped (the non-finite passes), pad_frac and N."""
    kl, clip_frac = all_reduce([sum(st[k] * share / mu for st, share in terms) for k in ("kl", "clip_frac")])
    grad_norm, loss = sum(p.norm / mu for p in passes), sum(p.loss / mu for p in passes)
    return {"kl": kl, "clip_frac": clip_frac, "grad_norm": float(grad_norm), "loss": loss,
            "skipped": sum(not p.finite for p in passes), "pad_frac": pad_frac, "N": N}


# -----------------------------------------------------------------------------
# The log: the same keys every step, null where there was nothing to measure.


def zero_std_groups(rewards):
    """rewards [n_groups, group_size] -> how many groups have all-equal rewards: their advantages are 0, so
    they carry no policy gradient (TRL's frac_reward_zero_std is this count over n_groups)."""
    return int((rewards.amax(-1) == rewards.amin(-1)).sum())


def step_log(run, l1, l2, args):
    """train_step's log entries, over all ranks: Layer 1's (l1: what grpo_layer returned), with --layers 2
    Layer 2's (l2: what correction_layer returned, None when no rank had a q'), then each phase's seconds."""
    r_sum, n, tok, n_cut, flat = all_reduce([l1.rewards.sum(), l1.rewards.numel(), sum(map(len, l1.answers)),
                                             l1.truncated.sum(), zero_std_groups(l1.rewards)])
    log = dict(l1_reward=r_sum / n, **update_log("l1", l1.update), l1_tokens=int(tok), l1_truncated=int(n_cut),
               l1_zero_std_frac=flat / (n / args.G))
    phases = ["gen1", "reward1", "update1"]
    if args.layers == 2:
        log.update(layer2_log(l2, args))
        phases += ["gen2", "reward2", "update2"]
    return {**log, **{f"sec_{p}": run.seconds.pop(p, None) for p in phases}}


def update_log(layer, stats):
    """policy_update's statistics as log entries l1_kl, l1_loss, ... (layer 'l1' or 'l2'); stats None
    (no update this step): null, with 0 optimizer steps skipped."""
    keys = ("kl", "clip_frac", "grad_norm", "loss", "pad_frac")
    return {**{f"{layer}_{k}": stats[k] if stats else None for k in keys},
            f"{layer}_skipped": stats["skipped"] if stats else 0}


def layer2_log(l2, args):
    """Layer 2's log entries over all ranks, from what correction_layer returned; with no q' on any rank
    (l2 None) counts 0 and the rest null, so that every step logs the same keys. l2_correction_rate counts
    only the q' of wrong answers (l2.correct_before: whether the answer in each q' was correct)."""
    if l2 is None:
        return {**dict.fromkeys(["l2_reward", "l2_keep_frac", "l2_correction_rate", "l2_zero_std_frac"]),
                **dict.fromkeys(["l2_groups", "l2_groups_kept", "l2_samples_kept", "l2_samples_trained", "l2_tokens",
                                 "l2_truncated"], 0), **update_log("l2", None)}
    r2 = l2.rewards                                      # [n, H]
    # kept: what selection keeps before its A > 0 filter (the correct corrections; with 'all', every one)
    kept = is_correct(r2) if args.l2_select == "successful" else torch.ones_like(r2, dtype=torch.bool)
    of_wrong = r2[~l2.correct_before]                    # [n', H] rewards of the corrections of wrong answers
    r2_sum, groups_kept, n_kept, tok2, fixed, n_of_wrong, n_cut, flat = all_reduce(
        [r2.sum(), kept.any(-1).sum(), kept.sum(), sum(map(len, l2.corrections)),
         is_correct(of_wrong).sum(), of_wrong.numel(), l2.truncated.sum(), zero_std_groups(r2)])
    n_q = int(l2.n_q)
    return {"l2_reward": r2_sum / (n_q * args.H), "l2_keep_frac": groups_kept / n_q,
            "l2_correction_rate": fixed / n_of_wrong if n_of_wrong else None, "l2_zero_std_frac": flat / n_q,
            "l2_groups": n_q, "l2_groups_kept": int(groups_kept), "l2_samples_kept": int(n_kept),
            "l2_samples_trained": int(l2.n_trained), "l2_tokens": int(tok2), "l2_truncated": int(n_cut),
            **update_log("l2", l2.update)}


def steps_with_progress(start, args, progress):
    """Steps start+1 .. --steps for train(), under a progress bar on rank 0 (end_step shows r1, r2 and the KL
    on it). progress['step'] is the step in progress, for a stop's message."""
    progress["bar"] = tqdm(range(start + 1, args.steps + 1), initial=start, total=args.steps, desc="mgrpo",
                           dynamic_ncols=True, disable=not is_main())
    for step in progress["bar"]:
        progress.update(step=step, t0=time.time())
        yield step


def end_step(run, log, rng, args, progress):
    """The end of a training step: its log line (sec_step: the step without its evaluation), the metrics on
    the terminal and the progress bar, then log.jsonl's line and, every --save-every steps and at the end, a
    checkpoint, both whole even if a stop signal arrives meanwhile (stop_held). Returns the log line."""
    sec_eval = run.seconds.pop("eval", None) if "eval" in log else None
    step, sec_step = log["step"], round(time.time() - progress["t0"] - (sec_eval or 0), 3)
    log = {**{k: v for k, v in log.items() if k != "eval"}, "sec_step": sec_step, "eval": log.get("eval"),
           "sec_eval": sec_eval}
    for name, m in (log["eval"] or {}).items() if is_main() else ():
        tqdm.write(f"step {step} {name}: " + " ".join(f"{k}={v:.3f}" for k, v in m.items()))
    if log["l1_truncated"] == args.batch_size * args.G and not progress.get("all_cut") and is_main():
        progress["all_cut"] = True      # once: a run whose answers cannot finish learns nothing, and says so
        tqdm.write(f"mgrpo: step {step}: every answer was cut off at --max-new-tokens {args.max_new_tokens} before "
                   "it ended; raise it (a cut-off answer rarely states its final answer)")
    r2 = log.get("l2_reward")
    progress["bar"].set_postfix(r1=f"{log['l1_reward']:.2f}", r2="-" if r2 is None else f"{r2:.2f}",
                                kl=f"{log['l1_kl']:.3f}")
    with stop_held():               # a stop waits for the step's log line and checkpoint to be whole
        if is_main():
            append_log(os.path.join(args.output_dir, "log.jsonl"), log)
        if (args.save_every and step % args.save_every == 0) or step == args.steps:
            save_checkpoint(args.output_dir, step, run, rng, args)
    return log


# -----------------------------------------------------------------------------
# Models: loading, and the namespace `run` that Part I passes around.


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def from_pretrained(cls, name, **kw):
    """cls.from_pretrained(name, **kw), or one clear line saying why it cannot be loaded: a local directory
    without the files a model needs is named as such before transformers is asked."""
    is_dir = os.path.isdir(name)
    if os.path.isfile(name):
        die(f"{name} is a file: a model is a directory that save_pretrained wrote, or a Hugging Face Hub id")
    if not is_dir and (os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1):
        die(f"model directory not found: {name}")            # a path, and not a Hub id ('org/name')
    if is_dir and not os.path.isfile(os.path.join(name, "config.json")):
        die(f"{name} is not a model directory: it has no config.json (save_pretrained writes one)")
    if is_dir and cls.__name__ == "AutoTokenizer" and not any(os.path.isfile(os.path.join(name, f))
                                                              for f in TOKENIZER_FILES):
        die(f"{name} has no tokenizer files ({', '.join(TOKENIZER_FILES)}): save the tokenizer beside the "
            "model (tokenizer.save_pretrained)")
    try:
        return cls.from_pretrained(name, **kw)
    except Exception as e:                      # the Hub and the loaders raise many kinds of errors
        why = " ".join(str(e).split()) or type(e).__name__          # one line, however many the library wrote
        why = why if len(why) <= 300 else why[:300] + " ..."
        if not is_dir and os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
            die(f"cannot load '{name}': no such local directory, and HF_HUB_OFFLINE is set, so only the Hugging "
                "Face cache was searched, and it is not there: pass a local directory, or unset HF_HUB_OFFLINE "
                "to download it")            # the library's own text would advise going offline
        where = "" if is_dir else " (no such local directory; offline, pass a local directory and set HF_HUB_OFFLINE=1)"
        die(f"cannot load '{name}'{where}: {why}")


def load_model(name, device, dtype, grad_checkpointing=False):
    """A causal LM with dropout switched off: log πθ must be one function when rollouts are scored
    (πθ_old, the reference) and when they are trained on, as in most RL trainers. Every other
    setting comes from the model's config."""
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = from_pretrained(AutoConfig, name)
    for k, v in cfg.to_dict().items():
        if ("dropout" in k or "pdrop" in k) and isinstance(v, float) and v > 0:
            setattr(cfg, k, 0.0)
    model = from_pretrained(AutoModelForCausalLM, name, config=cfg, dtype=dtype)
    if grad_checkpointing:
        enable_checkpointing(model)
    return model.to(device)


def enable_checkpointing(model):
    # transformers >= 5.2x renamed gradient_checkpointing_enable; keep both working
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def setup(args, reward=None):
    """Everything a step needs, as a namespace `run` (the trainer's state): policy, rollout, ref, opt, device,
    reward (the `reward` given, else rule_reward) and tk, as the list where Part I begins says, and tk.tok the
    Hugging Face tokenizer; cache_len, the static KV cache's length (main sets it on CUDA); bad_steps
    (guard_non_finite) and seconds (phase). With several ranks, the policy and the reference are read into
    CPU memory and sharded onto the GPUs layer by layer, and every rank holds a full rollout copy."""
    import huggingface_hub
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()              # no "Loading weights"/"Writing model shards" bars
    huggingface_hub.utils.enable_progress_bars()   # between ours; downloads keep their progress bars
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    src = find_checkpoint(args.resume) if args.resume else args.model
    tok = from_pretrained(AutoTokenizer, src)
    load_to = device if world() == 1 else torch.device("cpu")          # several ranks: sharded after loading
    policy = load_model(src, load_to, torch.float32, args.grad_checkpointing)
    check_logprobs(policy)
    sampling_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rollout = policy if sampling_dtype == torch.float32 and world() == 1 else \
        load_model(src, device, sampling_dtype).requires_grad_(False)
    ref = load_model(args.model, load_to, sampling_dtype).eval().requires_grad_(False) \
        if args.beta > 0 and not args.eval_only else None          # the initial policy, even on resume
    if world() > 1:
        policy, ref = shard(policy, device), ref and shard(ref, device)
    opt = torch.optim.AdamW(policy.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    policy.train()          # from_pretrained returns eval mode, in which transformers skips gradient checkpointing
    return SimpleNamespace(policy=policy, rollout=rollout, ref=ref, opt=opt, tk=Tokens(tok, policy), device=device,
                           reward=reward or rule_reward, bad_steps=0, cache_len=None, seconds={}, data=None)


# -----------------------------------------------------------------------------
# Data: a list of rows {"question": str, "gold": str, ...the file's other fields}; named sets are cached in CACHE_DIR.

QWEN_EVAL = "https://raw.githubusercontent.com/QwenLM/Qwen2.5-Math/main/evaluation/data/{name}/test.jsonl"
URLS = {"gsm8k": "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/{split}.jsonl",
        "minerva_math": QWEN_EVAL.format(name="minerva_math"), "olympiadbench": QWEN_EVAL.format(name="olympiadbench"),
        # MATH's training split (Hendrycks et al. 2021; 7,500 problems, gold = last \boxed{} of `solution`). The
        # Hub copies were taken down in 2025; Qwen2.5-Math keeps one beside its evaluation sets.
        "math": "https://raw.githubusercontent.com/QwenLM/Qwen2.5-Math/main/evaluation/data/math/train.jsonl"}
NAMED_SETS = (*URLS, "math500")        # the datasets --data and --eval-data name (MATH-500 comes from the Hub)
CACHE_DIR = os.environ.get("MGRPO_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "mgrpo"))


def download(url, path, offline_hint):
    """Fetch url to path once; later runs read the cached file offline."""
    if not os.path.exists(path):
        print(f"downloading {url}")
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                data = r.read()
        except OSError as e:
            die(f"could not download {url} ({e}); to run offline, {offline_hint}")
        os.makedirs(os.path.dirname(path), exist_ok=True)   # only now: a failed download leaves no empty folder
        tmp = f"{path}.{os.getpid()}.tmp"  # never a half-written cache file, even with several ranks at once
        with open(tmp, "wb") as f:
            f.write(data)
        durable_replace(tmp, path)
    return path


def gold_of(row):
    """Gold answer: `gold` as it is, else `answer` after its last '####' (GSM8K, commas dropped), else `answer`, else the first
    `final_answer` without its $ (OlympiadBench), else the last \\boxed{} of `solution` (MATH, Minerva).
    A field that is null (or an empty list) is absent: the next one is tried; a list of one is its item, and any
    other list or an object is no answer (None)."""
    gold, ans = ((v[0] if len(v) == 1 else v or None) if isinstance(v, list) else v
                 for v in (row.get("gold"), row.get("answer")))
    if isinstance(gold, (list, dict)) or gold is None and isinstance(ans, (list, dict)):
        return None
    if gold is not None:                            # a file already in load_problems' own form
        return str(gold).strip()
    if ans is not None:
        ans = str(ans)
        return ans.rsplit("####", 1)[1].strip().replace(",", "") if "####" in ans else ans.strip()
    fa = row.get("final_answer")
    if isinstance(fa, list):
        fa = fa[0] if fa else None
    if fa is not None:
        return str(fa).strip().strip("$").strip()
    if row.get("solution") is not None:
        return last_boxed(str(row["solution"]))
    return None


def load_problems(spec, split):
    """The problems of a named set or a .jsonl file: a list of the file's rows, each with "question" (from
    `question` or `problem`) and "gold" (gold_of) added and every other field kept, for a reward of your
    own to read (test cases, metadata). Bad input: one line naming the file and line, exit 2."""
    if split == "train" and spec in ("math500", "minerva_math", "olympiadbench"):
        die(f"{spec} is a test set: train with --data gsm8k, math or PATH.jsonl and evaluate with --eval-data {spec}")
    if split == "test" and spec == "math":
        # MATH's 5,000-problem test split holds MATH-500; its first --eval-n problems would be mostly algebra
        die("math is MATH's training split: evaluate on MATH with --eval-data math500")
    if spec in URLS:
        folder = os.path.join(CACHE_DIR, spec)
        hint = {"gsm8k": f"put GSM8K's train.jsonl and test.jsonl (both are needed) in {folder}",
                "math": f"put MATH's train.jsonl in {folder}"}.get(spec, f"put its test.jsonl in {folder}")
        path = download(URLS[spec].format(split=split), os.path.join(folder, f"{split}.jsonl"), hint)
    elif spec == "math500":
        path = os.path.join(CACHE_DIR, "math500", "test.jsonl")    # a copy put there is read offline, like the rest
        if not os.path.exists(path):
            from huggingface_hub import hf_hub_download  # ships with transformers; caches in ~/.cache/huggingface
            try:
                path = hf_hub_download("HuggingFaceH4/MATH-500", "test.jsonl", repo_type="dataset")
            except Exception as e:
                die(f"could not fetch MATH-500 from the Hugging Face Hub ({type(e).__name__}); to run offline, put "
                    f"its test.jsonl in {os.path.dirname(path)} or pass a local .jsonl instead")
    elif spec.endswith(".jsonl") or os.path.sep in spec or os.path.isfile(spec):
        path = spec
        if os.path.isdir(path):
            die(f"{path} is a directory: the data is one .jsonl file, one problem per line")
        if not os.path.isfile(path):
            die(f"data file not found: {path}")
    else:
        die(f"unknown dataset '{spec}': use gsm8k, math, math500, minerva_math, olympiadbench or a path to a "
            ".jsonl file")
    problems, no_gold = [], []
    for n, line in read_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            row = NOT_JSON
        if not isinstance(row, dict) and is_json_array(path):
            die(f"{path} is one JSON array; the data must be JSON Lines, one object per line (convert it with: "
                f"python -c \"import json,sys; [print(json.dumps(r)) for r in json.load(sys.stdin)]\" "
                f"< {path} > {beside(path, '.jsonl', '.lines.jsonl')})")
        if row is NOT_JSON:
            die(f"{path} line {n}: not valid JSON")
        q, gold = (row.get("question", row.get("problem")), gold_of(row)) if isinstance(row, dict) else (None, None)
        if spec == "math" and isinstance(q, str) and not gold:
            no_gold.append(n)            # MATH's training split has two solutions that box nothing: '\boxed{}'
            continue
        if not isinstance(q, str) or not q.strip() or not gold:
            die(f"{path} line {n}: needs a 'question' or 'problem' field holding text and a 'gold', 'answer', "
                "'final_answer' or 'solution' field holding one answer (text or a number)")
        problems.append({**row, "question": q, "gold": gold})
    if no_gold and is_main():
        print(f"mgrpo: {spec}: left out {len(no_gold)} problem(s) whose solution boxes no answer (line(s) "
              f"{', '.join(map(str, no_gold[:5]))}{', ...' if len(no_gold) > 5 else ''} of {path})")
    if not problems:
        die(f"{path} holds no problems")
    return problems


NOT_JSON = object()


def reward_name(reward):
    """What a checkpoint records of its reward: None for the rule (rule_reward), else module.name of yours."""
    name = getattr(reward, "__qualname__", type(reward).__name__)      # a function, or a callable object
    return None if reward in (None, rule_reward) else f"{getattr(reward, '__module__', '?')}.{name}"


def data_digest(problems):
    """What a checkpoint records of its training data: the number of problems and a hash of every row."""
    rows = json.dumps(problems, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
    return {"problems": len(problems), "sha256": hashlib.sha256(rows).hexdigest()}


def check_golds(flag, problems):
    """The rule reward pays a reply whose final answer equals the gold, so a gold must be an answer (gold_is_an_answer),
    not a sentence around one ('The answer is 6.', an 'answer' field without GSM8K's '####') nor text that nothing
    parses. A set with no such gold would train or score nothing at all: one line, exit 2; a set with some gets one
    line counting them."""
    bad = [i for i, p in enumerate(problems, 1) if not gold_is_an_answer(p)]
    if bad and len(bad) == len(problems):
        die(f"{flag}: no gold is an answer a reply can earn (problem 1's gold is {problems[0]['gold'][:80]!r}: a "
            "sentence, or nothing that parses): put the final answer alone in 'gold', or after '####' in 'answer', "
            "or pass a reward of your own")
    if bad and is_main():
        print(f"mgrpo: {flag}: {len(bad)} of {len(problems)} golds are sentences or do not parse (problem {bad[0]}: "
              f"{problems[bad[0] - 1]['gold'][:80]!r}): a reply's boxed answer will not earn them")


def gold_is_an_answer(problem):
    """Whether a reply boxing the gold earns it, and a gold that is a sentence around a number ('The answer is
    6.', 'She has 6 apples.': words outside LaTeX) is earned by a reply boxing that number."""
    gold = problem["gold"]
    if rule_reward("\\boxed{" + gold + "}", problem) < 1.0:
        return False
    prose = re.sub(r"\\[a-zA-Z]+(\{[^{}]*\})?", " ", gold)          # not \frac, \text{ cm}, \begin{pmatrix}
    numbers = re.findall(r"\d+(?:\.\d+)?", prose)
    return len(re.findall(r"[a-zA-Z]{3,}", prose)) < 2 or not numbers or \
        rule_reward("\\boxed{" + numbers[-1] + "}", problem) == 1.0


def beside(path, suffix, otherwise=None):
    """A file next to `path` for a command the user is told to run: path without its extension + suffix, or +
    `otherwise` where that would be path itself (a shell's '> path' empties the file before it is read)."""
    out = os.path.splitext(path)[0] + suffix
    return out if out != path else os.path.splitext(path)[0] + otherwise


def read_lines(path):
    """(line number, text) of a UTF-8 text file, a byte-order mark allowed (Windows editors write one); a file
    that cannot be read, or is not UTF-8, ends the run with one line naming it (exit 2)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        die(f"cannot read {path}: {e.strerror or type(e).__name__}")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):             # the byte-order marks of UTF-16 (Windows' "Unicode")
        die(f"{path} is UTF-16 text: save it as UTF-8 (iconv -f utf-16 -t utf-8 {path} > {beside(path, '.utf8.jsonl')})")
    for n, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), 1):
        try:
            yield n, raw.decode("utf-8")
        except UnicodeDecodeError as e:
            die(f"{path} line {n}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}): save the file "
                f"as UTF-8 (from Latin-1, say: iconv -f latin1 -t utf-8 {path} > {beside(path, '.utf8.jsonl')})")


def is_json_array(path):
    """Whether the whole file is one JSON array (a common mistake for JSON Lines)."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return isinstance(json.load(f), list)
    except (ValueError, OSError):
        return False


def batch_indices(step, batch_size, n, seed):
    """Questions for a step: a fresh seeded permutation each epoch, so a resumed run sees the same order."""
    ks = range(step * batch_size, (step + 1) * batch_size)
    return [int(np.random.default_rng([seed, k // n]).permutation(n)[k % n]) for k in ks]   # epoch k // n


# -----------------------------------------------------------------------------
# Many GPUs: `torchrun --nproc_per_node N mgrpo.py ...` starts N ranks, each with 1/N of every batch and
# evaluation set and its own full rollout copy; FSDP2 shards the policy and the reference over them.


def rank():
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", 0))


def world():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main():
    return rank() == 0


def my_share(items):
    """This rank's contiguous share of a list (equal shares, rank order = list order)."""
    n = len(items)
    return items[rank() * n // world():(rank() + 1) * n // world()]


def all_reduce(xs, op="sum"):
    """Sums (or maxima) of a few numbers over all ranks, as Python floats."""
    if world() == 1:
        return [float(x) for x in xs]
    t = torch.tensor([float(x) for x in xs], dtype=torch.float64,
                     device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.tolist()


def std_over_ranks(x):
    """The population std of every element of x on every rank, as a Python float (--scale-rewards batch)."""
    s, s2, n = all_reduce([x.double().sum(), x.double().pow(2).sum(), x.numel()])
    return math.sqrt(max(s2 / n - (s / n) ** 2, 0.0)) if n else 0.0


def gather(items):
    """Every rank's list, concatenated in rank order."""
    if world() == 1:
        return list(items)
    parts = [None] * world()
    dist.all_gather_object(parts, list(items))
    return [x for part in parts for x in part]


def init_distributed(args):
    """Under torchrun: one process group, and on CUDA one GPU per rank (cuda:LOCAL_RANK)."""
    n = int(os.environ.get("WORLD_SIZE", 1))
    if n == 1:
        return
    cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if cuda:
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", n))
        if per_node > torch.cuda.device_count():
            die(f"torchrun started {per_node} processes on this node, which has {torch.cuda.device_count()} GPUs")
        args.device = f"cuda:{os.environ['LOCAL_RANK']}"
        torch.cuda.set_device(torch.device(args.device))
    dist.init_process_group("nccl" if cuda else "gloo")


def leave_distributed(code):
    """The last thing a torchrun rank does: after a finished run the ranks meet (none leaves while rank 0
    still writes) and destroy the process group, then os._exit skips the interpreter's teardown. gloo's
    threads outlive destroy_process_group (FSDP2's device mesh holds the group), and one that takes the GIL
    during teardown is killed by CPython with pthread_exit, which a C++ thread cannot survive: the rank
    would abort and torchrun report a finished run as failed. Every file is closed and fsynced by now.
    After a failure the other ranks give rank 0 a moment to print its line."""
    if code == 0:
        dist.barrier()
        dist.destroy_process_group()
    elif not is_main():
        time.sleep(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def shard(model, device):
    """FSDP2: each decoder layer, then the rest (embeddings, final norm, lm_head) at the root, sharded
    over the ranks. On CUDA the sharded fp32 weights compute in bf16 and reduce gradients in fp32."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    mesh = init_device_mesh(device.type, (world(),))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
        if device.type == "cuda" else MixedPrecisionPolicy()
    for layer in model.get_decoder().layers:
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    return fully_shard(model, mesh=mesh, mp_policy=mp)


# -----------------------------------------------------------------------------
# Checkpoints: model + tokenizer, optimizer.pt and trainer_state.pt (step, args, every rank's random state), renamed
# into place whole (durable_replace). Only --keep-last deletes checkpoints: older step-* of this run's output directory.


def save_checkpoint(out_dir, step, run, rng, args):
    """Rank 0 writes; under FSDP all ranks first gather the full weights and optimizer state into
    rank 0's CPU memory. The optimizer state is keyed by parameter name, so any number of ranks can
    load it. A write that fails (a full disk) removes its .tmp directory and ends the run with one
    line on every rank; the older checkpoints stay as they were."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)
    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(run.policy, options=full) if world() > 1 else None
    optimizer = get_optimizer_state_dict(run.policy, run.opt, options=full)
    rngs = gather([{"python": rng.getstate(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(run.device) if run.device.type == "cuda" else None}])
    final = os.path.join(out_dir, f"step-{step:06d}")
    failure = None
    if is_main():
        tmp = final + ".tmp"
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            run.policy.save_pretrained(tmp, state_dict=weights)
            run.tk.tok.save_pretrained(tmp)
            torch.save(optimizer, os.path.join(tmp, "optimizer.pt"))
            torch.save({"step": step, "args": vars(args), "world": world(), "rng": rngs, "cwd": os.getcwd(),
                        "data": run.data, "reward": reward_name(run.reward), "script": SCRIPT},
                       os.path.join(tmp, "trainer_state.pt"))
            if os.path.exists(final):
                shutil.rmtree(final)
            durable_replace(tmp, final)
        except Exception as e:  # OSError, or safetensors' own error type around one
            shutil.rmtree(tmp, ignore_errors=True)
            size = tensor_bytes(list(run.policy.parameters())) + tensor_bytes(optimizer)   # tied weights once
            failure = write_failure(e, final, size)
        if failure is None and args.keep_last:
            for old in checkpoints(out_dir)[:-args.keep_last]:
                shutil.rmtree(old)
    (failed,) = all_reduce([failure is not None])         # the other ranks leave with rank 0
    if failed:
        die(f"{failure}; {how_to_go_on(args)}", code=1)
    return final


def restore_checkpoint(run, rng, ckpt, state):
    """The optimizer state, on any number of ranks; and, on as many ranks as wrote the checkpoint,
    every rank's random state, so that the run continues exactly."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    sd = read_state(os.path.join(ckpt, "optimizer.pt")) if is_main() else {}
    set_optimizer_state_dict(run.policy, run.opt, sd,
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=world() > 1))
    if state["world"] != world():
        if is_main():
            print(f"mgrpo: {ckpt} was written by {state['world']} process(es), this run has {world()}: the weights "
                  "and optimizer state carry over, sampling goes on from fresh seeds (not bit-exact)")
        seed = state["args"]["seed"] * 1_000_003 + state["step"] * 1009 + rank()
        torch.manual_seed(seed)
        rng.seed(seed)
        return
    r = state["rng"][rank()]
    rng.setstate(r["python"])
    torch.set_rng_state(r["torch"])
    if r["cuda"] is not None and run.device.type == "cuda":
        torch.cuda.set_rng_state(r["cuda"], run.device)


def checkpoints(out_dir):
    """The checkpoint directories step-NNNNNN of an output directory, oldest first (a cut write's .tmp and
    anything else named step-... are not checkpoints, and --keep-last never deletes them)."""
    found = [d for d in glob.glob(os.path.join(glob.escape(out_dir), "step-*")) if checkpoint_step(d) is not None
             and os.path.isdir(d)]
    return sorted(found, key=checkpoint_step)


def checkpoint_step(path):
    """The step of a checkpoint directory step-NNNNNN; None for any other name."""
    name = os.path.basename(os.path.normpath(path))
    digits = name.removeprefix("step-")
    return int(digits) if name.startswith("step-") and digits.isdigit() and digits.isascii() else None


# What save_checkpoint writes (the weights' own file name varies: sharded, or .bin from older code).
CHECKPOINT_FILES = ("config.json", "optimizer.pt", "trainer_state.pt")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def missing_files(ckpt):
    """The files of a checkpoint that ckpt lacks."""
    missing = [f for f in CHECKPOINT_FILES if not os.path.isfile(os.path.join(ckpt, f))]
    if not any(os.path.isfile(os.path.join(ckpt, f)) for f in WEIGHT_FILES):
        missing.insert(1, "model.safetensors")
    return missing


def find_checkpoint(path):
    """A checkpoint directory, or an output directory whose latest step-* checkpoint is taken. One that is
    not whole (files lost or never copied) is refused in one line naming what is missing; an older
    checkpoint is never taken in its place unasked."""
    is_ckpt = os.path.isfile(os.path.join(path, "trainer_state.pt")) or checkpoint_step(path) is not None
    found = [path] if is_ckpt else checkpoints(path)
    if not found:
        die(f"--resume: no checkpoint in {path} (a step-NNNNNN directory that holds trainer_state.pt)")
    ckpt, older = found[-1], [c for c in found[:-1] if not missing_files(c)]
    missing = missing_files(ckpt)
    if missing:
        why = f"move it aside to resume from the one before it, {older[-1]}" if older else \
            "copy them from where the run was made"
        die(f"--resume {path}: {ckpt} is not a whole checkpoint: it has no {', '.join(missing)} (mgrpo.py writes "
            f"{', '.join(CHECKPOINT_FILES[:1] + ('model.safetensors',) + CHECKPOINT_FILES[1:])}); {why}")
    return ckpt


def trim_log(path, step, source=None):
    """On resume: keep the log lines up to the checkpoint's step (later steps are redone) and drop a
    line that a kill cut mid-write. Rewritten through a temporary file, so a crash here loses nothing.
    source: another run's log to take the lines from (a branch, --resume CKPT --output-dir NEW)."""
    def step_of(line):
        try:
            return json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            return None                                              # the cut line

    source = source or path
    if os.path.exists(source):
        with open(source, encoding="utf-8", errors="replace") as f:
            kept = [line.rstrip("\n") + "\n" for line in f if (step_of(line) or math.inf) <= step]
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.writelines(kept)
        durable_replace(path + ".tmp", path)


def append_log(path, record):
    """One JSON line per step, on the disk before the step's checkpoint is (a power cut after a
    save must not leave a checkpoint whose steps the log lacks)."""
    with cannot_write(path):
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def write_jsonl(path, rows):
    """One JSON line per row, written whole or not at all (durable_replace)."""
    with cannot_write(path):
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        durable_replace(path + ".tmp", path)


@contextlib.contextmanager
def cannot_write(path):
    """A log line or an evaluation file that cannot be written (a full disk, a folder removed under the run)
    ends the run with one line naming it (exit 1); the checkpoints on disk are whole."""
    try:
        yield
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(path + ".tmp")
        die(f"cannot write {path} ({e.strerror or type(e).__name__}); what the run wrote before is whole, and "
            "--resume goes on from its latest checkpoint", code=1)


# -----------------------------------------------------------------------------
# How a run ends. Besides finishing, a run can be stopped (Ctrl-C; SIGTERM, a scheduler's preemption notice), run
# out of GPU memory, fill the disk or lose power. Each of the first three ends with one line that names the latest
# complete checkpoint and the command that continues; none of the four can leave a checkpoint that looks complete.


def fsync_path(path):
    """Flush a file's data, or a directory's entries, from the page cache to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_replace(tmp, final):
    """Rename a fully written file or directory `tmp` to `final`, so that after a power cut the disk
    holds either the old `final` or the whole new one, never empty or short files: a rename reaches
    the disk before the data it points to unless the data is flushed first, as databases do. The
    directory holding `final` is flushed after the rename, so that the rename itself is kept."""
    for folder, _, files in os.walk(tmp):                 # a file has no entries to walk
        for name in files:
            fsync_path(os.path.join(folder, name))
        fsync_path(folder)
    if os.path.isfile(tmp):
        fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(os.path.dirname(os.path.abspath(final)))


def tensor_bytes(tree):
    """Bytes of the tensors in a nest of dicts, lists and tuples (the size of a state dict)."""
    if torch.is_tensor(tree):
        return tree.numel() * tree.element_size()
    items = tree.values() if isinstance(tree, dict) else tree if isinstance(tree, (list, tuple)) else ()
    return sum(map(tensor_bytes, items))


def write_failure(e, path, size):
    """The line for a checkpoint that could not be written: a full disk names the space needed."""
    text = str(e)
    if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or \
            any(os.strerror(n) in text for n in (errno.ENOSPC, errno.EDQUOT)):
        return f"no space left on the device for checkpoint {path}: it needs about {size / 2**30:.2f} GiB free"
    return f"cannot write checkpoint {path}: {(text.splitlines() or [type(e).__name__])[0]}"


def how_to_go_on(args, **run_control):
    """'latest complete checkpoint: ...; continue with: ...' for the last line of a run that stopped, or how
    to start over when it stopped before its first checkpoint. run_control: flags to add to the command that
    goes on (say, a smaller --gen-batch)."""
    if args.eval_only:
        return "nothing was trained; run the same command again"
    found = checkpoints(args.output_dir)
    extra = "".join(f" --{k.replace('_', '-')} {v}" for k, v in run_control.items())
    if not found:
        return f"no checkpoint yet{first_checkpoint(args)}; {start_over(args.output_dir, extra)}"
    launcher = f"python {SCRIPT}" if world() == 1 else \
        f"torchrun --nproc_per_node {os.environ.get('LOCAL_WORLD_SIZE', world())} {SCRIPT}"
    if "OMP_NUM_THREADS" in os.environ and world() == 1:     # the thread count this run had (README)
        launcher = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} {launcher}"
    return f"latest complete checkpoint: {found[-1]}; continue with: {launcher} --resume {args.output_dir}{extra}"


def first_checkpoint(args):
    """' (the first comes at step N)': the first save of this run (--save-every, and always the last step),
    after the step a branch (--resume CKPT --output-dir NEW) goes on from; '' where that is unknown."""
    start = 0
    if args.resume:
        ckpt = args.resume if checkpoint_step(args.resume) is not None else (checkpoints(args.resume) or [""])[-1]
        start = checkpoint_step(ckpt)
        if start is None:
            return ""
    every = args.save_every or args.steps
    return f" (the first comes at step {min((start // every + 1) * every, args.steps)})"


def start_over(out, extra=""):
    """How to start over a run that stopped before its first checkpoint, naming only the files it wrote,
    never a folder that holds anything else."""
    files = os.listdir(out) if os.path.isdir(out) else []
    mine = sorted(f for f in files if f.startswith(("log.jsonl", "eval-", "step-")))
    again = "run the same command again" + (f" with{extra}" if extra else "")
    if not mine:
        return f"nothing of it was written: {again}"
    what = out if len(mine) == len(files) else f"{', '.join(mine)} from {out}"
    return f"to start over, remove {what} and {again}, or choose another --output-dir"


# Each phase of a step and of evaluation, as messages name it (phase() knows what lowers its memory).
PHASES = {"gen1": "Layer-1 rollouts", "reward1": "Layer-1 rewards", "update1": "the Layer-1 update",
          "gen2": "Layer-2 rollouts", "reward2": "Layer-2 rewards", "update2": "the Layer-2 update",
          "eval": "evaluation"}


@contextlib.contextmanager
def phase(run, name, args):
    """Times one phase into run.seconds[name] (the log's sec_<name>). Running out of GPU memory in it ends the run with one
    line (exit 1) naming the phase and the flags that lower its memory; no checkpoint is being
    written during a phase, so the ones on disk are intact."""
    t = time.time()
    try:
        yield
    except torch.OutOfMemoryError:
        if name.startswith("update"):
            lower = f"lower --micro-tokens (now {args.micro_tokens})" + \
                ("" if args.grad_checkpointing else " or turn on --grad-checkpointing")
            smaller = {"micro_tokens": max(args.micro_tokens // 2, 1)}
        else:
            lower = f"lower --gen-batch (now {args.gen_batch}) or --max-new-tokens (now {args.max_new_tokens})"
            smaller = {"gen_batch": max(args.gen_batch // 2, 1)}
        die(f"out of GPU memory in {PHASES[name]}: {lower}; {how_to_go_on(args, **smaller)}", code=1,
            every_rank=True)
    run.seconds[name] = round(time.time() - t, 3)


class RunStopped(BaseException):
    """Raised in the main thread by a stop signal. A BaseException, like KeyboardInterrupt, so that
    no `except Exception` on the way swallows it."""


STOP = {"signal": None, "held": False}      # the first stop signal seen; whether it must wait


def on_stop_signal(signum, frame):
    """The handler of SIGINT and SIGTERM inside ends_cleanly: RunStopped now, or once a write ends."""
    first = STOP["signal"] is None
    STOP["signal"] = STOP["signal"] or signum
    if STOP["held"] and first:
        if is_main():
            print("mgrpo: finishing the checkpoint being written, then stopping (signal again to stop now)",
                  file=sys.stderr)
        return
    raise RunStopped(signum)


@contextlib.contextmanager
def stop_held():
    """A stop signal that arrives inside the block takes effect when it ends, so that a checkpoint
    and a log line are written whole. A second signal stops at once: a half-written checkpoint is
    then a .tmp directory, which nothing reads and the next save replaces."""
    STOP["held"] = True
    try:
        yield
    finally:
        STOP["held"] = False
    if STOP["signal"]:
        raise RunStopped(STOP["signal"])


@contextlib.contextmanager
def ends_cleanly(args):
    """main()'s frame: Ctrl-C or SIGTERM inside it ends the run with one line (the step, the latest complete
    checkpoint, the --resume command) and exit code 128 + the signal (130, 143). Under torchrun every rank
    gets the signal, a rank whose collective broke leaves the same way, and rank 0 alone prints. Yields a
    dict whose 'step' the loop keeps at the step in progress."""
    progress = {"step": None}
    STOP.update(signal=None, held=False)
    before = {}
    for s in (signal.SIGINT, signal.SIGTERM):
        try:
            if signal.getsignal(s) != signal.SIG_IGN:     # ignored by whoever started us (`cmd &`): stays so
                before[s] = signal.signal(s, on_stop_signal)
        except ValueError:                                # not the main thread: signals stay as they were
            break
    try:
        yield progress
    except BaseException as e:
        if STOP["signal"] is None or isinstance(e, SystemExit):
            raise
        where = f"during step {progress['step']}" if progress["step"] else \
            "during evaluation" if args.eval_only else "before the first step"
        die(f"stopped by {signal.Signals(STOP['signal']).name} {where}; {how_to_go_on(args)}",
            code=128 + STOP["signal"], label="")
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


# -----------------------------------------------------------------------------
# The command line: one argparse block (`python mgrpo.py --help` explains every flag), the checks of a
# run's input before anything is loaded, and main().


def build_parser():
    p = argparse.ArgumentParser(description="Multi-Layer GRPO (MGRPO): python mgrpo.py on one GPU, torchrun on many.",
                                allow_abbrev=False)     # '--h 4' (meant: --H) is no abbreviation of --help
    # A negative number in any notation is a flag's value (--lr -1e-3, -inf), as --lr -0.001 is: argparse would
    # take it for a flag ('expected one argument'), and the line check_args gives is about the value.
    p._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-(inf|nan)$", re.IGNORECASE)
    a = p.add_argument
    a("--model", help="Hugging Face model id or local directory (policy and reference)")
    a("--data", default="gsm8k", help="training data: gsm8k, math (MATH's 7,500 training problems) or a .jsonl path")
    a("--eval-data", default=None, help="eval data: gsm8k, math500, minerva_math, olympiadbench or a .jsonl path, or a "
      "comma list of them (default: GSM8K's test split for --data gsm8k, else none; with --eval-only, --data)")
    a("--output-dir", default=None, help="where log.jsonl, eval files and checkpoints go (default: out/)")
    a("--steps", type=int, default=200, help="training steps (one step = Layer 1 + Layer 2 on one batch)")
    a("--batch-size", type=int, default=8, help="questions per step (over all GPUs)")
    a("--G", type=int, default=8, help="Layer-1 samples per question (group size, >= 2)")
    a("--H", type=int, default=4, help="Layer-2 corrections per q' (group size, >= 2)")
    a("--lr", type=float, default=1e-6, help="AdamW learning rate (0 < lr <= 1)")
    a("--beta", type=float, default=0.04, help="KL weight; 0 skips loading the reference model")
    a("--clip-eps", type=float, default=0.2, help="PPO clip range ε: the ratio is clipped to [1-ε, 1+ε] (0 < ε < 1)")
    a("--clip-eps-high", type=float, default=None, help="upper clip range: [1-ε, 1+ε_high] (DAPO's clip-higher, "
      "0.28 in its paper; default: --clip-eps). Acts only with --mu > 1: with --mu 1 every ratio is 1")
    a("--mu", type=int, default=1, help="optimisation passes over the same rollouts")
    a("--loss-agg", default="seq-mean-token-mean", choices=["seq-mean-token-mean", "token-mean",
                                                            "seq-mean-token-sum-norm"],
      help="seq-mean-token-mean: the paper's 1/G Σ 1/|o_i| Σ_t; token-mean: one mean over all tokens (DAPO); "
      "seq-mean-token-sum-norm: 1/G Σ Σ_t / --max-new-tokens (Dr. GRPO)")
    a("--scale-rewards", default="group", choices=["group", "batch", "none"],
      help="advantage = (r - group mean) / std, std of the group (GRPO) or of the whole batch (Lite PPO); none: "
      "no division (Dr. GRPO)")
    a("--importance-sampling", default="token", choices=["token", "sequence"],
      help="token: one ratio per token (GRPO); sequence: one per sequence, exp of its mean token log-ratio "
      "(GSPO). Acts only with --mu > 1: with --mu 1 every ratio is 1")
    a("--mask-truncated", action="store_true",
      help="answers and corrections cut off at --max-new-tokens get no policy-gradient or KL term (DAPO's "
      "overlong filtering); l1_truncated and l2_truncated are logged either way")
    a("--max-new-tokens", type=int, default=512, help="generation length cap for answers and corrections")
    a("--temperature", type=float, default=1.0, help="sampling temperature for training rollouts (>= 0.01)")
    a("--layers", type=int, default=2, choices=[1, 2], help="2 = MGRPO, 1 = plain GRPO (the baseline)")
    a("--l2-inputs", default="incorrect", choices=["incorrect", "all"],
      help="which Layer-1 answers get a Layer-2 correction round")
    a("--l2-select", default="successful", choices=["successful", "all"],
      help="successful: train only on the successful corrections, correct with a positive advantage (the paper); "
      "all: on every correction, plain GRPO on q'")
    a("--l2-loss-norm", default="batch", choices=["batch", "trained"],
      help="Layer 2's N in J's 1/N: batch, Layer 1's B·G, the same every step (Dr. GRPO's constant normaliser, "
      "applied to Layer 2); trained, the corrections trained this step (varies from step to step)")
    a("--micro-tokens", type=int, default=16384,
      help="most tokens (prompt + completion, with padding) per forward/backward; gradients are accumulated")
    a("--gen-batch", type=int, default=256, help="most sequences per generate call")
    a("--grad-checkpointing", action=argparse.BooleanOptionalAction, default=True,
      help="recompute activations in backward: slower updates, a fraction of the memory (README)")
    a("--max-grad-norm", type=float, default=1.0, help="gradient-norm clipping threshold (0: no clipping, as in the "
      "HF Trainer); the log's grad_norm is the norm before clipping")
    a("--static-cache", default="auto", choices=["auto", "on", "off"],
      help="static KV cache + compiled decode for rollouts (auto: on for CUDA)")
    a("--eval-every", type=int, default=50, help="evaluate every K steps (0: only at the end)")
    a("--eval-only", action="store_true", help="no training: evaluate --model (t1 and t2) and exit")
    a("--eval-n", type=int, default=500, help="evaluate on the first N test problems (0: all)")
    a("--eval-samples", type=int, default=1, help="K answers per evaluation problem: 1 = greedy; K > 1 samples t1 K "
      "times, each with one sampled t2, and reports the means over samples and pass@K")
    a("--eval-temperature", type=float, default=None,
      help=f"sampling temperature of evaluation when --eval-samples > 1 (default {EVAL_TEMPERATURE}; >= 0.01)")
    a("--save-every", type=int, default=100, help="checkpoint every K steps (and always at the end; 0: only there)")
    a("--keep-last", type=int, default=0, help="keep only the newest N checkpoints (0: keep all; README: sizes)")
    a("--resume", default=None, help="checkpoint directory (or an output dir: its latest checkpoint); "
      "the run goes on with the checkpoint's settings")
    a("--seed", type=int, default=0, help="seeds data order, sampling and guide choice (0 to 2**32-1)")
    a("--device", default=None, help="cuda, cpu, cuda:1, ... (default: cuda if available)")

    def error(msg):      # one line and exit code 2, like every other bad input; a mistyped flag gets a hint
        if msg.startswith("unrecognized arguments:"):
            words = [w.split("=")[0] for w in msg.split(":", 1)[1].split() if w.startswith("--")]
            hints = [f"{w}: did you mean {m[0]}?" for w in words
                     if (m := [o for o in p._option_string_actions if o.lower() == w.lower()]        # --g: --G
                         or difflib.get_close_matches(w, p._option_string_actions, n=1))]
            msg += "".join(f" ({h})" for h in hints)
        die(msg)
    p.error = error
    return p


def die(msg, code=2, every_rank=False, label="error: "):
    """One line on stderr, then exit: code 2 for bad input, 1 for a failure, 128 + N for signal N.
    Every rank sees the same bad input, so rank 0 alone says so; a failure only one rank meets (out
    of memory) is said by that rank (every_rank=True)."""
    for bar in list(getattr(tqdm, "_instances", ())):   # close progress bars first: the error is the last line
        bar.close()
    if every_rank or rank() == 0:
        where = f"rank {rank()}: " if every_rank and world() > 1 else ""
        print(f"mgrpo: {label}{where}{msg}", file=sys.stderr)
    sys.exit(code)


# The range of every numeric flag (int or float) and the reason check_args gives for it; a test fails for an int or
# float flag of build_parser that is missing here.
RANGES = {
    "steps": ((">=", 1), "one step is Layer 1 and Layer 2 on one batch"),
    "batch_size": ((">=", 1), "questions per step"),
    "G": ((">=", 2), "a group of one has no advantage"),
    "H": ((">=", 2), "a group of one has no advantage"),
    "mu": ((">=", 1), "optimisation passes over the same rollouts"),
    "max_new_tokens": ((">=", 1), "the longest answer, in tokens"),
    "micro_tokens": ((">=", 1), "tokens per forward and backward pass"),
    "gen_batch": ((">=", 1), "sequences per generate call"),
    "eval_every": ((">=", 0), "0 evaluates only at the end"),
    "eval_n": ((">=", 0), "0 evaluates every problem"),
    "eval_samples": ((">=", 1), "1 is greedy evaluation"),
    "save_every": ((">=", 0), "0 saves only at the end"),
    "keep_last": ((">=", 0), "0 keeps every checkpoint"),
    "seed": ((">=", 0), ("<=", 2**32 - 1), "numpy's seed range; it seeds the data order"),
    "layers": ((">=", 1), ("<=", 2), "2 is MGRPO, 1 plain GRPO"),
    "lr": ((">", 0), ("<=", 1), "AdamW moves each weight by up to about lr per step (fine-tuning uses 1e-7 to 1e-3)"),
    "beta": ((">=", 0), "the KL penalty's weight; 0 turns it off"),
    "clip_eps": ((">", 0), ("<", 1), "the ratio is clipped to [1-ε, 1+ε], and with ε >= 1 the lower bound is <= 0, "
                 "below which no ratio goes (--clip-eps-high widens the upper side alone)"),
    "clip_eps_high": ((">", 0), "the upper clip bound 1+ε_high must be above 1"),
    "temperature": ((">=", 0.01), "rollouts are sampled from softmax(z / T): below 0.01 a group's G answers are "
                    "all the greedy one and carry no advantage, and the gradient of z / T grows as 1/T"),
    "eval_temperature": ((">=", 0.01), "below 0.01 every sample is the greedy answer (--eval-samples 1 is greedy)"),
    "max_grad_norm": ((">=", 0), "0 turns clipping off"),
}
COMPARE = {">": lambda v, x: v > x, ">=": lambda v, x: v >= x, "<": lambda v, x: v < x, "<=": lambda v, x: v <= x}


def check_args(args):
    """Every flag of a run that can be wrong on its own (a number out of its range, a device, the batch split
    over the ranks), checked before anything is downloaded or loaded: one line and exit code 2."""
    for action in build_parser()._actions:
        name, value = action.dest, getattr(args, action.dest, None)
        if action.type not in (int, float) or value is None or (name == "H" and args.layers == 1):
            continue                                   # a default of None (eval_temperature, ...): not given
        *bounds, why = RANGES.get(name, ("",))
        finite = action.type is int or math.isfinite(value)
        if not (finite and all(COMPARE[op](value, x) for op, x in bounds)):
            rule = "a finite number " * (action.type is float) + " and ".join(f"{op} {x}" for op, x in bounds)
            got = str(value) if len(str(value)) <= 24 else str(value)[:20] + "..."
            die(f"--{name.replace('_', '-')} must be {rule.strip()} (got {got}){': ' * bool(why)}{why}")
    if args.device:  # checked before any download or model load
        try:
            device = torch.device(args.device)
        except RuntimeError:
            die(f"--device: unknown device '{args.device}' (use cuda, cpu, cuda:1, ...)")
        if device.type == "cuda" and not torch.cuda.is_available():
            die(f"--device {args.device} given but no CUDA GPU is visible")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            die(f"--device {args.device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        if device.type == "mps" and not torch.backends.mps.is_available():
            die(f"--device {args.device} given but no Apple GPU (MPS) is available")
        if device.type not in ("cuda", "cpu", "mps"):
            die(f"--device {args.device}: mgrpo.py runs on cuda, cpu or mps")
    ranks = int(os.environ.get("WORLD_SIZE", 1))
    if args.batch_size % ranks:
        die(f"--batch-size {args.batch_size} does not split evenly over {ranks} processes")


def context_length(config):
    """The most positions the model attends to, from its config (max_position_embeddings, or GPT-2's
    n_positions, ...); None when the config does not say."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def check_context(args, train_set, eval_sets):
    """Refuse at start, before any model is loaded, a run whose longest sequence (longest_sequence) does not fit
    in the model's context: past it, learned positions (GPT-2) fail deep inside generate, in Layer 2, and rotary
    ones run on silently outside what the model was trained on. A model without a known context length is not
    refused. Returns the longest prompt in tokens (for static_cache_len)."""
    from transformers import AutoConfig, AutoTokenizer
    src = find_checkpoint(args.resume) if args.resume else args.model
    tk = Tokens(from_pretrained(AutoTokenizer, src))
    sets = [(train_set, args.layers)] if train_set else []
    sets += [(problems, 2) for problems in eval_sets.values() if problems]     # evaluation always asks for t2
    need = [(max(len(tk.prompt(p["question"])) for p in problems), layers) for problems, layers in sets]
    longest_prompt = max((p for p, _ in need), default=0)
    ctx = context_length(from_pretrained(AutoConfig, src))
    if ctx is None:
        return longest_prompt
    longest = max((longest_sequence(p, args.max_new_tokens, tk.guides, layers) for p, layers in need), default=0)
    if longest > ctx:
        # longest_sequence grows by `layers` tokens per added --max-new-tokens
        fits = min((ctx - longest_sequence(p, 0, tk.guides, layers)) // layers for p, layers in need)
        hint = f"--max-new-tokens {fits} is the largest that fits" if fits >= 1 else \
            "the longest prompt alone does not fit"
        die(f"the longest sequence this run builds is {longest} tokens (prompt + answer + guide + correction), "
            f"more than the model's context of {ctx}: {hint}")
    return longest_prompt


# Flags that steer a run without changing what it learns: a resumed run takes them from its command line.
RUN_CONTROL = {"steps", "device", "eval_data", "eval_every", "eval_only", "eval_n", "save_every", "keep_last",
               "micro_tokens", "gen_batch", "grad_checkpointing", "static_cache", "output_dir", "resume",
               "eval_samples", "eval_temperature"}


def given_flags(argv):
    """{dest: value} of the flags typed on the command line, without the parser's defaults."""
    p = build_parser()
    for action in p._actions:
        action.default = argparse.SUPPRESS
    return vars(p.parse_args(argv))


def resolve_resume(args, given):
    """--resume continues a run as it was: every flag not given comes from the checkpoint. Run-control
    flags given on the command line win. A changed learning setting (G, lr, β, data, ...) is refused:
    the run would no longer be the experiment its log and checkpoints describe."""
    if not os.path.isdir(args.resume):
        die(f"--resume: not a directory: {args.resume}")
    ckpt = find_checkpoint(args.resume)
    state = read_state(os.path.join(ckpt, "trainer_state.pt"))
    if not (isinstance(state, dict) and isinstance(state.get("args"), dict) and isinstance(state.get("step"), int)):
        die(f"--resume: {ckpt}/trainer_state.pt was not written by mgrpo.py (it has no step and flags)")
    if "world" not in state:
        die(f"--resume: {ckpt} was written by an older mgrpo.py that this one cannot continue; its weights "
            f"still start a new run: --model {ckpt}")
    saved = {**vars(args), **state["args"]}               # flags newer than the checkpoint keep their defaults
    for k in PATH_FLAGS:                 # relative to the folder the run started in: resumable from anywhere
        saved[k] = local_paths(saved[k], state.get("cwd", os.getcwd()))
    for k, v in given.items():
        if k not in RUN_CONTROL and (local_paths(v, os.getcwd()) if k in PATH_FLAGS else v) != saved[k]:
            die(f"--resume: --{k.replace('_', '-')} {v} differs from the checkpoint's {saved[k]}; a resumed run "
                f"keeps its learning settings (to change them, start a new run from its weights: --model {ckpt})")
        saved[k] = v
    saved["output_dir"] = given.get("output_dir") or os.path.dirname(os.path.abspath(ckpt))
    return argparse.Namespace(**saved), state, ckpt


PATH_FLAGS = ("model", "data", "eval_data")


def local_paths(value, base):
    """A path flag's value (a comma list for --eval-data) with each local file or folder as its real absolute path
    from `base`; Hub ids and the named datasets (gsm8k, ..., even beside a folder of that name) as they are."""
    if not isinstance(value, str):
        return value
    parts = [os.path.realpath(os.path.join(base, v)) if os.path.exists(os.path.join(base, v)) and
             v not in NAMED_SETS else v for v in value.split(",")]
    return ",".join(parts)


def read_state(path):
    """torch.load of a checkpoint's file, or one line (exit 2) saying it cannot be read: a copy cut short,
    a disk error."""
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:                      # pickle, zip and OS errors alike
        why = (str(e).splitlines() or [type(e).__name__])[0]
        why = why if len(why) <= 120 else why[:120] + " ..."
        die(f"--resume: cannot read {path} ({why}): the checkpoint is damaged; resume an older one, or copy it again")


def eval_set_specs(eval_spec):
    """{name: spec} of a comma list of evaluation sets, each named by its file name without .jsonl; two
    sets of one name (a/test.jsonl,b/test.jsonl) would write one file and log one entry: refused."""
    specs = {}
    for spec in filter(None, (s.strip() for s in (eval_spec or "").split(","))):
        name = os.path.basename(spec).removesuffix(".jsonl")
        if name in specs:
            die(f"--eval-data: {specs[name]} and {spec} are both named '{name}' (their log entry and file would "
                "be one): copy one to a file of another name")
        specs[name] = spec
    return specs


def check_fresh_output_dir(path, eval_only_names=None):
    """A fresh run never writes over another run's log, evaluations or checkpoints. An --eval-only run
    (eval_only_names: its sets) may write beside a training run, never over an earlier evaluation."""
    files = os.listdir(path) if os.path.isdir(path) else []
    if eval_only_names is not None:
        old = sorted(f for f in files if f in {f"eval_only-{name}.jsonl" for name in eval_only_names})
        if old:
            die(f"--output-dir {path} holds an earlier evaluation ({', '.join(old)}): choose a new --output-dir")
        return
    if "trainer_state.pt" in files:
        die(f"--output-dir {path} is a checkpoint of another run: choose a new --output-dir")
    old = sorted(f for f in files if f.startswith(("log.jsonl", "step-", "eval-", "eval_only-")))
    if old:
        go_on = f"continue it with --resume {path}, or " if checkpoints(path) else ""
        die(f"--output-dir {path} holds another run ({', '.join(old[:3])}{', ...' if len(old) > 3 else ''}): "
            f"{go_on}choose a new --output-dir")


def make_output_dir(path):
    """Create the output directory (and its parents) now, before anything is loaded, and prove that it takes a
    file: a run must not find out after a whole step that it cannot write (one line, exit 2). Returns the folders
    this call created, innermost first, for a run that fails before writing anything to remove (remove_empty)."""
    created, d = [], os.path.normpath(path)
    while d and not os.path.lexists(d):
        created.append(d)
        d = os.path.dirname(d)
    if d and not os.path.isdir(d):
        what = "a file, not a directory" if os.path.isfile(d) else "not a directory"
        where = f"{path} is {what}" if d == os.path.normpath(path) else f"{path}: its parent {d} is {what}"
        die(f"--output-dir {where}: choose another --output-dir")
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        remove_empty(created)
        die(f"--output-dir {path}: cannot write there ({e.strerror or type(e).__name__})")
    return created


def remove_empty(folders):
    """Remove each of folders (innermost first) while it is empty: what a run created and left unused."""
    for d in folders:
        if not os.path.isdir(d) or os.listdir(d):
            break
        os.rmdir(d)


def continue_here(args, ckpt, state):
    """A resumed run continues in args.output_dir. In the checkpoint's own directory it must be the latest
    checkpoint: resuming an older one would redo its later steps over a log and checkpoints that still
    hold them, so it is refused. In another directory (--output-dir) the new branch starts, once the model
    is loaded, with the log lines up to the checkpoint (run_main), and the directory must hold no other run."""
    step = state["step"]
    if is_branch(args, ckpt):
        check_fresh_output_dir(args.output_dir)
        return
    newer = [os.path.basename(c) for c in checkpoints(args.output_dir) if checkpoint_step(c) > step]
    if newer:
        die(f"--resume {ckpt}: {args.output_dir} holds later checkpoints ({', '.join(newer[:3])}"
            f"{', ...' if len(newer) > 3 else ''}) and their log lines, which going on from step {step} would "
            f"cut off: resume the latest (--resume {args.output_dir}), or branch off from step {step} into a "
            f"new directory (--resume {ckpt} --output-dir NEW_DIR)")


def is_branch(args, ckpt):
    """Whether a resumed run writes somewhere other than its checkpoint's own directory (links followed)."""
    return os.path.realpath(args.output_dir) != os.path.realpath(os.path.dirname(os.path.abspath(ckpt)))


def main(argv=None, reward=None):
    """The command line (argv: its arguments, default sys.argv[1:]); reward: a reward function to use instead
    of rule_reward (see cli). Returns the last step's log, or the metrics of --eval-only."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    state = ckpt = None
    if args.resume:
        args, state, ckpt = resolve_resume(args, given_flags(argv))
        if state["step"] >= args.steps and not args.eval_only:
            if is_main():
                print(f"mgrpo: {ckpt} is at step {state['step']}, which reaches --steps {args.steps}: nothing to do "
                      "(a larger --steps trains on)")
            return None
    elif not args.model:
        die("--model is required (a Hugging Face model id or a local directory)")
    check_args(args)
    args.output_dir = args.output_dir or "out"
    eval_spec = args.eval_data or (args.data if args.eval_only or args.data == "gsm8k" else None)
    eval_specs = eval_set_specs(eval_spec)
    if args.eval_only:
        check_fresh_output_dir(args.output_dir, eval_specs)
    elif not args.resume:
        check_fresh_output_dir(args.output_dir)
    else:
        continue_here(args, ckpt, state)
    created = make_output_dir(args.output_dir)
    try:
        return run_main(args, state, ckpt, eval_spec, eval_specs, reward)
    finally:
        if is_main():
            remove_empty(created)       # a run that failed before writing anything leaves no folder it made


def run_main(args, state, ckpt, eval_spec, eval_specs, reward):
    """main() once the input is checked: load, then evaluate (--eval-only) or train."""
    with ends_cleanly(args) as progress:
        init_distributed(args)
        random.seed(args.seed + rank())
        np.random.seed(args.seed + rank())
        torch.manual_seed(args.seed + rank())   # each rank samples its own rollouts
        rng = random.Random(args.seed + rank())  # guide choice

        train_set = None if args.eval_only else load_problems(args.data, "train")
        if eval_spec is None and is_main():
            print(f"mgrpo: no --eval-data given and {args.data} has no test split: training without evaluation")
        eval_sets = {name: load_problems(spec, "test")[: args.eval_n or None] for name, spec in eval_specs.items()}
        data = train_set and data_digest(train_set)
        if state and "reward" in state and (state["reward"] is None) != (reward_name(reward) is None):
            if state["reward"]:           # plain mgrpo.py would go on with the rule
                die(f"--resume: this run trained with your reward {state['reward']}, this command gives the rule "
                    f"reward; a resumed run keeps its reward: go on with the script that passed it (python "
                    f"{state['script']} --resume {args.resume})")
            die(f"--resume: this run trained with the rule reward, this command gives your reward "
                f"{reward_name(reward)}; a resumed run keeps its reward: to train on with yours, start from --model "
                f"{ckpt}")
        if data and state and state.get("data") and data != state["data"]:
            die(f"--resume: {args.data} is not the data this run trained on ({state['data']['problems']} problems "
                f"then, {data['problems']} now, or other contents): its data order would not go on; resume with "
                f"the file as it was, or start a new run from its weights: --model {ckpt}")
        sets = [(f"--data {args.data}", train_set)] if train_set else []
        sets += [(f"--eval-data {spec}", eval_sets[name]) for name, spec in eval_specs.items()]
        for flag, problems in sets if reward is None else []:    # a reward of your own reads golds its own way
            check_golds(flag, problems)
        longest_prompt = check_context(args, train_set, eval_sets)
        run = setup(args, reward)
        run.data = data
        if args.static_cache == "on" or (args.static_cache == "auto" and run.device.type == "cuda"):
            run.cache_len = static_cache_len(longest_prompt, args.max_new_tokens, run.tk.guides)

        if args.eval_only:
            m = evaluate_sets(run, eval_sets, args, "eval_only-{name}.jsonl")
            if is_main():
                print(json.dumps({"eval": m}))
            return m

        start = 0
        if state:
            start = state["step"]
            restore_checkpoint(run, rng, ckpt, state)
            if is_main():             # a branch starts with the source run's lines up to its checkpoint
                source = os.path.join(os.path.dirname(os.path.abspath(ckpt)), "log.jsonl")
                trim_log(os.path.join(args.output_dir, "log.jsonl"), start, source if is_branch(args, ckpt) else None)
        return train(run, train_set, eval_sets, args, rng, start, progress)


SCRIPT = "mgrpo.py"     # the script a stopped run's resume line names: as typed, or yours that passes a reward


def cli(argv=None, reward=None):
    """The command line as `python mgrpo.py` and `torchrun ... mgrpo.py` run it: main(), then the exit a
    torchrun rank needs (leave_distributed). mgrpo.cli(reward=my_reward) in a script of your own runs your
    reward (completion text, problem row) -> [0, 1] with every flag, under python or torchrun; it is passed,
    not put in rule_reward's place, so a reward that falls back to mgrpo.rule_reward reaches the rule."""
    global SCRIPT
    if argv is None:
        SCRIPT = sys.argv[0]
    code = 0
    try:
        main(argv, reward)
    except SystemExit as e:                        # die(): bad input 2, a failure 1, a stop 130 or 143
        code = e.code
    if dist.is_initialized():                      # torchrun, once the ranks have met: see leave_distributed
        leave_distributed(code)
    sys.exit(code)


if __name__ == "__main__":
    cli()
