"""Specification of mgrpo.py, verify.py (further down) and the toy task of examples/toy.py (at the end), on
tiny models built in code. Offline: nothing here may touch the network."""

import ast
import copy
import datetime
import errno
import functools
import glob
import importlib.util
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"   # the tests never touch the network

import mgrpo

HERE = os.path.dirname(os.path.abspath(__file__))       # the checkout
sys.path.insert(0, os.path.join(HERE, "examples"))
import toy  # noqa: E402  (examples/toy.py: the toy task and its tiny model builder)
from mgrpo import (build_correction_prompt, grpo_loss, group_advantages, select_corrections,
                   self_correction_metrics)

@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*a, **kw):
        raise AssertionError("a test tried to download something")
    monkeypatch.setattr(mgrpo.urllib.request, "urlopen", refuse)


# -----------------------------------------------------------------------------
# A tiny Qwen2 model and a byte-level BPE tokenizer with a chat template, built in code.


def make_tiny_model(path, seed=0):
    """A random-weight 2-layer Qwen2 (hidden 32) and a byte-level BPE tokenizer with a chat template."""
    corpus = [f"What is {a} + {b}? {mgrpo.INSTRUCTION} {mgrpo.GUIDES[a % 4]} \\boxed{{{a + b}}}"
              for a in range(10) for b in range(10)]
    return toy.build_tiny(path, seed=seed, hidden=32, vocab_size=300, corpus=corpus)


def write_jsonl(path, rows):
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(path)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return make_tiny_model(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    rows = [{"question": f"What is {a} + {b}?", "answer": f"{a} + {b} = {a + b}\n#### {a + b}"}
            for a in range(6) for b in range(6)]
    return write_jsonl(tmp_path_factory.mktemp("data") / "toy.jsonl", rows)


def run_args(**kw):
    a = mgrpo.build_parser().parse_args(["--model", "x"])
    a.__dict__.update(device="cpu", max_new_tokens=12, micro_tokens=64, G=4, H=2, batch_size=2)
    a.__dict__.update(kw)
    return a


def tiny_run(tiny, **kw):
    args = run_args(model=tiny, **kw)
    torch.manual_seed(0)
    return mgrpo.setup(args), args
# =============================================================================
# PART I: THE ALGORITHM, in the order of mgrpo.py's Part I: each function's worked examples
# =============================================================================

# -----------------------------------------------------------------------------
# The file reads as a reference: the docstring's equation map, the list that opens Part I, a test for every Part I function


def test_equation_map_names_part_one_functions_in_file_order():
    import inspect
    doc = mgrpo.__doc__
    table = doc[doc.index("Equations and the function"):doc.index("How to read it")]
    named = list(dict.fromkeys(re.findall(r"(\w+)\(\)", table)))      # in the map's order, each once
    source = inspect.getsource(mgrpo).splitlines()
    part_two = next(i for i, line in enumerate(source, 1) if line.startswith("# PART II"))
    lines = []
    for name in named:
        assert callable(getattr(mgrpo, name, None)), f"the map names {name}(), which mgrpo does not define"
        lines.append(inspect.getsourcelines(getattr(mgrpo, name))[1])
        assert lines[-1] < part_two, f"{name}() is in Part II, the map puts it in Part I"
    assert lines == sorted(lines), f"the map's order is not the file's: {named}"
    assert len(named) >= 12


def part_two_names_missing_from_the_preamble(source):
    """The Part II names (its functions, classes and constants), and the run.* and tk.* fields, that Part I
    of `source` uses but its opening list does not name."""
    import ast
    lines = source.splitlines()
    start = lines.index("# PART I: THE ALGORITHM")
    end = next(i for i, line in enumerate(lines) if line.startswith("# PART II"))
    preamble = "\n".join(line for line in lines[start + 2:] if line.startswith("#"))     # up to the first code
    preamble = preamble[:preamble.index("# ---")]
    part_two = set()
    for node in ast.parse("\n".join(lines[end:])).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            part_two.add(node.name)
        elif isinstance(node, ast.Assign):
            part_two.update(t.id for t in node.targets if isinstance(t, ast.Name))
    used, fields = set(), set()
    for node in ast.walk(ast.parse("\n".join(lines[start:end]))):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("run", "tk"):
            fields.add(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Attribute) and ast.unparse(node.value) == "run.tk":
            fields.add(f"tk.{node.attr}")
    missing = [n for n in sorted(used & part_two) if not re.search(rf"\b{n}\b", preamble)]
    return missing + [f for f in sorted(fields) if f not in preamble]


def test_part_one_opens_with_every_part_two_name_it_uses():
    import inspect
    source = inspect.getsource(mgrpo)
    assert part_two_names_missing_from_the_preamble(source) == []
    # and the check sees a new use: Part I calling a Part II function, or reading a field, it does not list
    planted = source.replace("    return step_log(run, l1, l2, args)",
                             "    tensor_bytes(run.scratch)\n    return step_log(run, l1, l2, args)")
    assert planted != source and part_two_names_missing_from_the_preamble(planted) == ["tensor_bytes", "run.scratch"]


def test_every_part_one_function_has_a_test_that_names_it_before_the_engine_room():
    # Each function of mgrpo.py's Part I appears in the name of a test of this file's Part I, and no test of
    # the engine room below names one: the specification reads in Part I's order, its worked examples first.
    import inspect
    source = inspect.getsource(mgrpo).splitlines()
    start, end = source.index("# PART I: THE ALGORITHM"), next(i for i, x in enumerate(source) if x.startswith("# PART II"))
    functions = [n.name for n in ast.parse("\n".join(source[start:end])).body if isinstance(n, ast.FunctionDef)]
    mine = open(__file__, encoding="utf-8").read().splitlines()
    engine_room = next(i for i, line in enumerate(mine) if line.startswith("# PART II"))
    tests = [(i, m.group(1)) for i, line in enumerate(mine) if (m := re.match(r"def (test_\w+)\(", line))]

    def named(test):
        return [f for f in functions if f"_{f}_" in f"_{test}_"]
    assert len(functions) >= 20 and [f for f in functions if not any(f in named(t) for _, t in tests)] == []
    assert [t for i, t in tests if i > engine_room and named(t)] == []


# -----------------------------------------------------------------------------
# group_advantages (--scale-rewards: GRPO, Lite PPO, Dr. GRPO)


def test_group_advantages_hand_computed():
    A = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]]), eps=0.0)
    s3 = math.sqrt(3)
    # group 1: mean 1/4, population std sqrt(3)/4 -> (3/4)/(sqrt3/4) = sqrt3 and -(1/4)/(sqrt3/4) = -1/sqrt3
    assert torch.allclose(A[0], torch.tensor([s3, -1 / s3, -1 / s3, -1 / s3]), atol=1e-6)
    assert torch.allclose(A[1], torch.tensor([1.0, -1.0, 1.0, -1.0]), atol=1e-6)


def test_advantages_eps_in_denominator():
    A = group_advantages(torch.tensor([[1.0, 0.0]]), eps=0.5)   # mean .5, std .5 -> ±.5/1.0
    assert A.tolist() == [[0.5, -0.5]]


def test_advantages_all_equal_group_is_exactly_zero():
    A = group_advantages(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    assert not torch.isnan(A).any()
    assert (A == 0).all()


def test_advantages_keep_shape_and_groups_are_independent():
    r = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    A = group_advantages(r)
    assert A.shape == r.shape
    assert torch.allclose(A[0], A[3][[1, 0, 2]])    # same rewards permuted -> same advantages permuted
    assert torch.allclose(A.sum(-1), torch.zeros(4), atol=1e-6)


R2 = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0]])      # two groups; 4 of the 8 rewards are 1


def test_scale_group_divides_by_each_groups_std():
    # group means 1/4 and 3/4, both population stds √3/4
    s = math.sqrt(3)
    expected = torch.tensor([[s, -1 / s, -1 / s, -1 / s], [1 / s, 1 / s, -s, 1 / s]])
    assert torch.allclose(group_advantages(R2, eps=0.0, scale="group"), expected, atol=1e-6)
    assert torch.equal(group_advantages(R2), group_advantages(R2, scale="group"))     # the default


def test_scale_batch_divides_by_the_std_of_every_reward():
    # batch mean 1/2, population std 1/2: (r - group mean) / (1/2)
    expected = torch.tensor([[1.5, -0.5, -0.5, -0.5], [0.5, 0.5, -1.5, 0.5]])
    assert torch.equal(group_advantages(R2, eps=0.0, scale="batch"), expected)
    assert mgrpo.std_over_ranks(R2) == 0.5
    assert torch.equal(group_advantages(R2, eps=0.0, scale="batch", batch_std=0.25), 2 * expected)


def test_scale_none_only_subtracts_the_group_mean():
    expected = torch.tensor([[0.75, -0.25, -0.25, -0.25], [0.25, 0.25, -0.75, 0.25]])
    assert torch.equal(group_advantages(R2, scale="none"), expected)
    with pytest.raises(ValueError):
        group_advantages(R2, scale="std")


@pytest.mark.parametrize("scale", ["none", "batch"])
def test_scale_rewards_reaches_both_layers(tiny, monkeypatch, scale):
    (run, args) = tiny_run(tiny, G=2, H=2, beta=0.0, scale_rewards=scale)
    fake_rollouts(monkeypatch, run, [[40, 1], [20, 1]], [[20, 1], [40, 1]])      # one right of 2 in each layer
    updates = []
    monkeypatch.setattr(mgrpo, "policy_update", no_update(updates))
    mgrpo.train_step(run, [{"question": "q", "gold": "1"}], args, random.Random(0))
    # rewards [0, 1] in each layer: group mean 1/2, and the batch std is 1/2
    expected = [-0.5, 0.5] if scale == "none" else [-0.5 / (0.5 + 1e-4), 0.5 / (0.5 + 1e-4)]
    assert updates[0][1] == pytest.approx(expected, abs=1e-6)                # Layer 1: both answers
    assert updates[1][1] == pytest.approx(expected[1:], abs=1e-6)            # Layer 2: the right correction


# -----------------------------------------------------------------------------
# is_correct and select_corrections


def test_is_correct_means_the_reward_reaches_CORRECT(monkeypatch):
    r = torch.tensor([0.0, 0.5, 0.999, 1.0])
    assert mgrpo.is_correct(r).tolist() == [False, False, False, True]        # full marks only
    monkeypatch.setattr(mgrpo, "CORRECT", 0.5)                                # a graded reward: half marks solve
    assert mgrpo.is_correct(r).tolist() == [False, True, True, True]


def test_select_corrections_trains_correct_corrections_with_positive_advantage():
    r = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    # the all-success group has advantage 0 everywhere: nothing in it is pushed up
    assert select_corrections(r, group_advantages(r), "successful").tolist() == [[True, False, True, False],
                                                                                [False, False, False, False],
                                                                                [False, False, False, False]]


def test_select_successful_never_trains_a_correct_answer_below_its_group_mean(monkeypatch):
    # graded rewards with CORRECT lowered to 0.5: 0.6 is correct but below the mean 0.7, so A < 0
    monkeypatch.setattr(mgrpo, "CORRECT", 0.5)
    r = torch.tensor([[0.6, 0.8]])
    assert select_corrections(r, group_advantages(r), "successful").tolist() == [[False, True]]


def test_select_all_keeps_everything():
    r = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert select_corrections(r, group_advantages(r), "all").tolist() == [[True, True], [True, True]]


def test_select_unknown_mode_raises():
    with pytest.raises(ValueError):
        select_corrections(torch.zeros(1, 2), torch.zeros(1, 2), "best")


def test_select_successful_skips_truncated_corrections_when_given():
    r = torch.tensor([[1.0, 1.0, 0.0]])
    cut = torch.tensor([[True, False, False]])
    assert select_corrections(r, group_advantages(r), "successful", cut).tolist() == [[False, True, False]]


# -----------------------------------------------------------------------------
# grpo_loss, and its variants (--loss-agg, --clip-eps-high, --importance-sampling)


def loop_loss(logp, old, ref, adv, mask, eps, beta, agg, max_new_tokens=None):
    """The objective written as plain per-token Python loops over Python floats, for comparison."""
    logp, old, ref, adv, mask = (x.tolist() for x in (logp, old, ref, adv, mask))
    seq_terms, seq_lens, tok_sum, tok_n = [], [], 0.0, 0
    for i in range(len(logp)):
        s, n = 0.0, 0
        for t in range(len(logp[i])):
            if not mask[i][t]:
                continue
            rho = math.exp(logp[i][t] - old[i][t])
            a = adv[i]
            surr = min(rho * a, min(max(rho, 1 - eps), 1 + eps) * a)
            kl = math.exp(ref[i][t] - logp[i][t]) - (ref[i][t] - logp[i][t]) - 1
            s += surr - beta * kl
            n += 1
        seq_terms.append(s / max(n, 1))
        seq_lens.append(n)
        tok_sum, tok_n = tok_sum + s, tok_n + n
    if agg == "seq-mean-token-sum-norm":       # token sums over a constant, not over |o_i|
        seq_terms = [s * max(n, 1) / max_new_tokens for s, n in zip(seq_terms, seq_lens)]
    J = tok_sum / tok_n if agg == "token-mean" else sum(seq_terms) / len(seq_terms)
    return -J


@pytest.mark.parametrize("agg", ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"])
def test_grpo_loss_equals_per_token_loop(agg):
    g = torch.Generator().manual_seed(1)
    n, T = 5, 7
    logp = -torch.rand(n, T, generator=g, dtype=torch.float64) * 3
    old = logp + 0.4 * torch.randn(n, T, generator=g, dtype=torch.float64)   # ratios on both sides of the clip
    ref = logp + 0.3 * torch.randn(n, T, generator=g, dtype=torch.float64)
    adv = torch.randn(n, generator=g, dtype=torch.float64)
    mask = torch.ones(n, T, dtype=torch.bool)
    for i, L in enumerate([7, 3, 1, 5, 6]):
        mask[i, L:] = False
    loss, _ = grpo_loss(logp, old, ref, adv, mask, 0.2, 0.04, agg, max_new_tokens=T)
    expected = loop_loss(logp, old, ref, adv, mask, 0.2, 0.04, agg, max_new_tokens=T)
    assert type(expected) is float and loss.item() == pytest.approx(expected, rel=1e-12)


def test_gradient_at_ratio_one_is_minus_adv_over_G_len():
    # ρ = 1 (old = logp detached), β = 0: d(loss)/d(logp_{i,t}) = -A_i / (G |o_i|) on real tokens.
    G, T = 4, 5
    lengths = [4, 2, 1, 2]          # powers of two, so the expected values are exact in binary
    adv = torch.tensor([1.5, -0.5, 0.25, -1.25], dtype=torch.float64)
    mask = torch.tensor([[t < L for t in range(T)] for L in lengths])
    logp = (-torch.rand(G, T, dtype=torch.float64)).requires_grad_()
    loss, _ = grpo_loss(logp, logp.detach(), None, adv, mask, 0.2, 0.0, "seq-mean-token-mean")
    loss.backward()
    expected = torch.zeros(G, T, dtype=torch.float64)
    for i, L in enumerate(lengths):
        expected[i, :L] = -adv[i] / (G * L)
    assert torch.equal(logp.grad, expected)
    assert logp.grad[0, 0] < 0       # positive advantage: minimising the loss raises the log-prob


def test_gradient_token_mean_is_minus_adv_over_total_tokens():
    adv = torch.tensor([2.0, -1.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    logp = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    loss, _ = grpo_loss(logp, logp.detach(), None, adv, mask, 0.2, 0.0, "token-mean")
    loss.backward()
    assert logp.grad.tolist() == [[-0.5, -0.5, -0.5], [0.25, 0.0, 0.0]]


@pytest.mark.parametrize("delta,adv,clipped", [(0.5, 1.0, True), (-0.5, -1.0, True),
                                               (0.5, -1.0, False), (-0.5, 1.0, False)])
def test_clipping_zeroes_gradient_only_on_the_side_it_should(delta, adv, clipped):
    # ρ = e^{±0.5} is outside [0.8, 1.2]. Clipped when the move already went the advantage's way.
    old = torch.zeros(1, 1, dtype=torch.float64)
    logp = torch.full((1, 1), delta, dtype=torch.float64, requires_grad=True)
    loss, stats = grpo_loss(logp, old, None, torch.tensor([adv], dtype=torch.float64),
                            torch.ones(1, 1, dtype=torch.bool), 0.2, 0.0, "seq-mean-token-mean")
    loss.backward()
    if clipped:
        assert logp.grad.item() == 0.0 and stats["clip_frac"].item() == 1.0
    else:
        assert logp.grad.item() == pytest.approx(-adv * math.exp(delta)) and stats["clip_frac"].item() == 0.0


@pytest.mark.parametrize("ratio,adv,clipped", [(1.19, 1.0, False), (1.21, 1.0, True), (0.81, -1.0, False),
                                               (0.79, -1.0, True), (1.21, -1.0, False), (0.79, 1.0, False)])
def test_clip_bounds_are_exactly_one_minus_and_plus_eps(ratio, adv, clipped):
    # ratios just inside and just outside [1 - ε, 1 + ε] = [0.8, 1.2]
    logp = torch.full((1, 1), math.log(ratio), dtype=torch.float64, requires_grad=True)
    loss, stats = grpo_loss(logp, torch.zeros(1, 1, dtype=torch.float64), None, torch.tensor([adv], dtype=torch.float64),
                            torch.ones(1, 1, dtype=torch.bool), 0.2, 0.0, "seq-mean-token-mean")
    loss.backward()
    assert loss.item() == pytest.approx(-min(ratio * adv, min(max(ratio, 0.8), 1.2) * adv), rel=1e-12)
    assert logp.grad.item() == pytest.approx(0.0 if clipped else -adv * ratio, rel=1e-12)
    assert stats["clip_frac"].item() == float(clipped)


def test_k3_kl_is_zero_at_reference_and_positive_elsewhere():
    logp = torch.tensor([[-1.0, -2.0, -0.5]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    adv = torch.zeros(1)
    loss, stats = grpo_loss(logp, logp, logp.clone(), adv, mask, 0.2, 0.1, "seq-mean-token-mean")
    assert stats["kl"].item() == 0.0 and loss.item() == 0.0
    ref = logp + torch.tensor([[0.3, -0.2, 1.0]])
    loss, stats = grpo_loss(logp, logp, ref, adv, mask, 0.2, 0.1, "seq-mean-token-mean")
    d = torch.tensor([0.3, -0.2, 1.0])
    k3 = (d.exp() - d - 1).mean().item()
    assert stats["kl"].item() == pytest.approx(k3) and k3 > 0
    assert loss.item() == pytest.approx(0.1 * k3)     # the penalty raises the loss


@pytest.mark.parametrize("agg", ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"])
def test_padded_tokens_contribute_nothing(agg):
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]], requires_grad=True)
    old = torch.tensor([[-1.1, -1.9, 0.0], [-0.4, 0.0, 0.0]])
    ref = torch.tensor([[-1.2, -2.1, 0.0], [-0.6, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -1.0])
    base, st = grpo_loss(logp, old, ref, adv, mask, 0.2, 0.04, agg, max_new_tokens=3)
    garbage_old, garbage_ref = old.clone(), ref.clone()
    garbage_old[~mask], garbage_ref[~mask] = -float("inf"), 50.0     # padding may hold anything
    loss, st2 = grpo_loss(logp, garbage_old, garbage_ref, adv, mask, 0.2, 0.04, agg, max_new_tokens=3)
    loss.backward()
    assert loss.item() == base.item() and all(st[k].item() == st2[k].item() for k in st)
    assert (logp.grad[~mask] == 0).all() and torch.isfinite(logp.grad).all()


def test_seq_mean_token_sum_norm_divides_each_sequence_by_the_constant():
    # ρ = 1, β = 0, max_new_tokens 4: J = 1/2 (3·1 / 4 + 1·(-2) / 4) = 1/8, and d(-J)/d(logp_i,t) = -A_i / (2·4)
    logp = torch.zeros(2, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -2.0], dtype=torch.float64)
    loss, _ = grpo_loss(logp, logp.detach(), None, adv, mask, 0.2, 0.0, "seq-mean-token-sum-norm", max_new_tokens=4)
    loss.backward()
    assert loss.item() == -0.125
    assert logp.grad.tolist() == [[-0.125, -0.125, -0.125, 0.0], [0.25, 0.0, 0.0, 0.0]]


def test_clip_higher_clips_the_ratio_to_its_own_upper_bound():
    # ε = 0.2, ε_high = 0.28. Sequence 0 (A = +1): ρ = 1.5 is clipped to 1.28, ρ = 1.25 is inside the new
    # bound (ε alone would clip it to 1.2), ρ = 0.5 is not clipped (min keeps 0.5). Sequence 1 (A = -1):
    # ρ = 0.5 is clipped to 0.8 (term -0.8), ρ = 1.5 is not (min keeps -1.5). token-mean of the 5 terms:
    # (1.28 + 1.25 + 0.5 - 0.8 - 1.5) / 5 = 0.146; 2 of 5 tokens clipped.
    ratios = torch.tensor([[1.5, 1.25, 0.5], [0.5, 1.5, 1.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    old = torch.zeros(2, 3, dtype=torch.float64)
    loss, st = grpo_loss(ratios.log(), old, None, adv, mask, 0.2, 0.0, "token-mean", clip_eps_high=0.28)
    assert loss.item() == pytest.approx(-0.146, abs=1e-12) and st["clip_frac"].item() == pytest.approx(0.4)
    loss, st = grpo_loss(ratios.log(), old, None, adv, mask, 0.2, 0.0, "token-mean")       # symmetric: 1.25 -> 1.2
    assert loss.item() == pytest.approx(-(1.2 + 1.2 + 0.5 - 0.8 - 1.5) / 5, abs=1e-12)
    assert st["clip_frac"].item() == pytest.approx(0.6)


def test_sequence_level_ratio_is_the_geometric_mean_of_its_tokens():
    # GSPO: s = exp(mean over real tokens of log ρ) = exp((0.1 + 0.3) / 2) = exp(0.2), the same for each
    # token; padding (which may hold anything) takes no part. J = s·A, d(-J)/d(logp_t) = -s·A / |o| per token.
    logp = torch.tensor([[0.1, 0.3, 0.0]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[0.0, 0.0, -float("inf")]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0], dtype=torch.float64)
    loss, st = grpo_loss(logp, old, None, adv, mask, 0.5, 0.0, "seq-mean-token-mean", importance_sampling="sequence")
    loss.backward()
    s = math.exp(0.2)
    assert loss.item() == pytest.approx(-s, rel=1e-12) and st["clip_frac"].item() == 0.0
    assert logp.grad[0].tolist() == pytest.approx([-s / 2, -s / 2, 0.0], rel=1e-12)
    # clipped as a whole: with ε = 0.1 the ratio exp(0.2) = 1.22 > 1.1 counts for both tokens and J = 1.1
    loss, st = grpo_loss(logp, old, None, adv, mask, 0.1, 0.0, "seq-mean-token-mean", importance_sampling="sequence")
    assert loss.item() == pytest.approx(-1.1) and st["clip_frac"].item() == 1.0
    with pytest.raises(ValueError):
        grpo_loss(logp, old, None, adv, mask, 0.1, 0.0, "seq-mean-token-mean", importance_sampling="group")


# -----------------------------------------------------------------------------
# micro_batch_weight: J's 1/N over micro-batches (and --mask-truncated's excluded completions)


@pytest.mark.parametrize("agg", ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"])
def test_micro_batch_weight_makes_micro_batches_one_update(tiny, agg):
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12, 13], [14], [15, 16]]
    comps = [[20, 21], [22, 23, 24, 25], [26], [27, 28, 29], [30, 31, 32, 33, 34]]
    adv = torch.tensor([1.0, -0.5, 0.7, -1.2, 0.3])
    weights = []
    # lengths 5, 6, 5, 4, 7: a budget of 1000 tokens is one micro-batch, 12 makes [[4], [1, 0], [2, 3]]
    assert len(mgrpo.micro_batches([len(p) + len(c) for p, c in zip(prompts, comps)], 12)) == 3
    for budget in (1000, 12):
        (run, args) = tiny_run(tiny, beta=0.04, micro_tokens=budget, loss_agg=agg, max_grad_norm=1e9)
        run.ref = mgrpo.load_model(tiny, run.device, torch.float32).requires_grad_(False)
        with torch.no_grad():                        # move the reference so the KL term has a gradient
            for p in run.ref.parameters():
                p.mul_(0.9)
        # SGD with lr 1 turns the accumulated gradient into the weight change (Adam would hide it)
        run.opt = torch.optim.SGD(run.policy.parameters(), lr=1.0)
        before = torch.cat([p.detach().flatten() for p in run.policy.parameters()])
        mgrpo.policy_update(run, prompts, comps, adv, args)
        weights.append(torch.cat([p.detach().flatten() for p in run.policy.parameters()]) - before)
    assert weights[0].abs().max() > 1e-3
    assert torch.allclose(weights[0], weights[1], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("budget", [1, 14, 10_000])       # each sequence alone; the cut one beside a kept one; one
@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_masked_completions_give_the_same_update_however_the_micro_batches_fall(tiny, agg, budget):
    # --mask-truncated: J's N counts a masked completion (its tokens, for token-mean, do not). Summed over
    # micro-batches, the gradient of [ok1, cut, ok2] with `cut` masked is that of [ok1, ok2] in one micro-batch,
    # times the share of N they keep: 1 for token-mean, 2/3 for the two means over sequences. A token count
    # taken per micro-batch instead of over the layer only shows when `cut` sits in another micro-batch.
    prompts, comps = [[5, 6], [7, 8], [9, 10]], [[20, 21, 22], [23, 24, 25, 26, 27], [28, 29]]
    adv = torch.tensor([0.8, -1.3, -0.4])
    grads = []
    for keep, excluded, micro in (([0, 1, 2], [False, True, False], budget), ([0, 2], None, 10_000)):
        # --max-grad-norm 0: the gradient as accumulated, unclipped, seen where AdamW would take it
        (run, args) = tiny_run(tiny, beta=0.04, loss_agg=agg, mask_truncated=True, micro_tokens=micro, max_grad_norm=0)
        run.opt.step = lambda *a, run=run, **kw: grads.append([p.grad.clone() for p in run.policy.parameters()])
        run.ref = mgrpo.load_model(tiny, run.device, torch.float32).requires_grad_(False)
        with torch.no_grad():
            for q in run.ref.parameters():
                q.mul_(0.9)
        plan = mgrpo.plan_micro_batches(run, [prompts[i] for i in keep], [comps[i] for i in keep], adv[keep], args,
                                        excluded)[0]
        if excluded and budget == 14:
            assert [mb.comp.shape[0] for mb in plan] == [2, 1]                     # [cut, ok1], [ok2]
        mgrpo.policy_update(run, [prompts[i] for i in keep], [comps[i] for i in keep], adv[keep], args, excluded)
    share = 1.0 if agg == "token-mean" else 2 / 3
    assert max(g.abs().max().item() for g in grads[1]) > 1e-4
    for a, b in zip(grads[0], grads[1]):          # float32 on rows padded differently: rounding only
        assert torch.allclose(a, share * b, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("agg", ["seq-mean-token-mean", "token-mean"])
def test_a_masked_truncated_completion_contributes_exactly_zero_gradient(tiny, monkeypatch, agg):
    # The gradient of [ok, cut] with `cut` masked equals that of [ok] alone, times the share of J's
    # 1/G that `ok` keeps: 1/2 for the mean over sequences (the masked one still counts in G), 1 for
    # token-mean (its tokens do not count). KL on (β > 0), so the KL term of `cut` must vanish too.
    prompts, comps, adv = [[5, 6], [7, 8, 9]], [[20, 21, 22], [23, 24, 25, 26]], torch.tensor([0.8, -1.3])
    grads = []
    guard = mgrpo.guard_non_finite              # called between the backward passes and the optimizer step
    monkeypatch.setattr(mgrpo, "guard_non_finite", lambda run, norm, loss: grads.append(
        [p.grad.clone() for p in run.policy.parameters()]) or guard(run, norm, loss))
    for keep, excluded in ((slice(0, 2), [False, True]), (slice(0, 1), None)):
        # --max-grad-norm 0: no clipping, so the two gradients compare as they are
        (run, args) = tiny_run(tiny, beta=0.04, loss_agg=agg, mask_truncated=True, max_grad_norm=0.0)
        run.ref = mgrpo.load_model(tiny, run.device, torch.float32).requires_grad_(False)
        with torch.no_grad():
            for q in run.ref.parameters():
                q.mul_(0.9)
        mgrpo.policy_update(run, prompts[keep], comps[keep], adv[keep], args, excluded=excluded)
    share = 0.5 if agg == "seq-mean-token-mean" else 1.0
    assert max(g.abs().max().item() for g in grads[1]) > 1e-4
    for a, b in zip(grads[0], grads[1]):          # float32 on rows padded differently: rounding only
        assert torch.allclose(a, share * b, rtol=1e-4, atol=1e-7)


# -----------------------------------------------------------------------------
# Prompts: layer1_prompt, GUIDES, build_correction_prompt


def test_layer1_prompt_is_the_templates_generation_prompt_with_the_instruction(tiny):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny)
    assert mgrpo.layer1_prompt(tok, " What is 2 + 3? ") == (
        "<|im_start|>user\nWhat is 2 + 3?\n" + mgrpo.INSTRUCTION + "<|im_end|>\n<|im_start|>assistant\n")
    tok.chat_template = None                                                  # a base model's tokenizer
    assert mgrpo.layer1_prompt(tok, "What is 2 + 3?") == "Question: What is 2 + 3?\n" + mgrpo.INSTRUCTION + "\nAnswer: "


def test_build_correction_prompt_is_prompt_then_answer_then_guide():
    assert build_correction_prompt([1, 2], [3, 4, 5], [6]) == [1, 2, 3, 4, 5, 6]
    assert build_correction_prompt("q ", "o ", "g") == "q o g"


def test_correction_prompt_matches_the_chat_template_of_a_second_user_turn(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny)
    tk = mgrpo.Tokens(tok, AutoModelForCausalLM.from_pretrained(tiny))
    q, o = "What is 2 + 3?", "2 + 3 = \\boxed{5}"
    o_ids = tok.encode(o, add_special_tokens=False) + [tok.eos_token_id]   # as sampled, with EOS
    ids = build_correction_prompt(tk.prompt(q), tk.strip_stop(o_ids), tk.guides[0])
    expected = tok.apply_chat_template(
        [{"role": "user", "content": q + "\n" + mgrpo.INSTRUCTION}, {"role": "assistant", "content": o},
         {"role": "user", "content": mgrpo.GUIDES[0]}], tokenize=False, add_generation_prompt=True)
    assert tok.decode(ids) == expected
    assert tok.convert_tokens_to_ids("<|im_end|>") in tk.stop


def test_guides_are_at_least_four_and_ask_for_boxed():
    assert len(mgrpo.GUIDES) >= 4 and len(set(mgrpo.GUIDES)) == len(mgrpo.GUIDES)
    assert all("\\boxed{}" in g for g in mgrpo.GUIDES)


# -----------------------------------------------------------------------------
# Rewards: rule_reward, score, is_truncated, and the reward contract


def test_rule_reward_is_the_checker_against_the_rows_gold():
    row = {"question": "What is 2 + 3?", "gold": "5", "source": "anything else a row holds"}
    assert mgrpo.rule_reward("2 + 3 = 5, so the answer is \\boxed{5}.", row) == 1.0
    assert mgrpo.rule_reward("\\boxed{6}", row) == 0.0 and mgrpo.rule_reward("\\boxed{5}", {**row, "gold": "6"}) == 0.0


@pytest.mark.parametrize("bad", [1.5, -0.25, float("nan"), None, "1"])
def test_score_stops_the_run_in_one_line_for_a_reward_outside_zero_one(bad, tiny, monkeypatch, capsys):
    (run, args) = tiny_run(tiny, G=2, H=2)
    fake_rollouts(monkeypatch, run, [[40, 41]] * 2, [])
    run.reward = lambda text, problem: bad
    with pytest.raises(SystemExit) as e:
        mgrpo.train_step(run, [{"question": "What is 1 + 1?", "gold": "2"}], args, random.Random(0))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "[0, 1]" in err and repr(bad) in err


def test_a_reward_of_your_own_sees_every_field_of_the_row(tiny, tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "own.jsonl", [{"question": "What is 1 + 1?", "answer": "2", "tests": ["a", "b"]},
                                                {"problem": "What is 2 + 2?", "solution": "\\boxed{4}", "tests": []}])
    problems = mgrpo.load_problems(data, "train")
    assert problems[0] == {"question": "What is 1 + 1?", "answer": "2", "tests": ["a", "b"], "gold": "2"}
    assert problems[1]["question"] == "What is 2 + 2?" and problems[1]["gold"] == "4" and problems[1]["tests"] == []
    (run, args) = tiny_run(tiny, G=2, H=2, layers=1)
    fake_rollouts(monkeypatch, run, [[40, 41]] * 4, [])
    seen = []
    run.reward = lambda text, problem: seen.append(problem["tests"]) or 0.0
    mgrpo.train_step(run, problems, args, random.Random(0))
    assert seen == [["a", "b"]] * 2 + [[]] * 2


def test_is_truncated_means_cut_at_the_cap_without_a_stop_token():
    stop = [1]
    assert mgrpo.is_truncated([[5, 6, 7], [5, 6, 1], [5, 1], [5, 6], []], stop, 3).tolist() == \
        [True, False, False, False, False]


# -----------------------------------------------------------------------------
# One training step: train_step, grpo_layer, correction_layer, policy_update


def fake_rollouts(monkeypatch, run, layer1, layer2):
    """generate returns the given completions (Layer 1 on the first call, Layer 2 on the second) and
    reward is 1 for a completion whose first token is 20. Records every generate call's prompts."""
    calls = []

    def generate(model, prompts, n, tk, *a, **kw):
        calls.append(prompts)
        return [list(c) for c in (layer1 if len(calls) == 1 else layer2)]

    monkeypatch.setattr(mgrpo, "generate", generate)
    monkeypatch.setattr(mgrpo, "reward", lambda text, gold, question=None: float(text == "right"))
    run.tk.text = lambda ids: "right" if ids[0] == 20 else "wrong"
    return calls


def no_update(updates):
    """A stand-in for policy_update that records (completions, advantages) and trains nothing."""
    return lambda run, prompts, comps, adv, args, excluded=None, N=None: updates.append((comps, adv.tolist())) or \
        {"kl": 0.0, "clip_frac": 0.0, "grad_norm": 0.0, "loss": 0.0, "skipped": 0, "pad_frac": 0.0, "N": (1, 1)}


def test_train_step_runs_grpo_layer_then_correction_layer_and_changes_weights(tiny, toy_data, monkeypatch):
    # A random model never answers correctly, so grade by a rule it can satisfy: odd completion length.
    monkeypatch.setattr(mgrpo, "reward", lambda text, gold, question=None: float(len(text) % 2))
    (run, args) = tiny_run(tiny, G=4, H=4, l2_inputs="all")
    run.ref = mgrpo.load_model(tiny, run.device, torch.float32).requires_grad_(False)
    batch = mgrpo.load_problems(toy_data, "train")[:3]
    before = [p.detach().clone() for p in run.policy.parameters()]
    import random
    log = mgrpo.train_step(run, batch, args, random.Random(0))
    assert log["l1_tokens"] > 0 and log["l2_groups"] == 12 and log["l2_tokens"] > 0
    assert 0 <= log["l1_pad_frac"] < 1 and 0 <= log["l2_pad_frac"] < 1
    assert 0 < log["l2_samples_kept"] <= 48 and log["l2_groups_kept"] <= 12 and "l2_loss" in log
    assert any((p != b).any() for p, b in zip(run.policy.parameters(), before))


def test_every_step_logs_the_same_keys_whether_or_not_layer_2_had_anything_to_do(tiny, monkeypatch):
    (run, args) = tiny_run(tiny, G=2, H=2, beta=0.0)
    problems = [{"question": "q", "gold": "1"}]
    logs = []
    for layer1, layer2 in [([[20, 1]] * 2, []),                         # both answers right: no q'
                           ([[40, 1]] * 2, [[40, 1]] * 4),              # two q', no correction right
                           ([[40, 1]] * 2, [[20, 1], [40, 1]] * 2)]:    # two q', one right in each: trains
        fake_rollouts(monkeypatch, run, layer1, layer2)
        logs.append(mgrpo.train_step(run, problems, args, random.Random(0)))
    assert logs[0]["l2_groups"] == 0 and logs[1]["l2_samples_trained"] == 0 and logs[2]["l2_samples_trained"] == 2
    assert list(logs[0]) == list(logs[1]) == list(logs[2])
    assert logs[0]["l2_reward"] is None and logs[0]["sec_gen2"] is None and logs[1]["l2_loss"] is None
    assert logs[0]["l2_tokens"] == 0 and logs[1]["l2_skipped"] == 0 and logs[2]["l2_loss"] is not None
    # plain GRPO logs no Layer-2 keys at all, every step alike
    (run, args) = tiny_run(tiny, G=2, H=2, beta=0.0, layers=1)
    fake_rollouts(monkeypatch, run, [[40, 1]] * 2, [])
    log = mgrpo.train_step(run, problems, args, random.Random(0))
    assert not [k for k in log if k.startswith("l2_") or k.endswith("2")]


def test_correction_layer_trains_only_on_selected_corrections_that_carry_an_advantage(tiny, monkeypatch):
    # One question, G = 2, both answers wrong -> two q'. q'1: all 4 corrections right (advantage 0);
    # q'2: 1 of 4 right. Counting q'1's four zero-advantage samples in the mean would shrink q'2's
    # gradient 5x, so Layer 2 trains on q'2's one success alone, with its group advantage.
    (run, args) = tiny_run(tiny, G=2, H=4, beta=0.0)
    R, W = [20, 30, 31], [40, 41]
    fake_rollouts(monkeypatch, run, [W, W], [R, R, R, R, W, R, W, W])
    updates = []
    monkeypatch.setattr(mgrpo, "policy_update", no_update(updates := []))
    log = mgrpo.train_step(run, [{"question": "q", "gold": "1"}], args, random.Random(0))
    a = 0.75 / (math.sqrt(3) / 4 + 1e-4)
    assert updates[1][0] == [R] and updates[1][1] == pytest.approx([a])
    assert log["l2_samples_kept"] == 5 and log["l2_samples_trained"] == 1 and log["l2_groups_kept"] == 2


def test_a_reward_below_full_marks_is_not_correct_so_every_answer_gets_a_correction_round(tiny, monkeypatch):
    # 0.5 for every answer: none is correct, so all B * G = 4 answers get a q', and no correction is
    # selected (none is correct either). Layer 2 used to test `== 0` and saw no wrong answer at all.
    (run, args) = tiny_run(tiny, G=2, H=2, beta=0.0)
    fake_rollouts(monkeypatch, run, [[40, 41]] * 4, [[40, 41]] * 8)
    monkeypatch.setattr(mgrpo, "reward", lambda text, gold, question=None: 0.5)
    updates = []
    monkeypatch.setattr(mgrpo, "policy_update", no_update(updates))
    problems = [{"question": "q", "gold": "1"}, {"question": "r", "gold": "2"}]
    log = mgrpo.train_step(run, problems, args, random.Random(0))
    assert log["l1_reward"] == 0.5 and log["l2_groups"] == 4 and log["l2_reward"] == 0.5
    assert log["l2_samples_kept"] == 0 and log["l2_correction_rate"] == 0.0 and len(updates) == 1
    # CORRECT is the one place that says what counts: at 0.5, every answer is right and Layer 2 has nothing to do
    monkeypatch.setattr(mgrpo, "CORRECT", 0.5)
    fake_rollouts(monkeypatch, run, [[40, 41]] * 4, [[40, 41]] * 8)
    monkeypatch.setattr(mgrpo, "reward", lambda text, gold, question=None: 0.5)
    assert mgrpo.train_step(run, problems, args, random.Random(0))["l2_groups"] == 0
    fake_rollouts(monkeypatch, run, [[40, 41]] * 2, [[40, 41]] * 2)
    monkeypatch.setattr(mgrpo, "reward", lambda text, gold, question=None: 0.5)
    m = mgrpo.evaluate(run, problems, args, os.path.join(os.path.dirname(tiny), "e.jsonl"))
    assert m["acc_t1"] == 1.0 and m["acc_t2"] == 1.0


def test_with_a_graded_reward_a_correct_correction_below_its_groups_mean_is_not_pushed_down(tiny, monkeypatch):
    # CORRECT 0.5 and one q' whose H = 4 corrections score 1, 1, 0.5, 0: all but the last are correct, but
    # the 0.5 sits below the mean (0.625), so its advantage is negative: selection trains on the two 1s only.
    (run, args) = tiny_run(tiny, G=2, H=4, beta=0.0)
    monkeypatch.setattr(mgrpo, "CORRECT", 0.5)
    fake_rollouts(monkeypatch, run, [[40, 1], [20, 1]], [[20, 1], [20, 2], [30, 1], [40, 1]])
    run.tk.text = lambda ids: {20: "right", 30: "half", 40: "wrong"}[ids[0]]
    run.reward = lambda text, problem: {"right": 1.0, "half": 0.5, "wrong": 0.0}[text]
    updates = []
    monkeypatch.setattr(mgrpo, "policy_update", no_update(updates))
    log = mgrpo.train_step(run, [{"question": "q", "gold": "1"}], args, random.Random(0))
    assert log["l2_groups"] == 1 and log["l2_samples_kept"] == 3 and log["l2_samples_trained"] == 2
    assert updates[1][0] == [[20, 1], [20, 2]] and all(a > 0 for a in updates[1][1])


def test_select_all_is_plain_grpo_on_q_prime_with_all_equal_groups_in_the_mean(tiny, monkeypatch):
    # Both corrections of both q' wrong: advantage 0 everywhere. `all` trains on all 4 (the KL term still
    # pulls them with β > 0, and they count in the mean as in Layer 1); `successful` on none.
    W = [40, 41]
    updates = []
    monkeypatch.setattr(mgrpo, "policy_update", no_update(updates))
    for select, trained in [("all", 4), ("successful", 0)]:
        (run, args) = tiny_run(tiny, G=2, H=2, l2_select=select)
        fake_rollouts(monkeypatch, run, [W, W], [W] * 4)
        log = mgrpo.train_step(run, [{"question": "q", "gold": "1"}], args, random.Random(0))
        assert log["l2_samples_trained"] == trained
    assert len(updates) == 3 and updates[1] == ([W] * 4, [0.0] * 4)


def test_mask_truncated_leaves_cut_corrections_out_of_selection_and_logs_truncation_either_way(tiny, monkeypatch):
    # max_new_tokens 3: [20, 21, 22] is a right answer cut off (no stop token 1), [20, 1] a right one that ended
    for flag, trained in ((False, 2), (True, 1)):
        (run, args) = tiny_run(tiny, G=2, H=2, beta=0.0, max_new_tokens=3, mask_truncated=flag)
        run.tk.stop = [1]
        fake_rollouts(monkeypatch, run, [[40, 41, 42], [40, 1]], [[20, 21, 22], [40, 1], [20, 1], [40, 1]])
        updates = []
        monkeypatch.setattr(mgrpo, "policy_update", no_update(updates))
        log = mgrpo.train_step(run, [{"question": "q", "gold": "1"}], args, random.Random(0))
        assert log["l1_truncated"] == 1 and log["l2_truncated"] == 1
        assert log["l2_samples_trained"] == trained and len(updates[1][0]) == trained


# Layer 2's N (--l2-loss-norm). One question, G = 2 wrong answers of 4 tokens each (Layer 1: N = B·G = 2
# sequences, 8 tokens), so two q' with H = 4 corrections: a right one has 4 tokens, a wrong one 2. With
# --scale-rewards none the advantages are exact: 1 right of 4 -> A = 0.75; 2 of 4 -> A = 0.5 each. At ρ = 1
# and β = 0 the gradient of -J on each token of a trained correction c is -A / (N |c|) (token-mean: -A / N_tok).
L2_GRADIENT = {  # (rule, agg, corrections trained) -> d(-J)/d log πθ on each of a trained correction's tokens
    ("trained", "seq-mean-token-mean", 1): -0.75 / (1 * 4), ("batch", "seq-mean-token-mean", 1): -0.75 / (2 * 4),
    ("trained", "token-mean", 1): -0.75 / 4, ("batch", "token-mean", 1): -0.75 / 8,
    ("trained", "seq-mean-token-mean", 4): -0.5 / (4 * 4), ("batch", "seq-mean-token-mean", 4): -0.5 / (2 * 4),
    ("trained", "token-mean", 4): -0.5 / 16, ("batch", "token-mean", 4): -0.5 / 8}


@pytest.mark.parametrize("rule,agg,n_trained", list(L2_GRADIENT))
def test_layer2_loss_norm_gives_each_trained_correction_its_hand_computed_gradient(rule, agg, n_trained, tiny,
                                                                                  monkeypatch):
    (run, args) = tiny_run(tiny, G=2, H=4, beta=0.0, scale_rewards="none", loss_agg=agg, l2_loss_norm=rule,
                           micro_tokens=4096)         # one micro-batch per layer
    R4, W2, W4 = [20, 30, 31, 32], [40, 41], [40, 41, 42, 43]
    layer2 = [R4, W2, W2, W2] + [W2] * 4 if n_trained == 1 else [R4, R4, W2, W2] * 2     # q'1's four, q'2's four
    fake_rollouts(monkeypatch, run, [W4, W4], layer2)
    leaves = []        # every log πθ of an update, as a leaf whose .grad is d(-J)/d log πθ

    def logprobs(model, ids, mask, comp, temperature=1.0):
        leaves.append((torch.zeros(comp.shape, dtype=torch.float64, requires_grad=True), comp))
        return leaves[-1][0]
    monkeypatch.setattr(mgrpo, "token_logprobs", logprobs)
    log = mgrpo.train_step(run, [{"question": "q", "gold": "1"}], args, random.Random(0))
    assert log["l2_samples_trained"] == n_trained and len(leaves) == 2         # Layer 1's update, Layer 2's
    lp, comp = leaves[1]
    assert lp.grad[comp].tolist() == [L2_GRADIENT[rule, agg, n_trained]] * (4 * n_trained)
    assert not lp.grad[~comp].any()


def test_zero_std_groups_counts_the_groups_that_carry_no_policy_gradient(tiny, monkeypatch):
    assert mgrpo.zero_std_groups(torch.tensor([[1.0, 1, 1], [0, 0, 0], [0, 1, 0], [0.5, 0.5, 0.5]])) == 3
    (run, args) = tiny_run(tiny, G=2, H=2, beta=0.0, batch_size=2)
    R, W = [20, 1], [40, 1]
    # question 1: both right; question 2: one right -> 1 of 2 groups flat in Layer 1. Layer 2: W's one q',
    # its corrections both wrong -> 1 of 1 flat.
    fake_rollouts(monkeypatch, run, [R, R, R, W], [W, W])
    log = mgrpo.train_step(run, [{"question": "q", "gold": "1"}, {"question": "r", "gold": "1"}], args,
                           random.Random(0))
    assert log["l1_zero_std_frac"] == 0.5 and log["l2_zero_std_frac"] == 1.0 and log["l2_groups"] == 1


def test_policy_update_on_a_positive_advantage_sample_raises_its_logprob(tiny):
    (run, args) = tiny_run(tiny, lr=1e-2, beta=0.0)
    prompt, comp = [5, 6, 7], [20, 21, 22, run.tk.stop[0]]
    ids, mask, cm = mgrpo.pack([prompt], [comp], run.tk.pad, run.device)

    def seq_logp():
        with torch.no_grad():
            return mgrpo.token_logprobs(run.policy, ids, mask, cm).sum().item()

    before = seq_logp()
    mgrpo.policy_update(run, [prompt], [comp], torch.tensor([1.0]), args)
    up = seq_logp()
    mgrpo.policy_update(run, [prompt], [comp], torch.tensor([-1.0]), args)
    mgrpo.policy_update(run, [prompt], [comp], torch.tensor([-1.0]), args)
    assert up > before and seq_logp() < up


def test_learning_rate_1e6_moves_fp32_master_weights(tiny):
    (run, args) = tiny_run(tiny, lr=1e-6, beta=0.0)
    before = [p.detach().clone() for p in run.policy.parameters()]
    mgrpo.policy_update(run, [[5, 6, 7]], [[20, 21, 22]], torch.tensor([1.0]), args)
    assert all(p.dtype == torch.float32 for p in run.policy.parameters())
    changed = sum((p != b).sum().item() for p, b in zip(run.policy.parameters(), before))
    assert changed > 0.5 * sum(b.numel() for b in before)


def nan_loss(monkeypatch):
    real = mgrpo.grpo_loss
    monkeypatch.setattr(mgrpo, "grpo_loss", lambda *a: (real(*a)[0] * float("nan"), real(*a)[1]))
    return real


def test_a_non_finite_loss_skips_the_optimizer_step(tiny, monkeypatch):
    (run, args) = tiny_run(tiny, lr=1e-2, beta=0.0)
    before = [p.detach().clone() for p in run.policy.parameters()]
    real = nan_loss(monkeypatch)
    st = mgrpo.policy_update(run, [[5, 6, 7]], [[20, 21, 22]], torch.tensor([1.0]), args)
    assert st["skipped"] == 1
    assert all(torch.equal(p, b) for p, b in zip(run.policy.parameters(), before))
    monkeypatch.setattr(mgrpo, "grpo_loss", real)
    st = mgrpo.policy_update(run, [[5, 6, 7]], [[20, 21, 22]], torch.tensor([1.0]), args)
    assert st["skipped"] == 0 and any((p != b).any() for p, b in zip(run.policy.parameters(), before))


def test_the_rollout_copy_follows_every_update(tiny):
    (run, args) = tiny_run(tiny, lr=1e-2, beta=0.0)
    run.rollout = copy.deepcopy(run.policy).requires_grad_(False)     # a separate copy, as on CUDA
    before = [p.detach().clone() for p in run.policy.parameters()]
    mgrpo.policy_update(run, [[5, 6, 7]], [[20, 21, 22]], torch.tensor([1.0]), args)
    assert any((p != b).any() for p, b in zip(run.policy.parameters(), before))
    assert all(torch.equal(p, q) for p, q in zip(run.policy.parameters(), run.rollout.parameters()))


# -----------------------------------------------------------------------------
# Log-probs: token_logprobs is log πθ at the sampling temperature, from the model's own logits


def test_token_logprobs_of_padded_rows_are_those_of_each_row_alone(tiny):
    (run, _) = tiny_run(tiny)
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15]]
    comps = [[20, 21, 22], [23, 24, 25, 26, 27], [28]]
    ids, mask, comp = mgrpo.pack(prompts, comps, run.tk.pad, run.device)
    with torch.no_grad():
        batch = mgrpo.token_logprobs(run.policy, ids, mask, comp)
        assert ((batch != 0) == comp).all()                               # only completion tokens are scored
        for i in range(3):
            ids1, mask1, c1 = mgrpo.pack([prompts[i]], [comps[i]], run.tk.pad, run.device)
            alone = mgrpo.token_logprobs(run.policy, ids1, mask1, c1)[c1]
            assert torch.allclose(batch[i][comp[i]], alone, atol=1e-5)
            # and the chunked gather-minus-logsumexp equals a plain log_softmax
            full = torch.log_softmax(run.policy(ids1, attention_mask=mask1).logits[0, -len(comps[i]) - 1:-1], -1)
            assert torch.allclose(alone, full.gather(-1, torch.tensor(comps[i])[:, None]).squeeze(-1), atol=1e-5)


def first_token_frequencies_and_logprobs(run, prompt, temperature, n=6000):
    """Sample the first token n times at `temperature`; return {token: (frequency, exp(logp at T))}."""
    torch.manual_seed(0)
    firsts = [o[0] for o in mgrpo.generate(run.rollout, [prompt], n, run.tk, 1, temperature, gen_batch=n)]
    toks = sorted(set(firsts))
    ids, mask, cm = mgrpo.pack([prompt] * len(toks), [[t] for t in toks], run.tk.pad, run.device)
    with torch.no_grad():
        p = mgrpo.token_logprobs(run.policy, ids, mask, cm, temperature=temperature)[cm].exp()
    return {t: (firsts.count(t) / n, p[i].item()) for i, t in enumerate(toks)}


def test_logprobs_are_those_of_the_distribution_sampled_at_temperature_half(tiny):
    (run, _) = tiny_run(tiny)
    with torch.no_grad():                 # a peaked next-token distribution, so the temperature matters
        run.policy.get_output_embeddings().weight.mul_(6)
    n = 6000
    seen = first_token_frequencies_and_logprobs(run, [5, 6, 7], 0.5, n)
    top = max(seen.values())
    assert 0.3 < top[0] < 0.95                        # a distribution, not a near-constant
    for f, p in seen.values():                        # within 4.5 standard errors of the model's probability
        assert abs(f - p) <= 4.5 * math.sqrt(p * (1 - p) / n) + 1e-3
    # the same check against log-probs at T = 1 would fail: the test can tell the two apart
    wrong = first_token_frequencies_and_logprobs(run, [5, 6, 7], 1.0, n)
    assert any(abs(seen[t][0] - wrong[t][1]) > 4.5 * math.sqrt(wrong[t][1] * (1 - wrong[t][1]) / n) + 1e-3
               for t in seen if t in wrong)


def test_old_and_reference_logprobs_use_the_sampling_temperature(tiny, monkeypatch):
    # reference = policy and mu = 2: on the first pass ρ must be exactly 1 and the KL exactly 0 at any T
    (run, args) = tiny_run(tiny, temperature=0.5, beta=0.1, mu=2)
    run.ref = copy.deepcopy(run.policy).requires_grad_(False)
    first = []
    real = mgrpo.grpo_loss

    def spy(logp, old, ref, *a):
        if not first:
            first.append(((logp - old).abs().max().item(), (logp - ref).abs().max().item()))
        return real(logp, old, ref, *a)

    monkeypatch.setattr(mgrpo, "grpo_loss", spy)
    mgrpo.policy_update(run, [[5, 6, 7], [8, 9]], [[20, 21, 22], [23, 24]], torch.tensor([1.0, -1.0]), args)
    assert first == [(0.0, 0.0)]


def test_dropout_is_switched_off_so_scoring_and_training_see_one_policy(tiny, tmp_path):
    path = str(tmp_path / "dropout")
    shutil.copytree(tiny, path)
    cfg = json.load(open(os.path.join(path, "config.json")))
    cfg["attention_dropout"] = 0.5
    json.dump(cfg, open(os.path.join(path, "config.json"), "w"))
    (run, _) = tiny_run(path, beta=0.1)
    ids, mask, cm = mgrpo.pack([[5, 6, 7, 8, 9]] * 2, [[20, 21, 22, 23]] * 2, run.tk.pad, run.device)
    run.policy.train()
    a, b = (mgrpo.token_logprobs(run.policy, ids, mask, cm) for _ in range(2))
    run.policy.eval()
    c = mgrpo.token_logprobs(run.policy, ids, mask, cm)
    assert torch.equal(a, b) and torch.allclose(a, c, atol=1e-6)


# -----------------------------------------------------------------------------
# The training loop: train


def test_train_writes_one_log_line_per_step_with_the_same_keys_and_the_docs_name_each(tiny, toy_data, tmp_path):
    out = str(tmp_path / "keys")
    mgrpo.main(cli_args(tiny, toy_data, out, "--steps", "2", "--eval-every", "2"))
    log = read_log(out)
    assert list(log[0]) == list(log[1]) and log[0]["eval"] is None and log[1]["eval"]
    docs = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "docs", "running.md"), encoding="utf-8").read()
    outputs = docs[docs.index("## Outputs"):docs.index("## A picture of a run")]
    assert [k for k in log[0] if f"`{k}`" not in outputs] == []


# -----------------------------------------------------------------------------
# Evaluation: evaluate, evaluate_sets, self_correction_metrics, pass_at_k (greedy, and --eval-samples K)


def test_self_correction_metrics_hand_example():
    m = self_correction_metrics([1, 1, 0, 0, 0], [1, 0, 1, 1, 0])
    assert m == pytest.approx({"acc_t1": 0.4, "acc_t2": 0.6, "delta": 0.2, "delta_i2c": 0.4, "delta_c2i": 0.2})


def test_metrics_delta_identity():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        t1, t2 = (torch.rand(37, generator=g) > 0.5).tolist(), (torch.rand(37, generator=g) > 0.5).tolist()
        m = self_correction_metrics(t1, t2)
        assert m["delta"] == pytest.approx(m["delta_i2c"] - m["delta_c2i"])
        assert m["delta"] == pytest.approx(m["acc_t2"] - m["acc_t1"])


def test_greedy_evaluation_is_exactly_argmax(tiny):
    (run, _) = tiny_run(tiny)
    prompt, want = [5, 6, 7], []
    with torch.no_grad():
        for _ in range(10):
            want.append(run.policy(torch.tensor([prompt + want])).logits[0, -1].argmax().item())
            if want[-1] in run.tk.stop:
                break
    assert mgrpo.generate(run.rollout, [prompt], 1, run.tk, 10, greedy=True) == [want]


def test_evaluate_asks_for_the_correction_with_the_first_guide(tiny, monkeypatch, tmp_path):
    (run, args) = tiny_run(tiny)
    real, seen = mgrpo.generate, []

    def spy(model, prompts, *a, **kw):
        seen.append((prompts, real(model, prompts, *a, **kw)))
        return seen[-1][1]

    monkeypatch.setattr(mgrpo, "generate", spy)
    problems = [{"question": f"What is {a} + 1?", "gold": str(a + 1)} for a in range(3)]
    mgrpo.evaluate(run, problems, args, str(tmp_path / "e.jsonl"))
    (p1, t1), (p2, _) = seen
    assert p2 == [p + run.tk.strip_stop(o) + run.tk.guides[0] for p, o in zip(p1, t1)]


def test_pass_at_k_hand_computed():
    assert mgrpo.pass_at_k(4, 1, 1) == 0.25                 # one draw of four, one right
    assert mgrpo.pass_at_k(5, 2, 2) == 1 - 3 / 10           # 1 - C(3,2)/C(5,2)
    assert mgrpo.pass_at_k(10, 3, 2) == 1 - 21 / 45         # 1 - C(7,2)/C(10,2) = 8/15
    assert mgrpo.pass_at_k(4, 0, 3) == 0.0 and mgrpo.pass_at_k(4, 2, 3) == 1.0   # fewer wrong than drawn
    assert [mgrpo.pass_at_k(4, c, 4) for c in range(5)] == [0.0, 1.0, 1.0, 1.0, 1.0]   # n = k: any right


def test_pass_at_k_is_the_chance_that_k_draws_without_replacement_hold_a_right_one():
    import itertools
    from fractions import Fraction
    for n in range(1, 7):
        for c in range(n + 1):
            for k in range(1, n + 1):
                draws = list(itertools.combinations([1] * c + [0] * (n - c), k))
                exact = Fraction(sum(any(d) for d in draws), len(draws))
                assert mgrpo.pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-15)


@pytest.mark.parametrize("n,c,k", [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_pass_at_k_refuses_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        mgrpo.pass_at_k(n, c, k)


def test_sampled_metrics_are_means_over_samples_plus_pass_at_k():
    # 3 problems x K = 2: (t1, t2) pairs  p0: (1,1) (0,1)   p1: (0,0) (0,1)   p2: (1,0) (1,1)
    m = self_correction_metrics([[1, 0], [0, 0], [1, 1]], [[1, 1], [0, 1], [0, 1]])
    assert m == pytest.approx({"acc_t1": 3 / 6, "acc_t2": 4 / 6, "delta_i2c": 2 / 6, "delta_c2i": 1 / 6,
                               "delta": 1 / 6, "pass@2": 2 / 3}, abs=1e-15)
    # K = 3: per sample j the greedy-style metrics, then their mean over j, are the same numbers
    t1, t2 = [[1, 0, 0], [0, 0, 1]], [[1, 1, 0], [1, 0, 0]]
    m = self_correction_metrics(t1, t2)
    per_sample = [self_correction_metrics([r[j] for r in t1], [r[j] for r in t2]) for j in range(3)]
    for key in ("acc_t1", "acc_t2", "delta", "delta_i2c", "delta_c2i"):
        assert m[key] == pytest.approx(sum(x[key] for x in per_sample) / 3, abs=1e-15)
    assert m["pass@3"] == 1.0 and m["acc_t1"] == pytest.approx(2 / 6)
    assert m["delta"] == pytest.approx(m["acc_t2"] - m["acc_t1"], abs=1e-15)
    assert set(self_correction_metrics([1, 0], [1, 1])) == {"acc_t1", "acc_t2", "delta", "delta_i2c", "delta_c2i"}


def spy_on_generate(monkeypatch):
    real, seen = mgrpo.generate, []

    def spy(model, prompts, n, *a, **kw):
        seen.append({"prompts": prompts, "n": n, "args": a, **kw, "out": real(model, prompts, n, *a, **kw)})
        return seen[-1]["out"]

    monkeypatch.setattr(mgrpo, "generate", spy)
    return seen


PLUS_ONE = [{"question": f"What is {a} + 1?", "gold": str(a + 1)} for a in range(3)]


def test_one_eval_sample_is_the_greedy_path_bit_for_bit(tiny, monkeypatch, tmp_path):
    (run, args) = tiny_run(tiny, eval_samples=1, eval_temperature=0.9)         # T is unused by greedy evaluation
    tk = run.tk
    prompts = [tk.prompt(p["question"]) for p in PLUS_ONE]
    t1 = mgrpo.generate(run.rollout, prompts, 1, tk, args.max_new_tokens, greedy=True)
    t2 = mgrpo.generate(run.rollout, [p + tk.strip_stop(o) + tk.guides[0] for p, o in zip(prompts, t1)], 1, tk,
                        args.max_new_tokens, greedy=True)
    want = [{"question": p["question"], "gold": p["gold"], "t1": tk.text(a), "t2": tk.text(b),
             "correct_t1": reward(tk.text(a), p["gold"]) == 1.0, "correct_t2": reward(tk.text(b), p["gold"]) == 1.0}
            for p, a, b in zip(PLUS_ONE, t1, t2)]
    seen = spy_on_generate(monkeypatch)
    rng = torch.get_rng_state()
    m = mgrpo.evaluate(run, PLUS_ONE, args, str(tmp_path / "e.jsonl"))
    assert [c["greedy"] for c in seen] == [True, True] and [c["n"] for c in seen] == [1, 1]
    assert open(tmp_path / "e.jsonl").read() == "".join(json.dumps(r) + "\n" for r in want)
    assert m == self_correction_metrics([r["correct_t1"] for r in want], [r["correct_t2"] for r in want])
    assert torch.equal(torch.get_rng_state(), rng)


def test_sampled_evaluation_keeps_every_sample_each_corrected_on_its_own_q_prime(tiny, monkeypatch, tmp_path):
    (run, args) = tiny_run(tiny, eval_samples=4)
    seen = spy_on_generate(monkeypatch)
    rng = torch.get_rng_state()
    m = mgrpo.evaluate(run, PLUS_ONE, args, str(tmp_path / "e.jsonl"))
    assert torch.equal(torch.get_rng_state(), rng)             # training's random state is left as it was
    first, second = seen
    assert first["n"] == 4 and second["n"] == 1 and not first["greedy"] and not second["greedy"]
    assert first["args"][2] == second["args"][2] == mgrpo.EVAL_TEMPERATURE == 0.6     # the default temperature
    t1 = first["out"]
    assert second["prompts"] == [first["prompts"][i // 4] + run.tk.strip_stop(o) + run.tk.guides[0]
                                 for i, o in enumerate(t1)]
    rows = [json.loads(x) for x in open(tmp_path / "e.jsonl")]
    assert [len(r[k]) for r in rows for k in ("t1", "t2", "correct_t1", "correct_t2")] == [4] * 12
    assert [r["t1"] for r in rows] == [[run.tk.text(o) for o in t1[4 * i:4 * i + 4]] for i in range(3)]
    assert all(len(set(r["t1"])) > 1 for r in rows)              # sampled: the answers to one problem differ
    assert m == self_correction_metrics([r["correct_t1"] for r in rows], [r["correct_t2"] for r in rows])
    assert set(m) == {"acc_t1", "acc_t2", "delta", "delta_i2c", "delta_c2i", "pass@4"}
    mgrpo.evaluate(run, PLUS_ONE, args, str(tmp_path / "again.jsonl"))
    assert open(tmp_path / "again.jsonl").read() == open(tmp_path / "e.jsonl").read()   # its own seeded stream


def test_eval_temperature_is_the_sampling_temperature_of_evaluation(tiny, monkeypatch, tmp_path):
    (run, args) = tiny_run(tiny, eval_samples=2, eval_temperature=1.3)
    seen = spy_on_generate(monkeypatch)
    mgrpo.evaluate(run, PLUS_ONE[:1], args, str(tmp_path / "e.jsonl"))
    assert [c["args"][2] for c in seen] == [1.3, 1.3]


def test_cli_eval_samples_reports_pass_at_k_and_resume_may_change_it(two_step_run, tmp_path):
    b = copy_run(two_step_run, str(tmp_path / "b"), keep_steps=2)
    log = mgrpo.main(["--resume", b, "--steps", "3", "--eval-samples", "2", "--eval-n", "2"])
    assert set(log["eval"]["toy"]) == {"acc_t1", "acc_t2", "delta", "delta_i2c", "delta_c2i", "pass@2"}
    rows = [json.loads(x) for x in open(os.path.join(b, "eval-toy-000003.jsonl"))]
    assert [len(r["t1"]) for r in rows] == [2, 2]


@pytest.mark.parametrize("argv,needle", [(["--eval-samples", "0"], "--eval-samples must be >= 1"),
                                         (["--eval-samples", "two"], "invalid int value"),
                                         (["--eval-temperature", "0"], "--eval-temperature must be a finite number >= 0.01"),
                                         (["--eval-temperature", "-1", "--eval-samples", "4"], "--eval-temperature"),
                                         (["--eval-temperature", "nan", "--eval-samples", "4"], "--eval-temperature")])
def test_bad_eval_sampling_flags_exit_2_with_one_line(argv, needle, tiny, toy_data, capsys):
    with pytest.raises(SystemExit) as e:
        mgrpo.main(["--model", tiny, "--data", toy_data, "--device", "cpu"] + argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and needle in err and len(err.splitlines()) == 1


def test_evaluate_sets_evaluates_logs_and_writes_every_set(tiny, toy_data, tmp_path):
    other = write_jsonl(tmp_path / "olymp.jsonl", [{"question": f"What is {k} + 1?", "final_answer": [f"${k + 1}$"]}
                                                   for k in range(5)])
    out = str(tmp_path / "multi")
    argv = cli_args(tiny, toy_data, out, "--steps", "1")
    argv[argv.index("--eval-data") + 1] = f"{toy_data},{other}"
    log = mgrpo.main(argv)
    assert set(log["eval"]) == {"toy", "olymp"} and all("acc_t1" in m for m in log["eval"].values())
    rows = [json.loads(x) for x in open(os.path.join(out, "eval-olymp-000001.jsonl"))]
    assert [r["gold"] for r in rows] == ["1", "2", "3"]                             # --eval-n 3, golds without $
    assert len(open(os.path.join(out, "eval-toy-000001.jsonl")).readlines()) == 3


# =============================================================================
# PART II: THE ENGINE ROOM (sampling, data, the command line, run endings, models, many GPUs), then
# verify.py, the answer checker, and the examples
# =============================================================================


# -----------------------------------------------------------------------------
# The GRPO variants on the toy task (examples/variants.py)


def test_the_variants_experiment_runs_every_variant_through_the_toy_task(tmp_path, capsys):
    sys.path.insert(0, os.path.join(HERE, "examples"))
    import variants
    threads = torch.get_num_threads()
    try:
        variants.main(["--steps", "1", "--n-eval", "10", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    runs = json.load(open(tmp_path / "variants.json"))["runs"]
    assert list(runs) == list(variants.VARIANTS) and all(r["optimizer_steps"] >= 1 for r in runs.values())
    assert len([ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")]) == 2 + len(runs)


# -----------------------------------------------------------------------------
# Data: gold answers of each format, the order of the batches


def test_gold_answers_from_each_format():
    assert mgrpo.gold_of({"answer": "48/2 = <<48/2=24>>24\n#### 1,080"}) == "1080"
    assert mgrpo.gold_of({"answer": "\\frac{\\sqrt{3}}{2}"}) == "\\frac{\\sqrt{3}}{2}"
    assert mgrpo.gold_of({"solution": "so $\\boxed{\\frac{1}{2}}$ and \\boxed{(1, {2})}"}) == "(1, {2})"
    assert mgrpo.gold_of({"answer": ["6"]}) == "6" and mgrpo.gold_of({"gold": 6}) == "6"     # a list of one; a number
    assert mgrpo.gold_of({"gold": [], "answer": "#### 4"}) == "4"                            # an empty list is absent
    assert mgrpo.gold_of({"answer": ["6", "7"]}) is None and mgrpo.gold_of({"gold": {"value": 6}}) is None


@pytest.mark.parametrize("row", [{"question": "q", "answer": ["6", "7"]}, {"question": "q", "gold": {"value": 6}},
                                 {"question": "", "gold": "6"}, {"question": " \n", "gold": "6"}])
def test_a_row_without_one_answer_or_with_an_empty_question_is_one_line(row, tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [{"question": "What is 1 + 1?", "gold": "2"}, row])
    with pytest.raises(SystemExit) as e:
        mgrpo.load_problems(data, "train")
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err == (f"mgrpo: error: {data} line 2: needs a 'question' or 'problem' field holding "
                                         "text and a 'gold', 'answer', 'final_answer' or 'solution' field holding one "
                                         "answer (text or a number)")


@pytest.mark.parametrize("gold,is_answer", [
    ("6", True), ("-\\frac{5}{3}.", True), ("(1, 2)", True), ("Yes", True), ("Devon and Andy", True), ("6 apples", True),
    ("AB=9, CD=4", True), ("7\\text{ hours}.", True), ("164 \\pi \\mbox{ square feet}", True),   # MATH's golds
    ("\\begin{pmatrix} 4 \\\\ -3 \\end{pmatrix}", True),
    ("The answer is 6.", False), ("So 3 + 3 = 6. #### 6", False), ("The largest digit is 6.", False),   # sentences
    ("She has 6 apples.", False), ("\\frac{1}{", False), ("", False)])                               # nothing parses
def test_a_gold_is_an_answer_that_a_reply_boxing_it_earns(gold, is_answer):
    assert mgrpo.gold_is_an_answer({"question": "What is 3 + 3?", "gold": gold}) is is_answer


@pytest.mark.parametrize("answer", ["The answer is 6.", "The largest digit is 6.", "\\frac{1}{"])
def test_a_set_whose_golds_no_reply_can_earn_is_refused_before_the_model_loads(answer, tiny, toy_data, tmp_path,
                                                                               monkeypatch, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [{"question": f"What is {a} + 3?", "answer": answer} for a in range(4)])
    monkeypatch.setattr(mgrpo, "setup", lambda *a, **kw: pytest.fail("the model loaded"))
    err = refused(cli_args(tiny, data, str(tmp_path / "out"), "--steps", "1"), capsys)
    assert err.startswith(f"mgrpo: error: --data {data}: no gold is an answer a reply can earn") and "'gold'" in err
    assert not os.path.exists(tmp_path / "out")
    args = cli_args(tiny, toy_data, str(tmp_path / "out"), "--steps", "1", "--eval-data", data)   # an eval set too
    assert refused(args, capsys).startswith(f"mgrpo: error: --eval-data {data}: no gold is an answer a reply")
    monkeypatch.undo()                            # a reward of your own reads the golds its own way
    mgrpo.main(cli_args(tiny, data, str(tmp_path / "own"), "--steps", "1"), reward=lambda text, problem: 1.0)
    assert len(read_log(tmp_path / "own")) == 1


def test_golds_that_no_reply_can_earn_are_counted_in_one_line_and_the_run_goes_on(tiny, toy_data, tmp_path, capsys):
    rows = [json.loads(x) for x in open(toy_data)] + [{"question": "What is 9 + 9?", "answer": "The answer is 18."}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    mgrpo.main(cli_args(tiny, data, str(tmp_path / "out"), "--steps", "1", "--eval-data", toy_data))
    said = [x for x in capsys.readouterr().out.splitlines() if "gold" in x]
    assert said == [f"mgrpo: --data {data}: 1 of 37 golds are sentences or do not parse (problem 37: 'The answer is "
                    "18.'): a reply's boxed answer will not earn them"]
    assert len(read_log(tmp_path / "out")) == 1


def test_batch_order_is_a_seeded_permutation_per_epoch():
    n, B = 10, 4
    seen = [i for s in range(5) for i in mgrpo.batch_indices(s, B, n, seed=3)]   # 2 epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert seen[:10] != seen[10:20]
    assert mgrpo.batch_indices(3, B, n, seed=3) == seen[12:16]                  # no hidden state
    assert mgrpo.batch_indices(0, B, n, seed=4) != seen[:4]


# -----------------------------------------------------------------------------
# Rollouts and micro-batches: generate, cut_at_stop, pack, micro_batches


def test_tokens_after_first_eos_are_cut_and_eos_is_kept():
    assert mgrpo.cut_at_stop([5, 6, 2, 9, 2], [2]) == [5, 6, 2]
    assert mgrpo.cut_at_stop([5, 6, 7], [2]) == [5, 6, 7]            # truncated: all tokens are real


def test_pack_puts_each_prompt_and_completion_in_one_right_padded_row():
    ids, mask, comp = mgrpo.pack([[1], [1, 1]], [[5, 6, 2], [7]], 0, "cpu")
    assert ids.tolist() == [[1, 5, 6, 2], [1, 1, 7, 0]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert comp.tolist() == [[False, True, True, True], [False, False, True, False]]


def test_micro_batches_fill_a_token_budget_longest_first():
    # lengths 5, 9, 3, 9, 2 and a budget of 18 tokens (rows x longest row, padding included)
    assert mgrpo.micro_batches([5, 9, 3, 9, 2], 18) == [[1, 3], [0, 2, 4]]        # 2 x 9 = 18; 3 x 5 = 15
    assert mgrpo.micro_batches([5, 9, 3, 9, 2], 17) == [[1], [3], [0, 2, 4]]
    assert mgrpo.micro_batches([30, 2], 10) == [[0], [1]]                       # too long: alone, never dropped
    assert mgrpo.micro_batches([4, 4, 4], 1000) == [[0, 1, 2]]


def test_update_logs_the_fraction_of_padding_it_computed(tiny):
    (run, args) = tiny_run(tiny, micro_tokens=18, beta=0.0)
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12], [13, 14], [15, 16, 17, 18, 19], [20]]
    comps = [[30, 31], [32, 33, 34, 35], [36], [37, 38, 39, 40], [41]]     # lengths 5, 9, 3, 9, 2 as above
    st = mgrpo.policy_update(run, prompts, comps, torch.ones(5), args)
    assert st["pad_frac"] == pytest.approx(1 - 28 / (18 + 15))


def test_generate_returns_group_major_rows_cut_at_eos(tiny):
    (run, args) = tiny_run(tiny)
    torch.manual_seed(0)
    outs = mgrpo.generate(run.rollout, [[5, 6, 7], [8, 9]], 3, run.tk, max_new_tokens=30, gen_batch=4)
    assert len(outs) == 6
    for o in outs:
        stops = [j for j, t in enumerate(o) if t in run.tk.stop]
        assert stops in ([], [len(o) - 1]) and 1 <= len(o) <= 30
    greedy = mgrpo.generate(run.rollout, [[5, 6, 7]], 2, run.tk, max_new_tokens=10, greedy=True)
    assert greedy[0] == greedy[1]


def test_static_cache_with_filler_rows_gives_the_same_greedy_rollouts(tiny):
    (run, _) = tiny_run(tiny)
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12], [13], [14, 15], [16, 17, 18, 19]]   # 5 rows -> padded to 8
    dynamic = mgrpo.generate(run.rollout, prompts, 1, run.tk, 15, greedy=True)
    static = mgrpo.generate(run.rollout, prompts, 1, run.tk, 15, greedy=True, gen_batch=8, cache_len=64)
    assert static == dynamic and len(static) == 5


# -----------------------------------------------------------------------------
# The GPU benchmark's smoke mode, on the CPU (bench/bench_gpu.py)


def test_gpu_benchmark_smoke_mode_runs_mgrpos_own_step_on_cpu(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_gpu", os.path.join(os.path.dirname(__file__), "bench",
                                                                            "bench_gpu.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--smoke", "--skip-default", "--rounds", "1", "--out", str(tmp_path)])
    (r,) = report["results"]
    assert r["gen_tokens"] > 0 and r["update_tokens"] > 0 and 0 <= r["other_frac"] < 1
    assert len(r["rollout_rows"]) == 2             # Layer 1 and Layer 2 generate calls were recorded
    assert r["replay_mgrpo_tok_per_s"] > 0 and r["replay_plain_tok_per_s"] > 0 and r["rollout_speedup"] > 0
    sweep = report["update_sweep"]
    assert [(p["micro_tokens"], p["grad_checkpointing"]) for p in sweep] == [(32, False), (32, True)]
    assert all(p["tok_per_s"] > 0 and 0 <= p["pad_frac"] < 1 for p in sweep)
    assert json.load(open(tmp_path / "bench_gpu-smoke.json"))["results"][0]["config"].startswith("smoke")
    assert not os.path.exists(tmp_path / "bench_gpu.json")          # the name a GPU measurement has


def test_gpu_benchmark_smoke_run_never_writes_where_gpu_measurements_live(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_gpu", os.path.join(os.path.dirname(__file__), "bench",
                                                                            "bench_gpu.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # a GPU run writes into bench/results wherever it is run from; a smoke run into the temporary folder
    assert bench.RESULTS == os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench", "results")
    assert bench.SMOKE_OUT.startswith(tempfile.gettempdir())
    monkeypatch.setattr(bench, "RESULTS", str(tmp_path / "results"))     # the test writes nothing into the repo
    monkeypatch.setattr(bench, "SMOKE_OUT", str(tmp_path / "smoke"))
    os.makedirs(tmp_path / "cwd")
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("OUT", str(tmp_path / "env"))                      # an unrelated variable changes nothing
    bench.main(["--smoke", "--skip-sweep", "--skip-default", "--rounds", "0"])
    assert os.listdir(tmp_path / "smoke") == ["bench_gpu-smoke.json"] and not os.path.exists(tmp_path / "results")
    assert not os.listdir(tmp_path / "cwd") and not os.path.exists(tmp_path / "env")


# -----------------------------------------------------------------------------
# The command line: the paths users walk


def cli_args(tiny, data, out, *extra):
    return ["--model", tiny, "--data", data, "--eval-data", data, "--device", "cpu", "--G", "3", "--H", "2",
            "--batch-size", "2", "--max-new-tokens", "8", "--eval-n", "3", "--l2-inputs", "all",
            "--eval-every", "1", "--save-every", "1", "--seed", "5", "--output-dir", out, *extra]


def read_log(out):
    return [json.loads(x) for x in open(os.path.join(out, "log.jsonl"))]


def weights(path):
    from transformers import AutoModelForCausalLM
    return list(AutoModelForCausalLM.from_pretrained(path).parameters())


@pytest.fixture(scope="module")
def two_step_run(tiny, toy_data, tmp_path_factory):
    """A finished 2-step run with a checkpoint after each step (tests copy it before changing it)."""
    out = str(tmp_path_factory.mktemp("run") / "a")
    mgrpo.main(cli_args(tiny, toy_data, out, "--steps", "2"))
    return out


def copy_run(src, dst, keep_steps):
    """The state a kill after step `keep_steps` leaves: its checkpoints and log, nothing later."""
    os.makedirs(dst)
    for d in sorted(os.listdir(src)):
        if d.startswith("step-") and int(d[5:]) <= keep_steps:
            shutil.copytree(os.path.join(src, d), os.path.join(dst, d))
    with open(os.path.join(dst, "log.jsonl"), "w") as f:
        f.writelines(json.dumps(x) + "\n" for x in read_log(src) if x["step"] <= keep_steps)
    return dst


def test_cli_trains_evaluates_and_checkpoints(two_step_run):
    log = read_log(two_step_run)
    assert [x["step"] for x in log] == [1, 2] and "eval" in log[0] and "l2_keep_frac" in log[1]
    rows = [json.loads(x) for x in open(os.path.join(two_step_run, "eval-toy-000002.jsonl"))]
    assert len(rows) == 3 and {"question", "gold", "t1", "t2", "correct_t1", "correct_t2"} <= set(rows[0])
    assert sorted(d for d in os.listdir(two_step_run) if d.startswith("step-")) == ["step-000001", "step-000002"]


def test_resume_with_no_flags_continues_the_run_exactly_as_it_was(two_step_run, tmp_path):
    b = copy_run(two_step_run, str(tmp_path / "b"), keep_steps=1)
    mgrpo.main(["--resume", b])                       # the README's form: every setting from the checkpoint
    assert [x["step"] for x in read_log(b)] == [1, 2]                                  # --steps 2, not 200
    assert len(open(os.path.join(b, "eval-toy-000002.jsonl")).readlines()) == 3          # --eval-n 3
    assert all(torch.equal(p, q) for p, q in zip(weights(os.path.join(two_step_run, "step-000002")),
                                                weights(os.path.join(b, "step-000002"))))
    assert not [d for d in os.listdir(b) if d.endswith(".tmp")]


def test_resume_takes_run_control_flags_from_the_command_line(two_step_run, tmp_path):
    b = copy_run(two_step_run, str(tmp_path / "b"), keep_steps=2)
    mgrpo.main(["--resume", b, "--steps", "4", "--eval-n", "2", "--eval-every", "2", "--save-every", "2"])
    log = read_log(b)
    assert [x["step"] for x in log] == [1, 2, 3, 4] and log[2]["eval"] is None and log[3]["eval"]
    assert len(open(os.path.join(b, "eval-toy-000004.jsonl")).readlines()) == 2
    assert sorted(d for d in os.listdir(b) if d.startswith("step-")) == ["step-000001", "step-000002", "step-000004"]


@pytest.mark.parametrize("flag,value", [("--lr", "0.1"), ("--G", "5"), ("--beta", "0.5"), ("--layers", "1"),
                                        ("--temperature", "0.7"), ("--data", "gsm8k"), ("--scale-rewards", "none"),
                                        ("--loss-agg", "seq-mean-token-sum-norm"), ("--clip-eps-high", "0.28"),
                                        ("--importance-sampling", "sequence"), ("--mask-truncated", None)])
def test_resume_refuses_to_change_what_the_run_learns(two_step_run, flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        mgrpo.main(["--resume", two_step_run, "--steps", "3", flag] + ([value] if value else []))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and flag in err and "checkpoint" in err


def test_resuming_a_finished_run_says_so_in_one_line(two_step_run, capsys):
    assert mgrpo.main(["--resume", two_step_run, "--G", "3"]) is None      # an unchanged setting is fine
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "step 2" in out and "--steps" in out
    assert [x["step"] for x in read_log(two_step_run)] == [1, 2]


def test_a_fresh_run_refuses_an_output_dir_holding_another_run(two_step_run, tiny, toy_data, tmp_path, capsys):
    b = copy_run(two_step_run, str(tmp_path / "b"), keep_steps=2)
    before = sorted(os.listdir(b))
    with pytest.raises(SystemExit) as e:
        mgrpo.main(cli_args(tiny, toy_data, b, "--steps", "1"))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "--resume" in err and "--output-dir" in err
    assert sorted(os.listdir(b)) == before and len(read_log(b)) == 2


def test_a_run_resumes_from_any_folder_with_the_relative_paths_it_started_with(tiny, toy_data, tmp_path,
                                                                                 monkeypatch):
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir(), elsewhere.mkdir()
    os.symlink(tiny, start / "model")
    shutil.copy(toy_data, start / "toy.jsonl")
    monkeypatch.chdir(start)                      # --model model --data toy.jsonl: relative to where the run began
    mgrpo.main(cli_args("model", "toy.jsonl", "out", "--steps", "1"))
    monkeypatch.chdir(elsewhere)
    mgrpo.main(["--resume", str(start / "out"), "--steps", "2", "--data", str(start / "toy.jsonl")])  # the same file
    assert [x["step"] for x in read_log(start / "out")] == [1, 2]


def test_a_resumed_path_flag_is_a_local_path_from_the_runs_folder_and_a_named_set_stays_a_name(tmp_path):
    (tmp_path / "gsm8k").mkdir()                   # a folder named like a dataset does not make the name a path
    (tmp_path / "toy.jsonl").write_text("")
    assert mgrpo.local_paths("toy.jsonl,gsm8k,math500", str(tmp_path)) == f"{tmp_path.resolve()}/toy.jsonl,gsm8k,math500"
    assert mgrpo.local_paths("Qwen/Qwen2.5-0.5B", str(tmp_path)) == "Qwen/Qwen2.5-0.5B"     # a Hub id
    assert mgrpo.local_paths(None, str(tmp_path)) is None                                  # no --eval-data


def test_resume_with_eval_only_evaluates_the_checkpoint_without_reading_the_training_data(two_step_run, tmp_path,
                                                                                          capsys):
    m = mgrpo.main(["--resume", two_step_run, "--eval-only", "--output-dir", str(tmp_path / "e"), "--eval-n", "2"])
    assert set(m["toy"]) >= {"acc_t1", "acc_t2"}


def test_a_resumed_run_keeps_its_reward_and_the_resume_line_names_the_script_that_passed_it(tiny, toy_data, tmp_path,
                                                                                             monkeypatch, capsys):
    def my_reward(text, problem):
        return float("boxed" in text)
    monkeypatch.setattr(mgrpo, "SCRIPT", mgrpo.SCRIPT)             # put back after the test
    monkeypatch.setattr(sys, "argv", ["../elsewhere/train_mine.py", "--bogus"])
    with pytest.raises(SystemExit):
        mgrpo.cli(reward=my_reward)                                # as `python ../elsewhere/train_mine.py` runs it
    assert mgrpo.SCRIPT == "../elsewhere/train_mine.py"
    out = str(tmp_path / "mine")
    mgrpo.main(cli_args(tiny, toy_data, out, "--steps", "1"), reward=my_reward)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert mgrpo.how_to_go_on(mgrpo.build_parser().parse_args(["--output-dir", out])).endswith(
        f"continue with: python ../elsewhere/train_mine.py --resume {out}")
    capsys.readouterr()
    err = refused(["--resume", out, "--steps", "2"], capsys)       # plain mgrpo.py would train on with the rule
    assert "this run trained with your reward " in err and "my_reward, this command gives the rule reward" in err
    assert err.endswith(f"go on with the script that passed it (python ../elsewhere/train_mine.py --resume {out})")
    plain = str(tmp_path / "plain")
    mgrpo.main(cli_args(tiny, toy_data, plain, "--steps", "1"))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        mgrpo.main(["--resume", plain, "--steps", "2"], reward=my_reward)
    assert "this run trained with the rule reward, this command gives your reward" in capsys.readouterr().err
    mgrpo.main(["--resume", out, "--steps", "2"], reward=my_reward)     # the same reward goes on
    assert [x["step"] for x in read_log(out)] == [1, 2]
    mgrpo.main(["--resume", plain, "--steps", "2"], reward=mgrpo.rule_reward)   # the rule, passed by name, is the rule
    assert [x["step"] for x in read_log(plain)] == [1, 2]
    assert mgrpo.reward_name(functools.partial(my_reward)) == "functools.partial"     # any callable has a name


def test_resume_refuses_data_that_changed_since_the_checkpoint(tiny, toy_data, tmp_path, capsys):
    data = shutil.copy(toy_data, tmp_path / "toy.jsonl")
    out = str(tmp_path / "out")
    mgrpo.main(cli_args(tiny, str(data), out, "--steps", "1"))
    capsys.readouterr()
    rows = open(data).readlines()
    for changed in (rows[:10], rows[:-1] + [rows[-1].replace("####", "#### 1")]):   # fewer rows; one gold changed
        open(data, "w").writelines(changed)
        err = refused(["--resume", out, "--steps", "2"], capsys)
        assert f"--resume: {os.path.realpath(data)} is not the data this run trained on" in err
        assert ("36 problems then, 10 now" in err) == (len(changed) == 10)
    assert [x["step"] for x in read_log(out)] == [1]


def test_resume_drops_a_log_line_cut_by_a_kill(two_step_run, tmp_path):
    b = copy_run(two_step_run, str(tmp_path / "b"), keep_steps=1)
    with open(os.path.join(b, "log.jsonl"), "a") as f:
        f.write('{"step": 2, "l1_rew')                   # the kill came in the middle of a write
    mgrpo.main(["--resume", b])
    assert [x["step"] for x in read_log(b)] == [1, 2]


def test_a_run_whose_answers_are_all_cut_off_says_so_once(tiny, toy_data, tmp_path, monkeypatch, capsys):
    mgrpo.main(cli_args(tiny, toy_data, str(tmp_path / "o"), "--steps", "2", "--max-new-tokens", "1"))
    said = [x for x in capsys.readouterr().out.splitlines() if "cut off" in x]
    assert said == ["mgrpo: step 1: every answer was cut off at --max-new-tokens 1 before it ended; raise it (a "
                    "cut-off answer rarely states its final answer)"]
    assert [x["l1_truncated"] for x in read_log(tmp_path / "o")] == [6, 6]       # --batch-size 2, --G 3
    real = mgrpo.is_truncated                                                  # one answer of each step ends
    monkeypatch.setattr(mgrpo, "is_truncated", lambda *a: real(*a).index_fill(0, torch.tensor([0]), False))
    mgrpo.main(cli_args(tiny, toy_data, str(tmp_path / "p"), "--steps", "1", "--max-new-tokens", "1"))
    assert "cut off" not in capsys.readouterr().out and read_log(tmp_path / "p")[0]["l1_truncated"] == 5


def test_keep_last_deletes_only_older_checkpoints_of_this_run(tiny, toy_data, tmp_path):
    out = str(tmp_path / "k")
    mgrpo.main(cli_args(tiny, toy_data, out, "--steps", "3", "--eval-every", "0", "--keep-last", "2"))
    assert sorted(d for d in os.listdir(out) if d.startswith("step-")) == ["step-000002", "step-000003"]


def test_cli_shows_its_own_progress_and_no_transformers_bars(tiny, toy_data, tmp_path, capsys):
    mgrpo.main(cli_args(tiny, toy_data, str(tmp_path / "p"), "--steps", "1"))
    err = capsys.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err
    assert "mgrpo" in err and "eval t1" in err and "eval t2" in err


def test_jsonl_data_without_eval_data_says_there_is_no_evaluation(tiny, toy_data, tmp_path, capsys):
    argv = cli_args(tiny, toy_data, str(tmp_path / "n"), "--steps", "1")
    del argv[4:6]                                     # no --eval-data
    mgrpo.main(argv)
    said = [ln for ln in capsys.readouterr().out.splitlines() if "--eval-data" in ln]
    assert len(said) == 1 and not [f for f in os.listdir(tmp_path / "n") if f.startswith("eval")]


def test_cli_eval_only_writes_metrics(tiny, toy_data, tmp_path):
    m = mgrpo.main(["--model", tiny, "--data", toy_data, "--eval-only", "--eval-n", "3", "--max-new-tokens", "6",
                    "--device", "cpu", "--output-dir", str(tmp_path)])
    assert set(m) == {"toy"} and set(m["toy"]) == {"acc_t1", "acc_t2", "delta", "delta_i2c", "delta_c2i"}
    assert len(open(tmp_path / "eval_only-toy.jsonl").readlines()) == 3


@pytest.mark.parametrize("name", ["minerva_math", "olympiadbench"])
def test_new_benchmarks_are_read_offline_from_the_cache(name, tmp_path, monkeypatch):
    src = os.path.join(SHARED, name, "test.jsonl")
    if not os.path.isfile(src):
        pytest.skip("../shared/data not present")
    os.makedirs(tmp_path / name)
    shutil.copy(src, tmp_path / name / "test.jsonl")
    monkeypatch.setattr(mgrpo, "CACHE_DIR", str(tmp_path))
    problems = mgrpo.load_problems(name, "test")
    assert len(problems) == {"minerva_math": 272, "olympiadbench": 675}[name]
    assert all(p["question"] and p["gold"] and "$" not in p["gold"][:1] for p in problems)
    with pytest.raises(SystemExit):
        mgrpo.load_problems(name, "train")                                          # a test set


@pytest.mark.parametrize("argv,needle", [
    (["--data", "imagenet"], "unknown dataset"),
    (["--data", "/nonexistent/x.jsonl"], "not found"),
    (["--G", "1"], "--G must be >= 2"),
    (["--H", "1"], "--H must be >= 2"),
    (["--loss-agg", "sum"], "invalid choice"),
    (["--data", "math500"], "math500 is a test set"),
    (["--device", "gpu0"], "unknown device"),
    (["--keep-last", "-1"], "--keep-last"),
])
def test_bad_input_exits_2_with_one_line(argv, needle, tiny, capsys):
    with pytest.raises(SystemExit) as e:
        mgrpo.main(["--model", tiny, "--device", "cpu"] + argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and needle in err and len(err.splitlines()) == 1


def test_bad_rows_exit_2_naming_the_line(tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "1"}, {"text": "no fields"}])
    with pytest.raises(SystemExit) as e:
        mgrpo.load_problems(bad, "train")
    assert e.value.code == 2 and "line 2" in capsys.readouterr().err


def test_a_hub_id_that_cannot_be_fetched_online_says_how_to_run_offline(monkeypatch, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    class Unreachable:
        @staticmethod
        def from_pretrained(name, **kw):
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them\n"
                          "in the cached files.\nCheck your internet connection.")

    with pytest.raises(SystemExit) as e:
        mgrpo.from_pretrained(Unreachable, "org/model")
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert "pass a local directory and set HF_HUB_OFFLINE=1" in err and "Check your internet connection" in err


@pytest.mark.parametrize("files,needle", [((), "has no config.json"), (("config.json",), "has no tokenizer files")])
def test_a_directory_that_is_not_a_model_says_what_is_missing(files, needle, toy_data, tmp_path, capsys):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    for f in files:
        (folder / f).write_text("{}")
    with pytest.raises(SystemExit) as e:
        mgrpo.main(["--model", str(folder), "--data", toy_data, "--device", "cpu", "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and needle in err and str(folder) in err
    assert not os.path.exists(tmp_path / "o")           # a failed run leaves no empty output directory


def test_an_output_dir_that_cannot_be_written_is_refused_before_anything_loads(toy_data, tmp_path, capsys,
                                                                             monkeypatch):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    for out, said in ((str(a_file), f"{a_file} is a file, not a directory"),          # the path is a file
                      (str(a_file / "run" / "a"), f"/run/a: its parent {a_file} is a file, not a directory")):
        with pytest.raises(SystemExit) as e:
            mgrpo.main(["--model", "nobody/no-such-model", "--data", toy_data, "--device", "cpu", "--output-dir", out])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1 and f"--output-dir {out}" in err and said in err
        assert "choose another --output-dir" in err and a_file.read_text() == "x"

    def read_only(*a, **kw):                              # root writes through permission bits: simulate it
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(mgrpo.tempfile, "mkstemp", read_only)
    with pytest.raises(SystemExit) as e:
        mgrpo.main(["--model", "nobody/no-such-model", "--data", toy_data, "--device", "cpu",
                    "--output-dir", str(tmp_path / "ro")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "cannot write there (Permission denied)" in err and "no-such-model" not in err
    assert not os.path.exists(tmp_path / "ro")


def test_a_json_array_file_named_without_a_path_is_read_and_explained(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with open("eval_array.json", "w") as f:
        json.dump([{"question": "q", "gold": "1"}], f)
    with pytest.raises(SystemExit) as e:
        mgrpo.load_problems("eval_array.json", "test")
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert "eval_array.json is one JSON array" in err and "JSON Lines" in err and "unknown dataset" not in err
    with open("rows.json", "w") as f:                    # JSON Lines under another extension, no slash: read
        f.write(json.dumps({"question": "q", "gold": "1"}) + "\n")
    assert mgrpo.load_problems("rows.json", "train") == [{"question": "q", "gold": "1"}]


def test_a_failed_download_leaves_no_empty_cache_folder(tmp_path, monkeypatch, capsys):
    def offline(*a, **kw):
        raise OSError("network is unreachable")

    monkeypatch.setattr(mgrpo.urllib.request, "urlopen", offline)
    monkeypatch.setattr(mgrpo, "CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as e:
        mgrpo.load_problems("minerva_math", "test")
    assert e.value.code == 2 and "could not download" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "cache")            # nor the cache folder above it, which it created


def test_a_mistyped_flag_gets_the_flag_it_meant(capsys):
    with pytest.raises(SystemExit) as e:
        mgrpo.main(["--model", "x", "--lrr", "0.1", "--max-new-tokes", "8"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert "--lrr: did you mean --lr?" in err and "--max-new-tokes: did you mean --max-new-tokens?" in err
    for typed, meant in (("--h", "--H"), ("--g", "--G"), ("--max-new-token", "--max-new-tokens")):   # not --help's
        with pytest.raises(SystemExit) as e:                             # help and exit 0, nor a silent prefix
            mgrpo.main(["--model", "x", typed, "8"])
        assert e.value.code == 2 and f"{typed}: did you mean {meant}?" in capsys.readouterr().err


def test_resuming_an_older_checkpoint_beside_newer_ones_is_refused_and_loses_nothing(two_step_run, tmp_path,
                                                                                     capsys):
    b = copy_run(two_step_run, str(tmp_path / "b"), keep_steps=2)
    before = open(os.path.join(b, "log.jsonl")).read()
    with pytest.raises(SystemExit) as e:
        mgrpo.main(["--resume", os.path.join(b, "step-000001"), "--steps", "3"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "step-000002" in err
    assert f"--resume {b}" in err and "--output-dir" in err
    assert open(os.path.join(b, "log.jsonl")).read() == before and os.path.isdir(os.path.join(b, "step-000002"))
    # the other way on: branch off from step 1 into a new directory, which starts with step 1's log line
    c = str(tmp_path / "c")
    mgrpo.main(["--resume", os.path.join(b, "step-000001"), "--steps", "2", "--output-dir", c])
    assert [x["step"] for x in read_log(c)] == [1, 2] and open(os.path.join(b, "log.jsonl")).read() == before
    assert read_log(c)[0] == read_log(b)[0]


@pytest.mark.parametrize("model,needles", [("{tmp}/no-model", ["directory", "{tmp}/no-model", "not found"]),
                                           ("./no-model", ["directory", "not found"]),
                                           ("nobody/no-such-model", ["nobody/no-such-model", "HF_HUB_OFFLINE is set",
                                                                     "pass a local directory"])])
def test_a_model_that_cannot_be_loaded_is_named_in_one_line(model, needles, toy_data, tmp_path, capsys,
                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = model.format(tmp=tmp_path)
    with pytest.raises(SystemExit) as e:
        mgrpo.main(["--model", model, "--data", toy_data, "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and all(n.format(tmp=tmp_path) in err for n in needles)
    assert "Repo id must" not in err


def test_offline_gsm8k_error_names_both_files(tmp_path, monkeypatch, capsys):
    def offline(*a, **kw):
        raise OSError("network unreachable")
    monkeypatch.setattr(mgrpo.urllib.request, "urlopen", offline)
    monkeypatch.setattr(mgrpo, "CACHE_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as e:
        mgrpo.load_problems("gsm8k", "train")
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "train.jsonl" in err and "test.jsonl" in err and str(tmp_path) in err


# Every numeric flag: checked in check_args, before any download or load, in one line (exit 2).

# The issue's ranges at their edges: a value just inside each float flag's range passes check_args, and
# the one just past it (lr 0, β < 0, T 0, ε 0, max-grad-norm < 0) is refused.
EDGES = {"lr": (1e-9, 0.0), "beta": (0.0, -1e-3), "clip_eps": (0.2, 0.0), "clip_eps_high": (0.28, 0.0),
         "temperature": (0.01, 0.0), "eval_temperature": (0.01, 0.0), "max_grad_norm": (0.0, -1.0)}


def refused_before_loading(argv, monkeypatch, capsys, tmp_path):
    """main(argv) must exit 2 with one line before reading data or a model: returns that line."""
    def nothing_may_load(*a, **kw):
        raise AssertionError("loaded something before the flags were checked")
    for name in ("load_problems", "from_pretrained", "setup", "download"):
        monkeypatch.setattr(mgrpo, name, nothing_may_load)
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as e:
        mgrpo.main(["--model", "nobody/no-such-model", "--data", "x.jsonl", "--output-dir", str(out)] + argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("mgrpo: error: "), (argv, err)
    assert "Traceback" not in err and "expected one argument" not in err and not os.path.exists(out)
    return err


def out_of_range(bounds, kind):
    """Values just outside a flag's range (RANGES): below its lower bound, above its upper one."""
    bad = []
    for op, x in bounds:
        step = 1 if kind is int else max(abs(x) * 0.5, 1e-3)
        bad.append({">": x, "<": x, ">=": x - step, "<=": x + step}[op])
    return bad


def numeric_flags():
    return [(a.option_strings[0], a.dest, a.type) for a in mgrpo.build_parser()._actions if a.type in (int, float)]


CHOICES = {a.dest for a in mgrpo.build_parser()._actions if a.type in (int, float) and a.choices}


def test_every_int_and_float_flag_has_a_range_and_the_walk_finds_them_all():
    flags = numeric_flags()
    # a new numeric flag fails here until RANGES says what it accepts
    assert {dest for _, dest, _ in flags} == set(mgrpo.RANGES)
    floats = {dest for _, dest, kind in flags if kind is float}
    assert floats >= {"lr", "beta", "clip_eps", "clip_eps_high", "temperature", "eval_temperature", "max_grad_norm"}
    assert set(EDGES) == floats                   # and EDGES names its edge, for the test below


@pytest.mark.parametrize("flag,dest,kind", numeric_flags(), ids=[f for f, _, _ in numeric_flags()])
def test_every_numeric_flag_out_of_range_or_not_finite_is_one_line_before_anything_loads(flag, dest, kind,
                                                                                          monkeypatch, capsys, tmp_path):
    *bounds, why = mgrpo.RANGES[dest]
    values = [str(v) for v in out_of_range(bounds, kind)]
    if kind is float:
        values += ["nan", "inf", "-inf", f"{min(-1e-3, bounds[0][1] - 1):.1e}"]   # -1.0e+00: scientific, negative
    if dest in EDGES:
        values.append(repr(EDGES[dest][1]))
    extra = ["--layers", "2"] if dest == "H" else []
    for value in values:
        err = refused_before_loading([flag, value] + extra, monkeypatch, capsys, tmp_path)
        if dest in CHOICES:                        # argparse's own check comes first (--layers 1 or 2)
            assert f"argument {flag}: invalid choice: {value}" in err
            continue
        assert f"{flag} must be " in err and "(got " in err and why in err, (value, err)
    if dest in EDGES:                              # the smallest allowed value passes check_args
        args = mgrpo.build_parser().parse_args(["--model", "x", flag, repr(EDGES[dest][0])])
        mgrpo.check_args(args)


@pytest.mark.parametrize("argv,said", [
    (["--lr", "-0.001"], "--lr must be a finite number > 0 and <= 1 (got -0.001)"),
    (["--lr", "-1e-3"], "--lr must be a finite number > 0 and <= 1 (got -0.001)"),        # not 'expected one argument'
    (["--lr=-1e-3"], "--lr must be a finite number > 0 and <= 1 (got -0.001)"),
    (["--lr", "1e6"], "--lr must be a finite number > 0 and <= 1 (got 1000000.0)"),       # 1e-6 mistyped
    (["--temperature", "nan"], "--temperature must be a finite number >= 0.01 (got nan)"),
    (["--temperature", "1e-30"], "--temperature must be a finite number >= 0.01 (got 1e-30)"),
    (["--beta", "nan"], "--beta must be a finite number >= 0 (got nan)"),
    (["--max-grad-norm", "-1"], "--max-grad-norm must be a finite number >= 0 (got -1.0): 0 turns clipping off"),
    (["--clip-eps", "1"], "--clip-eps must be a finite number > 0 and < 1 (got 1.0)"),
    (["--seed", "-1"], "--seed must be >= 0 and <= 4294967295 (got -1)"),
    (["--seed", "-1e3"], "argument --seed: invalid int value: '-1e3'"),
    (["--steps", "1.5"], "argument --steps: invalid int value: '1.5'"),
    (["--H", "1"], "--H must be >= 2 (got 1)"),
    (["--eval-samples", "-1e+2"], "argument --eval-samples: invalid int value: '-1e+2'"),
    (["--mask-truncated", "-1e-3"], "unrecognized arguments: -1e-3"),           # a number where none belongs
    (["--device", "meta"], "--device meta: mgrpo.py runs on cuda, cpu or mps"),
])
def test_the_issues_bad_numbers_are_one_line_about_the_value(argv, said, monkeypatch, capsys, tmp_path):
    assert said in refused_before_loading(argv, monkeypatch, capsys, tmp_path)


def test_a_negative_number_in_any_notation_is_a_flags_value():
    parse = mgrpo.build_parser().parse_args
    assert parse(["--model", "x", "--lr", "-1e-3", "--beta", "-2.5E+1", "--max-grad-norm", "-inf"]).lr == -1e-3
    assert parse(["--model", "x", "--beta", "-2.5E+1"]).beta == -25.0
    assert math.isnan(parse(["--model", "x", "--temperature", "-nan"]).temperature)
    assert parse(["--model", "x", "--seed", "-3"]).seed == -3                   # argparse's own case, unchanged
    assert parse(["--model", "-1e-3"]).model == "-1e-3"                        # any flag that takes a value


def test_max_grad_norm_0_trains_unclipped_and_logs_the_norm_before_clipping(tiny, toy_data, tmp_path, monkeypatch):
    # HF Trainer's convention: 0 turns clipping off. It once scaled every gradient to 0: no weight moved.
    monkeypatch.setattr(mgrpo, "reward", lambda text, gold, question=None: float(len(text) % 2))      # both layers train
    runs = {}
    for norm in ("0", "1e9", "1e-4"):
        out = str(tmp_path / norm)
        mgrpo.main(cli_args(tiny, toy_data, out, "--steps", "1", "--eval-every", "0", "--max-grad-norm", norm))
        runs[norm] = (read_log(out)[0], weights(os.path.join(out, "step-000001")))
    before = weights(tiny)
    log0, w0 = runs["0"]
    assert log0["l1_grad_norm"] > 1e-3 and log0["l2_grad_norm"] > 1e-3 and log0["l1_skipped"] == 0
    assert any(not torch.equal(p, q) for p, q in zip(w0, before))                   # it trains
    assert all(torch.equal(p, q) for p, q in zip(w0, runs["1e9"][1]))              # exactly as if unclipped
    assert log0["l1_grad_norm"] == runs["1e9"][0]["l1_grad_norm"] == runs["1e-4"][0]["l1_grad_norm"]
    moved = [max((p - q).abs().max().item() for p, q in zip(runs[n][1], before)) for n in ("0", "1e-4")]
    assert moved[1] < moved[0]                                                     # clipping acts when asked


def test_a_data_file_that_is_not_utf8_is_one_line_naming_the_line_and_a_bom_is_read(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"question": "What is 1 + 1?", "gold": "2"}\n{"question": "Caf\xe9 prices?", "gold": "3"}\n')
    with pytest.raises(SystemExit) as e:
        mgrpo.load_problems(str(bad), "train")
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert f"{bad} line 2: not UTF-8 text (byte 0xe9 at column 18)" in err and "iconv" in err
    bom = tmp_path / "bom.jsonl"                                   # what Windows editors write: read as it is
    bom.write_bytes(b'\xef\xbb\xbf{"question": "q", "gold": "1"}\r\n{"question": "r", "gold": "2"}\r\n')
    assert mgrpo.load_problems(str(bom), "train") == [{"question": "q", "gold": "1"}, {"question": "r", "gold": "2"}]
    utf16 = tmp_path / "utf16.jsonl"                               # Windows' "Unicode"
    utf16.write_bytes('{"question": "q", "gold": "1"}\n'.encode("utf-16"))
    with pytest.raises(SystemExit):
        mgrpo.load_problems(str(utf16), "train")
    assert f"{utf16} is UTF-16 text: save it as UTF-8 (iconv -f utf-16 -t utf-8" in capsys.readouterr().err
    bom.write_bytes(b'\xef\xbb\xbf[{"question": "q", "gold": "1"}]')
    with pytest.raises(SystemExit):
        mgrpo.load_problems(str(bom), "train")
    err = capsys.readouterr().err
    assert "is one JSON array" in err and f"< {bom} > {tmp_path}/bom.lines.jsonl)" in err   # never '> the file itself'
    for name, wrote in (("a.json", "a.jsonl"), ("a.jsonl", "a.lines.jsonl"), ("a", "a.jsonl")):
        assert mgrpo.beside(name, ".jsonl", ".lines.jsonl") == wrote
    assert mgrpo.beside("utf8.jsonl", ".utf8.jsonl") == "utf8.utf8.jsonl"
    for path, said in ((tmp_path, f"{tmp_path} is a directory: the data is one .jsonl file"),
                       (bad, f"cannot read {bad}: Permission denied")):
        if path == bad:                                    # root reads through permission bits: simulate it
            monkeypatch.setattr(mgrpo, "open", lambda *a, **kw: (_ for _ in ()).throw(PermissionError(13, "Permission denied")),
                                raising=False)
        with pytest.raises(SystemExit) as e:
            mgrpo.load_problems(str(path), "test")
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1 and said in err


def test_a_non_utf8_data_file_through_the_command_line_is_one_line_and_leaves_no_folder(tiny, tmp_path, capsys):
    bad = tmp_path / "cp1252.jsonl"
    bad.write_bytes('{"question": "What is 2 \u00d7 3?", "gold": "6"}\n'.encode("cp1252"))
    with pytest.raises(SystemExit) as e:
        mgrpo.main(["--model", tiny, "--data", str(bad), "--device", "cpu", "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.splitlines() == [err] and "line 1: not UTF-8 text" in err
    assert not os.path.exists(tmp_path / "o")


def test_a_model_that_is_a_file_and_a_row_that_is_not_an_object_are_one_line(toy_data, tmp_path, capsys):
    err = refused(["--model", toy_data, "--data", toy_data, "--device", "cpu", "--output-dir", str(tmp_path / "o")],
                  capsys)
    assert f"{toy_data} is a file: a model is a directory" in err and not os.path.exists(tmp_path / "o")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"question": "q", "gold": "1"}\nnull\n' + "[" * 100_000 + "\n")
    with pytest.raises(SystemExit) as e:
        mgrpo.load_problems(str(rows), "train")
    assert e.value.code == 2 and "line 2: needs a 'question'" in capsys.readouterr().err
    rows.write_text('{"question": "q", "gold": "1"}\n{"question": 12345, "gold": "1"}\n')
    with pytest.raises(SystemExit) as e:          # a number where the question's text should be
        mgrpo.load_problems(str(rows), "train")
    assert e.value.code == 2 and "line 2: needs a 'question' or 'problem' field holding text" in capsys.readouterr().err
    rows.write_text('{"question": "q", "gold": "1"}\n' + "[" * 100_000 + "\n")
    with pytest.raises(SystemExit) as e:
        mgrpo.load_problems(str(rows), "train")
    assert e.value.code == 2 and "line 2: not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["append_log", "write_jsonl"])
def test_a_log_line_or_evaluation_file_that_cannot_be_written_is_one_line(target, tiny, toy_data, tmp_path,
                                                                          monkeypatch, capsys):
    real_open, seen = open, []

    def full_disk(path, *a, **kw):             # the disk fills in step 2: step 1's log line is written
        if ("log.jsonl" if target == "append_log" else "eval-toy-000002.jsonl") in str(path):
            seen.append(path)
            if target == "write_jsonl" or len(seen) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, *a, **kw)

    monkeypatch.setattr(mgrpo, "open", full_disk, raising=False)
    out = str(tmp_path / "full")
    with pytest.raises(SystemExit) as e:
        mgrpo.main(cli_args(tiny, toy_data, out, "--steps", "2", "--eval-every", "2"))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and err[-1].startswith(f"mgrpo: error: cannot write {out}/") and \
        "(No space left on device)" in err[-1] and not any("Traceback" in ln for ln in err)
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")] and [x["step"] for x in read_log(out)] == [1]


# --resume and --output-dir: a checkpoint that is not whole, a directory that holds another run, and a
# failed run's folders. Nothing is created or removed that the user did not ask for.

def snapshot(folder):
    """Every file under folder with its bytes, and every directory: what a refused command must leave."""
    seen = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            seen[os.path.relpath(os.path.join(root, d), folder) + "/"] = None
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                seen[os.path.relpath(os.path.join(root, f), folder)] = fh.read()
    return seen


def refused(argv, capsys):
    with pytest.raises(SystemExit) as e:
        mgrpo.main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("lost", ["trainer_state.pt", "optimizer.pt", "model.safetensors", "config.json"])
def test_resuming_a_checkpoint_that_lacks_a_file_is_one_line_naming_it(lost, two_step_run, tmp_path, capsys):
    b = copy_run(two_step_run, str(tmp_path / "b"), keep_steps=2)
    os.remove(os.path.join(b, "step-000002", lost))
    before = snapshot(b)
    err = refused(["--resume", b, "--steps", "3"], capsys)                 # the output directory: its latest
    assert f"--resume {b}: {b}/step-000002 is not a whole checkpoint: it has no {lost}" in err
    assert f"move it aside to resume from the one before it, {b}/step-000001" in err
    err = refused(["--resume", os.path.join(b, "step-000002"), "--steps", "3"], capsys)      # the checkpoint itself
    assert f"step-000002 is not a whole checkpoint: it has no {lost}" in err
    assert snapshot(b) == before


def test_resuming_a_folder_without_a_whole_checkpoint_or_with_a_damaged_one_is_one_line(two_step_run, tmp_path,
                                                                                       capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"--resume: no checkpoint in {empty}" in refused(["--resume", str(empty)], capsys)
    a_file = tmp_path / "f"
    a_file.write_text("x")
    assert f"--resume: not a directory: {a_file}" in refused(["--resume", str(a_file)], capsys)
    b = copy_run(two_step_run, str(tmp_path / "b"), keep_steps=1)
    for lost in ("trainer_state.pt", "optimizer.pt"):
        os.remove(os.path.join(b, "step-000001", lost))
    assert "it has no optimizer.pt, trainer_state.pt" in refused(["--resume", b], capsys)
    assert "copy them from where the run was made" in refused(["--resume", b], capsys)
    c = copy_run(two_step_run, str(tmp_path / "c"), keep_steps=2)
    state = os.path.join(c, "step-000002", "trainer_state.pt")
    with open(state, "r+b") as f:                                  # a copy cut short
        f.truncate(os.path.getsize(state) // 2)
    err = refused(["--resume", c, "--steps", "3"], capsys)
    assert f"--resume: cannot read {state} (" in err and "damaged" in err
    torch.save({"something": "else"}, state)
    assert "was not written by mgrpo.py" in refused(["--resume", c, "--steps", "3"], capsys)


def test_a_damaged_optimizer_state_is_one_line_when_it_is_read(two_step_run, tmp_path, capsys):
    c = copy_run(two_step_run, str(tmp_path / "c"), keep_steps=1)
    opt = os.path.join(c, "step-000001", "optimizer.pt")
    with open(opt, "r+b") as f:
        f.truncate(100)
    err = refused(["--resume", c], capsys)
    assert f"--resume: cannot read {opt} (" in err and read_log(c) == read_log(two_step_run)[:1]


def test_only_step_directories_with_a_number_are_checkpoints_and_keep_last_deletes_nothing_else(tmp_path):
    out = tmp_path / "o"
    for d in ("step-000002", "step-1000000", "step-000010", "step-best", "step-000003.tmp", "step-9x"):
        (out / d).mkdir(parents=True)
    (out / "step-notes.txt").write_text("mine")
    found = [os.path.basename(c) for c in mgrpo.checkpoints(str(out))]
    assert found == ["step-000002", "step-000010", "step-1000000"]          # in step order, past 6 digits too


@pytest.mark.parametrize("holds", ["log.jsonl", "log.jsonl.tmp", "step-000003/", "step-000004.tmp/",
                                   "eval-toy-000002.jsonl", "eval_only-toy.jsonl", "trainer_state.pt"])
def test_a_branch_into_a_directory_that_holds_another_run_is_refused_and_changes_nothing(holds, two_step_run,
                                                                                          tmp_path, capsys):
    # --resume OLD --output-dir DIR must never write into DIR's run: its log would be overwritten and the
    # two runs' checkpoints mixed. Each kind of file a run leaves is enough to refuse.
    other = tmp_path / "other"
    if holds.endswith("/"):
        (other / holds).mkdir(parents=True)
        (other / holds / "config.json").write_text("{}")
    else:
        other.mkdir()
        (other / holds).write_text('{"step": 1}\n')
    before, source = snapshot(other), snapshot(two_step_run)
    err = refused(["--resume", os.path.join(two_step_run, "step-000001"), "--steps", "2", "--output-dir", str(other)],
                  capsys)
    assert f"--output-dir {other} " in err and "choose a new --output-dir" in err
    assert snapshot(other) == before and snapshot(two_step_run) == source


def test_a_branch_into_a_checkpoint_or_through_a_link_to_its_own_directory_is_refused(two_step_run, tmp_path,
                                                                                      capsys):
    source = snapshot(two_step_run)
    ckpt1 = os.path.join(two_step_run, "step-000001")
    inside = os.path.join(two_step_run, "step-000002")                  # a checkpoint is no output directory
    assert f"--output-dir {inside} is a checkpoint of another run" in refused(
        ["--resume", ckpt1, "--steps", "2", "--output-dir", inside], capsys)
    link = tmp_path / "link"
    link.symlink_to(two_step_run)                                      # the run's own directory by another name
    err = refused(["--resume", ckpt1, "--steps", "2", "--output-dir", str(link)], capsys)
    assert "holds later checkpoints (step-000002)" in err
    assert snapshot(two_step_run) == source


def test_a_branch_that_fails_before_training_leaves_nothing_and_can_be_run_again(two_step_run, tmp_path, capsys,
                                                                                 monkeypatch):
    c = str(tmp_path / "c")
    argv = ["--resume", os.path.join(two_step_run, "step-000001"), "--steps", "2", "--output-dir", c]
    monkeypatch.setattr(mgrpo, "check_context", lambda *a: mgrpo.die("the model does not fit"))
    assert "the model does not fit" in refused(argv, capsys)
    assert not os.path.exists(c)                        # no copied log.jsonl that would refuse the next try
    monkeypatch.undo()
    mgrpo.main(argv)
    assert [x["step"] for x in read_log(c)] == [1, 2] and read_log(c)[0] == read_log(two_step_run)[0]


def fail_at(where, monkeypatch):
    """argv that makes a run fail at `where`, after its output directory is made."""
    if where == "data":
        return ["--data", "/nonexistent/x.jsonl"]
    if where == "model":
        return ["--model", "/nonexistent/model"]
    if where == "reward":                       # the first step's rewards, before any log line
        monkeypatch.setattr(mgrpo, "reward", lambda text, gold, question=None: 2.0)
    return []


@pytest.mark.parametrize("holding", [(), ("notes.txt",), ("sub/", "sub/data.csv")])
@pytest.mark.parametrize("where", ["data", "model", "reward"])
def test_a_failed_run_never_removes_a_folder_that_was_there_before_it(where, holding, tiny, toy_data, tmp_path,
                                                                      monkeypatch, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    for f in holding:
        (out / f).mkdir() if f.endswith("/") else (out / f).write_text("keep me")
    before = snapshot(out)
    argv = cli_args(tiny, toy_data, str(out), "--steps", "1", "--eval-every", "0") + fail_at(where, monkeypatch)
    with pytest.raises(SystemExit) as e:
        mgrpo.main(argv)
    assert e.value.code == 2 and capsys.readouterr().err.strip().splitlines()[-1].startswith("mgrpo: error: ")
    assert out.is_dir() and snapshot(out) == before


@pytest.mark.parametrize("where", ["data", "model", "reward"])
def test_a_failed_run_removes_exactly_the_folders_it_created(where, tiny, toy_data, tmp_path, monkeypatch, capsys):
    (tmp_path / "yours").mkdir()
    out = tmp_path / "yours" / "new" / "run" / "a"          # three folders made by the run, one there before
    argv = cli_args(tiny, toy_data, str(out), "--steps", "1", "--eval-every", "0") + fail_at(where, monkeypatch)
    with pytest.raises(SystemExit):
        mgrpo.main(argv)
    assert os.listdir(tmp_path) == ["yours"] and os.listdir(tmp_path / "yours") == []


def readme_section(name):
    readme = open(os.path.join(HERE, "README.md"), encoding="utf-8").read()
    part = readme[readme.index(f"## {name}"):]
    return part[:part.index("\n## ", 1)]


def test_the_readme_and_docs_cpu_commands_set_one_thread_as_written_and_their_flags_pass():
    # The toy commands say "one thread": the command must set it (torch otherwise takes one per core, 2.9-5.8x
    # slower on this project's busy 2-core machine), and its flags must get past check_args.
    running = open(os.path.join(HERE, "docs", "running.md"), encoding="utf-8").read()
    text = readme_section("Run it") + running.replace("$A", running[running.index('A="') + 3:].split('"')[0])
    commands = [c for c in re.sub(r"\\\n\s*", " ", text).splitlines() if "mgrpo.py --model toy/model" in c]
    assert len(commands) == 3
    for command in commands:
        assert command.startswith("OMP_NUM_THREADS=1 python mgrpo.py "), command
        argv = command.split("#")[0].split()[3:]
        mgrpo.check_args(mgrpo.build_parser().parse_args(argv))


def test_the_readme_api_block_runs_offline_with_its_toy_model_line_as_written(tiny, tmp_path, monkeypatch):
    # The README's one-line offline variant, word for word, in place of the block's flags line; toy/model is
    # what `python examples/toy.py write toy/` makes (here the tiny model of the same builder, for speed).
    part = readme_section("Use it from your own code")
    start = part.index("```python\n") + 10
    code = part[start:part.index("\n```", start)]
    (flags,) = [ln for ln in code.splitlines() if ln.startswith("flags = [")]
    (offline,) = [ln for ln in part.splitlines() if ln.startswith("flags = [") and ln != flags]
    assert '"toy/model"' in offline and '"--device", "cpu"' in offline
    monkeypatch.chdir(tmp_path)
    os.makedirs("toy")
    os.symlink(tiny, "toy/model")
    printed, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)                                   # as the README runs it: OMP_NUM_THREADS=1
    try:
        exec(code.replace(flags, offline), {"print": lambda *a, **kw: printed.append(a)})
    finally:
        torch.set_num_threads(threads)
    steps = int(offline.split('"--steps", "')[1].split('"')[0])
    assert len(printed) == steps + 1 and {"acc_t1", "delta"} <= set(printed[-1][0])
    assert os.path.isfile("eval.jsonl") and os.path.isfile(os.path.join("my-model", "config.json"))


# -----------------------------------------------------------------------------
# How a run ends: a stop signal, out of memory, a full disk, a power cut


@pytest.fixture
def default_signals():
    """SIGINT and SIGTERM as in a terminal, whatever the shell that started pytest did (a job started with
    `&` ignores SIGINT); restored after the test. Returns the handlers set."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    for s, handler in before.items():
        signal.signal(s, handler)


def run_until(tiny, toy_data, out, monkeypatch, capsys, at_step, action, *extra):
    """The CLI with `action()` done at the start of step `at_step` (inside train_step); returns the
    exit code and the lines it wrote on stderr. OMP_NUM_THREADS unset: the line would name it."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    real, steps = mgrpo.train_step, []

    def step(*a, **kw):
        steps.append(1)
        if len(steps) == at_step:
            action()
        return real(*a, **kw)

    monkeypatch.setattr(mgrpo, "train_step", step)
    with pytest.raises(SystemExit) as e:
        mgrpo.main(cli_args(tiny, toy_data, out, "--steps", "4", "--eval-every", "0", *extra))
    return e.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_mid_step_ends_with_one_line_naming_the_checkpoint_and_resume(sig, code, tiny, toy_data,
                                                                                    tmp_path, monkeypatch, capsys,
                                                                                    default_signals):
    out = str(tmp_path / "s")
    rc, err = run_until(tiny, toy_data, out, monkeypatch, capsys, 3, lambda: os.kill(os.getpid(), sig))
    name = signal.Signals(sig).name
    assert rc == code and err[-1] == (f"mgrpo: stopped by {name} during step 3; latest complete checkpoint: "
                                      f"{out}/step-000002; continue with: python mgrpo.py --resume {out}")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")          # the README's thread count goes on with the run
    assert mgrpo.how_to_go_on(mgrpo.build_parser().parse_args(["--output-dir", out])).endswith(
        f"continue with: OMP_NUM_THREADS=1 python mgrpo.py --resume {out}")
    assert not any("Traceback" in ln for ln in err)
    assert [x["step"] for x in read_log(out)] == [1, 2] and mgrpo.checkpoints(out)[-1].endswith("step-000002")
    assert {s: signal.getsignal(s) for s in default_signals} == default_signals   # main() put the handlers back
    monkeypatch.undo()
    mgrpo.main(["--resume", out])                                             # and the command it names works
    assert [x["step"] for x in read_log(out)] == [1, 2, 3, 4]


def test_a_stop_before_any_checkpoint_says_how_to_start_over(tiny, toy_data, tmp_path, monkeypatch, capsys,
                                                             default_signals):
    # Nothing written yet: the folder the run made is gone again, and the same command starts over.
    out = str(tmp_path / "s0")
    rc, err = run_until(tiny, toy_data, out, monkeypatch, capsys, 1, lambda: os.kill(os.getpid(), signal.SIGINT),
                        "--save-every", "2")
    assert rc == 130 and err[-1] == ("mgrpo: stopped by SIGINT during step 1; no checkpoint yet (the first comes at "
                                     "step 2); nothing of it was written: run the same command again")
    assert not os.path.exists(out)
    # A log line written, no checkpoint: the README's toy command saves only at its end (--steps below
    # --save-every), which is when its first checkpoint comes.
    rc, err = run_until(tiny, toy_data, out, monkeypatch, capsys, 2, lambda: os.kill(os.getpid(), signal.SIGINT),
                        "--save-every", "100")
    assert rc == 130 and err[-1] == (f"mgrpo: stopped by SIGINT during step 2; no checkpoint yet (the first comes at "
                                     f"step 4); to start over, remove {out} and run the same command again, or "
                                     f"choose another --output-dir")
    # A folder that holds files of the user's: only the run's own files are named, never the folder.
    shutil.rmtree(out)
    os.makedirs(out)
    open(os.path.join(out, "notes.txt"), "w").write("mine")
    rc, err = run_until(tiny, toy_data, out, monkeypatch, capsys, 2, lambda: os.kill(os.getpid(), signal.SIGINT),
                        "--save-every", "100")
    assert rc == 130 and err[-1].endswith(f"to start over, remove log.jsonl from {out} and run the same command "
                                          "again, or choose another --output-dir")
    assert sorted(os.listdir(out)) == ["log.jsonl", "notes.txt"] and open(os.path.join(out, "notes.txt")).read() == "mine"


def test_a_signal_ignored_by_whoever_started_the_run_stays_ignored(tiny, toy_data, tmp_path, monkeypatch, capsys,
                                                                    default_signals):
    signal.signal(signal.SIGINT, signal.SIG_IGN)               # `mgrpo.py ... &` from a script, or nohup-like
    seen = []
    real = mgrpo.train_step
    monkeypatch.setattr(mgrpo, "train_step", lambda *a, **kw: seen.append(signal.getsignal(signal.SIGINT)) or
                        real(*a, **kw))
    mgrpo.main(cli_args(tiny, toy_data, str(tmp_path / "ign"), "--steps", "1", "--eval-every", "0"))
    assert seen == [signal.SIG_IGN] and signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def interrupt_during_save(monkeypatch, times):
    """Send SIGINT `times` times while the optimizer state of the next checkpoint is being written."""
    real = torch.save

    def save(obj, path, *a, **kw):
        if path.endswith("optimizer.pt"):
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return real(obj, path, *a, **kw)

    monkeypatch.setattr(torch, "save", save)


def test_a_stop_while_a_checkpoint_is_written_completes_it_first(tiny, toy_data, tmp_path, monkeypatch, capsys,
                                                                 default_signals):
    out = str(tmp_path / "w")
    rc, err = run_until(tiny, toy_data, out, monkeypatch, capsys, 2, lambda: interrupt_during_save(monkeypatch, 1))
    assert rc == 130 and "finishing the checkpoint" in "\n".join(err)
    assert err[-1].startswith("mgrpo: stopped by SIGINT during step 2; latest complete checkpoint: "
                              f"{out}/step-000002")
    assert sorted(os.listdir(out)) == ["log.jsonl", "step-000001", "step-000002"]
    assert torch.load(os.path.join(out, "step-000002", "trainer_state.pt"), weights_only=True)["step"] == 2
    assert [x["step"] for x in read_log(out)] == [1, 2]


def test_a_second_stop_while_a_checkpoint_is_written_leaves_only_a_tmp_directory(tiny, toy_data, tmp_path,
                                                                                   monkeypatch, capsys, default_signals):
    out = str(tmp_path / "w2")
    rc, err = run_until(tiny, toy_data, out, monkeypatch, capsys, 2, lambda: interrupt_during_save(monkeypatch, 2))
    assert rc == 130 and err[-1].startswith(f"mgrpo: stopped by SIGINT during step 2; latest complete checkpoint: "
                                            f"{out}/step-000001")
    assert "step-000002.tmp" in os.listdir(out) and "step-000002" not in os.listdir(out)
    monkeypatch.undo()
    mgrpo.main(["--resume", out])                 # the cut .tmp is neither read nor in the way
    assert [x["step"] for x in read_log(out)] == [1, 2, 3, 4] and "step-000002.tmp" not in os.listdir(out)


def out_of_memory(*a, **kw):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


@pytest.mark.parametrize("target,nth,where,flag", [
    ("generate", 1, "Layer-1 rollouts", "--gen-batch (now 256) or --max-new-tokens (now 8)"),
    ("generate", 2, "Layer-2 rollouts", "--gen-batch (now 256) or --max-new-tokens (now 8)"),
    ("policy_update", 1, "the Layer-1 update", "--micro-tokens (now 16384)"),
    ("policy_update", 2, "the Layer-2 update", "--micro-tokens (now 16384)"),
    ("evaluate", 1, "evaluation", "--gen-batch (now 256) or --max-new-tokens (now 8)")])
def test_out_of_memory_names_the_phase_and_the_flag_that_lowers_it(target, nth, where, flag, tiny, toy_data,
                                                                    tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "oom")
    real, calls = getattr(mgrpo, target), []

    def fail_on_nth(*a, **kw):
        calls.append(1)
        return out_of_memory() if len(calls) == nth else real(*a, **kw)

    def arm():
        calls.clear()
        monkeypatch.setattr(mgrpo, target, fail_on_nth)

    monkeypatch.setattr(mgrpo, "reward", lambda text, gold, question=None: float(len(text) % 2))   # both layers train
    rc, err = run_until(tiny, toy_data, out, monkeypatch, capsys, 2, arm, "--eval-every", "2", "--l2-inputs", "all")
    smaller = "--micro-tokens 8192" if target == "policy_update" else "--gen-batch 128"
    assert rc == 1 and err[-1] == (f"mgrpo: error: out of GPU memory in {where}: lower {flag}; latest complete "
                                   f"checkpoint: {out}/step-000001; continue with: python mgrpo.py --resume {out} "
                                   f"{smaller}")
    assert not any("Traceback" in ln for ln in err)
    assert sorted(d for d in os.listdir(out) if d.startswith("step-")) == ["step-000001"]
    assert all(torch.isfinite(p).all() for p in weights(os.path.join(out, "step-000001")))


def test_out_of_memory_in_the_update_suggests_checkpointing_when_it_is_off(tiny, toy_data, tmp_path, monkeypatch,
                                                                          capsys):
    rc, err = run_until(tiny, toy_data, str(tmp_path / "o"), monkeypatch, capsys, 1,
                        lambda: monkeypatch.setattr(mgrpo, "policy_update", out_of_memory), "--no-grad-checkpointing")
    assert rc == 1 and "lower --micro-tokens (now 16384) or turn on --grad-checkpointing" in err[-1]


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   RuntimeError("Error while serializing: I/O error: No space left on device "
                                                "(os error 28)")])           # safetensors' own error type
def test_a_full_disk_while_saving_removes_the_tmp_keeps_the_previous_checkpoint_and_names_the_space(
        error, tiny, toy_data, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "full")

    def full_disk():
        real = torch.save
        monkeypatch.setattr(torch, "save", lambda obj, path, *a, **kw:
                            (_ for _ in ()).throw(error) if "step-000002" in str(path) else real(obj, path, *a, **kw))

    rc, err = run_until(tiny, toy_data, out, monkeypatch, capsys, 2, full_disk, "--keep-last", "1")
    assert rc == 1 and err[-1].startswith(f"mgrpo: error: no space left on the device for checkpoint "
                                          f"{out}/step-000002: it needs about ")
    assert f" GiB free; latest complete checkpoint: {out}/step-000001;" in err[-1]
    assert sorted(d for d in os.listdir(out) if d.startswith("step-")) == ["step-000001"]   # no .tmp; kept
    assert all(torch.isfinite(p).all() for p in weights(os.path.join(out, "step-000001")))


def test_the_checkpoint_size_named_on_a_full_disk_is_what_the_checkpoint_takes(two_step_run):
    ckpt = os.path.join(two_step_run, "step-000002")
    on_disk = sum(os.path.getsize(os.path.join(ckpt, f)) for f in os.listdir(ckpt))
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    estimate = mgrpo.tensor_bytes(list(model.parameters())) + \
        mgrpo.tensor_bytes(torch.load(os.path.join(ckpt, "optimizer.pt"), weights_only=True))
    assert 0.9 * on_disk < estimate <= on_disk, (estimate, on_disk)       # files add headers and the tokenizer


def test_every_checkpoint_file_reaches_the_disk_before_the_rename_and_the_rename_after(tiny, toy_data, tmp_path,
                                                                                      monkeypatch):
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b))[1])
    out = os.path.realpath(str(tmp_path / "d"))
    mgrpo.main(cli_args(tiny, toy_data, out, "--steps", "1", "--eval-every", "0"))
    ckpt = os.path.join(out, "step-000001")
    k = events.index(("replace", ckpt))
    synced = {p for what, p in events[:k] if what == "fsync"}
    files = {os.path.join(ckpt + ".tmp", f) for f in os.listdir(ckpt)}
    assert files and files | {ckpt + ".tmp"} <= synced                    # every file, and the directory
    assert ("fsync", out) in events[k + 1:]                                # the rename itself
    assert ("fsync", os.path.join(out, "log.jsonl")) in events[:k]         # the log line before the checkpoint


# -----------------------------------------------------------------------------
# Rollouts are samples of πθ, and the update scores them with the same πθ


EVIL_GENERATION_CONFIG = {"do_sample": True, "temperature": 0.05, "top_k": 1, "top_p": 0.1, "min_p": 0.5,
                          "repetition_penalty": 50.0, "no_repeat_ngram_size": 1, "min_new_tokens": 5,
                          "suppress_tokens": [20, 21, 22], "bos_token_id": 0, "eos_token_id": 3, "pad_token_id": 0}


def test_the_models_generation_config_never_reaches_rollouts_or_greedy_evaluation(tiny, tmp_path):
    evil = str(tmp_path / "evil")
    shutil.copytree(tiny, evil)
    with open(os.path.join(evil, "generation_config.json"), "w") as f:
        json.dump(EVIL_GENERATION_CONFIG, f)
    prompts, outs = [[5, 6, 7], [8, 9, 10, 11]], []
    for path in (tiny, evil):
        (run, _) = tiny_run(path)
        torch.manual_seed(3)
        sampled = mgrpo.generate(run.rollout, prompts, 4, run.tk, 12, temperature=0.7)
        greedy = mgrpo.generate(run.rollout, prompts, 1, run.tk, 12, greedy=True)
        outs.append((sampled, greedy))
        assert (run.policy.generation_config.repetition_penalty == 50.0) == (path == evil)   # kept, unused
    assert outs[0] == outs[1]


# -----------------------------------------------------------------------------
# Non-finite steps in a run


def test_non_finite_steps_in_a_row_stop_the_run_and_no_checkpoint_holds_nan(tiny, toy_data, tmp_path,
                                                                             monkeypatch, capsys):
    nan_loss(monkeypatch)
    monkeypatch.setattr(mgrpo, "reward", lambda text, gold, question=None: float(len(text) % 2))   # both layers train
    out = str(tmp_path / "nan")
    with pytest.raises(SystemExit) as e:
        mgrpo.main(cli_args(tiny, toy_data, out, "--steps", "10", "--eval-every", "0"))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and "non-finite" in err[-1]
    log = read_log(out)
    assert 1 <= len(log) < 10 and log[0]["l1_skipped"] == 1 and log[0]["l2_skipped"] == 1
    for d in (d for d in os.listdir(out) if d.startswith("step-")):
        assert all(torch.isfinite(p).all() for p in weights(os.path.join(out, d)))


# -----------------------------------------------------------------------------
# For copiers: the reward contract, one log schema, the Python API of the README, data and flags


def test_a_reward_given_to_cli_is_the_runs_reward(tiny, toy_data, tmp_path):
    out = str(tmp_path / "own")
    with pytest.raises(SystemExit) as e:
        mgrpo.cli(cli_args(tiny, toy_data, out, "--steps", "1", "--eval-every", "0"),
                  reward=lambda completion, problem: 0.25)
    assert e.value.code == 0 and read_log(out)[0]["l1_reward"] == 0.25


def test_readme_command_line_reward_recipe_runs_as_written(tiny, toy_data, tmp_path):
    # The README's train_mine.py, word for word, as a script outside the checkout: its reward falls back to
    # mgrpo.rule_reward, which once recursed when the recipe replaced rule_reward with it.
    readme = open(os.path.join(HERE, "README.md"), encoding="utf-8").read()
    start = readme.index("```python\n# train_mine.py") + 10
    script = tmp_path / "train_mine.py"
    script.write_text(readme[start:readme.index("\n```", start)] + "\n", encoding="utf-8")
    spec = importlib.util.spec_from_file_location("train_mine", script)
    mine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mine)
    assert mine.my_reward("\\boxed{2}", {"gold": "2"}) == 1.0 and mine.my_reward("x" * 2001 + "\\boxed{2}", {"gold": "2"}) == 0.5
    out = str(tmp_path / "mine")
    env = {**os.environ, "PYTHONPATH": HERE, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(script), *cli_args(tiny, toy_data, out, "--steps", "1", "--eval-every", "0")],
                       cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "RecursionError" not in r.stderr and len(read_log(out)) == 1


def test_setup_returns_the_policy_in_training_mode_so_gradient_checkpointing_acts(tiny):
    (run, args) = tiny_run(tiny)
    assert run.policy.training and args.grad_checkpointing
    assert all(m.training for m in run.policy.modules())


def test_a_file_already_in_question_and_gold_form_loads_as_it_is(tmp_path):
    data = write_jsonl(tmp_path / "qg.jsonl", [{"question": "What is 1 + 1?", "gold": "2", "answer": "#### 3"},
                                               {"question": "Name it.", "gold": " \\text{Monday} "}])
    assert [p["gold"] for p in mgrpo.load_problems(data, "train")] == ["2", "\\text{Monday}"]


def test_readme_python_api_snippet_runs(tiny, tmp_path, monkeypatch):
    # The README's "Use it from your own code" block, exactly, but for its `flags = [...]` line: the tiny
    # model and a few short steps instead of a real model's run.
    readme = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md"), encoding="utf-8").read()
    part = readme[readme.index("## Use it from your own code"):]
    start = part.index("```python\n") + 10
    code = part[start:part.index("\n```", start)]
    (flags,) = [ln for ln in code.splitlines() if ln.startswith("flags = [")]
    tiny_flags = ["--model", tiny, "--steps", "2", "--batch-size", "2", "--G", "3", "--H", "2",
                  "--max-new-tokens", "8", "--device", "cpu"]
    monkeypatch.chdir(tmp_path)
    printed = []
    scope = {"print": lambda *a, **kw: printed.append(a)}
    exec(code.replace(flags, f"flags = {tiny_flags!r}"), scope)
    assert scope["run"].reward is scope["my_reward"] and len(printed) == 3
    assert set(printed[-1][0]) >= {"acc_t1", "acc_t2", "delta"}
    assert os.path.isfile(tmp_path / "eval.jsonl") and os.path.isfile(tmp_path / "my-model" / "config.json")


@pytest.mark.parametrize("argv,needle", [(["--save-every", "-1"], "--save-every must be >= 0"),
                                         (["--eval-every", "-5"], "--eval-every must be >= 0"),
                                         (["--eval-n", "-1"], "--eval-n must be >= 0")])
def test_negative_schedules_exit_2_with_one_line(argv, needle, tiny, toy_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        mgrpo.main(cli_args(tiny, toy_data, str(tmp_path / "neg"), "--steps", "1", *argv))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and needle in err and len(err.splitlines()) == 1
    assert not os.path.exists(tmp_path / "neg")


def test_save_every_0_checkpoints_only_at_the_end(tiny, toy_data, tmp_path):
    out = str(tmp_path / "s0")
    mgrpo.main(cli_args(tiny, toy_data, out, "--steps", "2", "--save-every", "0", "--eval-every", "0"))
    assert sorted(d for d in os.listdir(out) if d.startswith("step-")) == ["step-000002"]


def test_eval_only_never_overwrites_an_earlier_evaluation_and_a_training_run_refuses_its_dir(tiny, toy_data,
                                                                                           tmp_path, capsys):
    out = str(tmp_path / "ev")
    argv = ["--model", tiny, "--data", toy_data, "--eval-only", "--eval-n", "2", "--max-new-tokens", "4",
            "--device", "cpu", "--output-dir", out]
    mgrpo.main(argv)
    path = os.path.join(out, "eval_only-toy.jsonl")
    with open(path, "a") as f:
        f.write("mine\n")
    before = open(path).read()
    for again in (argv, cli_args(tiny, toy_data, out, "--steps", "1")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            mgrpo.main(again)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1 and "eval_only-toy.jsonl" in err
    assert open(path).read() == before and sorted(os.listdir(out)) == ["eval_only-toy.jsonl"]


def test_two_eval_sets_of_one_name_are_refused_in_one_line(tiny, toy_data, tmp_path, capsys):
    rows = [{"question": "What is 1 + 1?", "answer": "2"}]
    a = write_jsonl(os.makedirs(tmp_path / "a") or tmp_path / "a" / "test.jsonl", rows)
    b = write_jsonl(os.makedirs(tmp_path / "b") or tmp_path / "b" / "test.jsonl", rows)
    with pytest.raises(SystemExit) as e:
        mgrpo.main(["--model", tiny, "--data", toy_data, "--eval-data", f"{a},{b}", "--device", "cpu",
                    "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and a in err and b in err and "'test'" in err


def test_a_null_gold_field_falls_through_to_the_next_and_none_at_all_is_refused(tmp_path, capsys):
    assert mgrpo.gold_of({"answer": None, "solution": "so \\boxed{5}"}) == "5"
    assert mgrpo.gold_of({"answer": None, "final_answer": None, "solution": "\\boxed{6}"}) == "6"
    assert mgrpo.gold_of({"final_answer": [], "answer": None}) is None
    bad = write_jsonl(tmp_path / "null.jsonl", [{"question": "q", "answer": "1"}, {"question": "r", "answer": None}])
    with pytest.raises(SystemExit) as e:
        mgrpo.load_problems(bad, "train")
    assert e.value.code == 2 and "line 2" in capsys.readouterr().err


# -----------------------------------------------------------------------------
# A picture of a run: examples/plot_run.py (drawing needs matplotlib; reading the log does not)

R1, L2_RATE, L2_KEEP, KL1, KL2 = (("l1_reward", "reward", "-"), ("l2_correction_rate", "correction rate", "-"),
                                  ("l2_keep_frac", "keep fraction", ":"), ("l1_kl", "Layer 1", "-"),
                                  ("l2_kl", "Layer 2", "--"))


def test_plot_reads_every_curve_of_a_two_step_run(two_step_run):
    import plot_run
    log = read_log(two_step_run)
    c = plot_run.curves(plot_run.read_log(two_step_run))
    assert c["Layer 1: reward"] == {R1: ([1, 2], [x["l1_reward"] for x in log])}
    assert c["Layer 2: corrections"][L2_KEEP] == ([1, 2], [x["l2_keep_frac"] for x in log])
    assert c["KL to the reference"][KL1] == ([1, 2], [x["l1_kl"] for x in log])
    assert c["evaluation"][("toy/acc_t1", "toy Acc@t1", "-")] == ([1, 2], [x["eval"]["toy"]["acc_t1"] for x in log])
    assert c["evaluation"][("toy/acc_t2", "toy Acc@t2", "--")] == ([1, 2], [x["eval"]["toy"]["acc_t2"] for x in log])


def write_log(folder, records, tail=""):
    os.makedirs(folder)
    with open(os.path.join(folder, "log.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
        f.write(tail)
    return str(folder)


def test_plot_draws_what_a_log_has_and_leaves_gaps_for_null(tmp_path):
    import plot_run
    mgrpo_log = write_log(tmp_path / "mgrpo", [
        {"step": 1, "l1_reward": 0.5, "l1_kl": 0.0, "l2_groups": 4, "l2_keep_frac": 0.25, "l2_correction_rate": None},
        {"step": 2, "l1_reward": 0.75, "l1_kl": 0.5, "l2_groups": 0},                # no wrong answer: no Layer 2
        {"step": 3, "l1_reward": 0.25, "l1_kl": 1.0, "l2_keep_frac": 0.5, "l2_correction_rate": 0.125, "l2_kl": 2.0,
         "eval": {"a": {"acc_t1": 0.5, "acc_t2": 0.625}, "b": {"acc_t1": 0.0, "acc_t2": None}}}],
        tail='{"step": 4, "l1_rew')                                                  # cut by a kill
    c = plot_run.curves(plot_run.read_log(mgrpo_log))
    assert c["Layer 1: reward"] == {R1: ([1, 2, 3], [0.5, 0.75, 0.25])}
    assert c["Layer 2: corrections"] == {L2_RATE: ([3], [0.125]), L2_KEEP: ([1, 3], [0.25, 0.5])}
    assert c["KL to the reference"] == {KL1: ([1, 2, 3], [0.0, 0.5, 1.0]), KL2: ([3], [2.0])}
    assert c["evaluation"] == {("a/acc_t1", "a Acc@t1", "-"): ([3], [0.5]),
                               ("a/acc_t2", "a Acc@t2", "--"): ([3], [0.625]),
                               ("b/acc_t1", "b Acc@t1", "-"): ([3], [0.0])}
    grpo_log = write_log(tmp_path / "grpo", [{"step": 1, "l1_reward": 0.5, "l1_kl": 0.0}])   # --layers 1, no eval
    assert set(plot_run.curves(plot_run.read_log(grpo_log))) == {"Layer 1: reward", "KL to the reference"}


def test_plot_run_draws_one_png_with_several_runs_overlaid(two_step_run, tmp_path):
    pytest.importorskip("matplotlib")
    import plot_run
    run = shutil.copytree(two_step_run, tmp_path / "mgrpo", ignore=shutil.ignore_patterns("step-*"))
    grpo = write_log(tmp_path / "grpo", [{"step": s, "l1_reward": 0.1 * s, "l1_kl": 0.0} for s in (1, 2)])
    assert plot_run.main([str(run)]) == os.path.join(str(run), "run.png")
    out = plot_run.main([str(run), grpo, "--out", str(tmp_path / "both.png")])
    for png in (os.path.join(str(run), "run.png"), out):
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(png) > 10_000


@pytest.mark.parametrize("make,needle", [(lambda d: str(d / "nowhere"), "not found"),
                                         (lambda d: str(d), "no log.jsonl"),
                                         (lambda d: write_log(d / "empty", [], tail="{oops\n"), "holds no step")])
def test_plot_run_bad_input_is_one_line(make, needle, tmp_path, capsys):
    import plot_run
    with pytest.raises(SystemExit) as e:
        plot_run.main([make(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and needle in err and len(err.splitlines()) == 1


def test_plot_run_without_matplotlib_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    import plot_run
    monkeypatch.setitem(sys.modules, "matplotlib", None)                # as if it were not installed
    run = write_log(tmp_path / "run", [{"step": 1, "l1_reward": 0.5, "l1_kl": 0.0}])
    with pytest.raises(SystemExit) as e:
        plot_run.main([run])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "pip install matplotlib" in err and len(err.splitlines()) == 1
    assert not os.path.exists(os.path.join(run, "run.png"))


# -----------------------------------------------------------------------------
# Model families: every causal LM people train with GRPO gets its own distribution, its own prompt,
# BOS once, and a context-length check (`pytest -k families`). Tiny random models of the real classes;
# the real chat templates of ../shared/chat-templates (skipped where absent).

FAMILY_LAYOUT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False)
FAMILIES = {  # name: (config class, model class, settings); post-processing of the logits as in the real models
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 8}),
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"head_dim": 8, "final_logit_softcapping": 30.0}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {"head_dim": 8, "final_logit_softcapping": 30.0}),
    "granite": ("GraniteConfig", "GraniteForCausalLM", {"logits_scaling": 8.0}),
    "cohere": ("CohereConfig", "CohereForCausalLM", {"logit_scale": 0.0625}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", None),     # learned positions: n_positions, not RoPE
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {}),
}


def family_model(name, vocab_size, n_positions=256, logit_std=10.0, seed=0):
    """A random 1-layer model of the family's real class, its output embedding scaled so that the logits
    its forward returns have standard deviation `logit_std` (tens at the extremes: a softcap of 30 acts)."""
    import transformers
    cfg_cls, model_cls, extra = FAMILIES[name]
    ids = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if extra is None:
        cfg = transformers.GPT2Config(**ids, n_embd=32, n_layer=1, n_head=4, n_positions=n_positions,
                                      tie_word_embeddings=False)
    else:
        cfg = getattr(transformers, cfg_cls)(**ids, **{**FAMILY_LAYOUT, "max_position_embeddings": n_positions},
                                             **extra)
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(cfg).eval()
    with torch.no_grad():
        z = model(torch.randint(3, vocab_size, (2, 12))).logits
        model.get_output_embeddings().weight.mul_(logit_std / z.std())
    return model


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_families_logprobs_are_log_softmax_of_the_models_own_output_logits(name, temperature):
    model = family_model(name, vocab_size=300)
    prompts, comps = [[5, 6, 7, 8], [9, 10]], [[20, 21, 22, 23, 24], [25, 26, 27]]
    ids, mask, comp = mgrpo.pack(prompts, comps, 0, "cpu")
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
        want = torch.log_softmax(logits.float() / temperature, -1)[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
        fast = mgrpo.token_logprobs(model, ids, mask, comp, temperature)
    trained = mgrpo.token_logprobs(model, ids, mask, comp, temperature)       # the checkpointed path of backward
    assert logits.abs().max() > 20                                            # realistic sizes, where a cap acts
    assert torch.allclose(fast[comp], want[comp[:, 1:]], atol=1e-5, rtol=0)
    assert torch.allclose(trained.detach(), fast, atol=1e-6, rtol=0) and trained.requires_grad
    mgrpo.check_logprobs(model)                                               # and the start-up check lets it train


def test_families_an_unknown_logit_post_processing_is_refused_at_start(capsys):
    model = family_model("llama", vocab_size=300)
    # a family whose forward changes lm_head's output in a way mgrpo.output_logits does not know
    model.register_forward_hook(lambda module, args, out: out.__setitem__("logits", out["logits"] * 1.5))
    with pytest.raises(SystemExit) as e:
        mgrpo.check_logprobs(model)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "LlamaForCausalLM" in err and "nats" in err


TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shared", "chat-templates")
END_OF_TURN = {"deepseek-r1-distill-qwen": "<｜end▁of▁sentence｜>", "deepseek-r1-distill-qwen-think": "<｜end▁of▁sentence｜>",
               "qwen3": "<|im_end|>", "qwen2.5-instruct": "<|im_end|>", "smollm2-instruct": "<|im_end|>",
               "llama-3.2-instruct": "<|eot_id|>", "gemma-2-it": "<end_of_turn>", "mistral-7b-instruct": "</s>",
               "phi-3.5-mini-instruct": "<|end|>"}


def template_tokenizer(name):
    """A byte-level BPE tokenizer trained here, with the family's real chat template and special tokens
    (../shared/chat-templates/README.md): renders exactly what the real tokenizer renders; ids differ."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast
    path = os.path.join(TEMPLATES, name + ".json")
    if not os.path.exists(path):
        pytest.skip("../shared/chat-templates is absent")
    spec = json.load(open(path, encoding="utf-8"))
    roles = ("bos_token", "eos_token", "pad_token", "unk_token")
    specials = list(dict.fromkeys(t for t in [*(spec[r] for r in roles), *spec["added_tokens"]] if t))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([mgrpo.INSTRUCTION, *mgrpo.GUIDES, "What is 2 + 3? \\boxed{5}"] * 20,
                            trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if spec["add_bos_token"] and spec["bos_token"]:       # the tokenizer itself starts plain text with BOS
        b = spec["bos_token"]
        bpe.post_processor = processors.TemplateProcessing(single=f"{b} $A", pair=f"{b} $A {b} $B",
                                                           special_tokens=[(b, bpe.token_to_id(b))])
    given = {r: spec[r] for r in roles if spec[r] is not None}
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, **given)
    extra = [t for t in spec["added_tokens"] if t not in given.values()]
    if extra:
        tok.add_special_tokens({"additional_special_tokens": extra})
    tok.chat_template = spec["chat_template"]
    return tok


@pytest.mark.parametrize("name", list(END_OF_TURN))
def test_families_prompts_are_each_real_templates_own_generation_prompt(name):
    tok = template_tokenizer(name)
    tk = mgrpo.Tokens(tok)
    q, o = "What is 2 + 3?", "2 + 3 = \\boxed{5}"
    user = {"role": "user", "content": q + "\n" + mgrpo.INSTRUCTION}
    # Layer 1: exactly the ids the tokenizer gives the template's generation prompt
    prompt = tk.prompt(q)
    assert prompt == tok.apply_chat_template([user], add_generation_prompt=True, return_dict=True)["input_ids"]
    # q' = q + o as sampled + the end of o's turn + the guide's user turn + the generation prompt
    eot = tok.convert_tokens_to_ids(END_OF_TURN[name])
    o_ids = tok.encode(o, add_special_tokens=False)
    q2 = build_correction_prompt(prompt, tk.strip_stop(o_ids + [eot]), tk.guides[0])
    history = tok.apply_chat_template([user, {"role": "assistant", "content": o},
                                       {"role": "user", "content": mgrpo.GUIDES[0]}],
                                      tokenize=False, add_generation_prompt=True)
    after_o = history[history.index(o) + len(o):]
    assert q2 == prompt + o_ids + tok.encode(after_o, add_special_tokens=False)
    assert after_o.startswith(END_OF_TURN[name]) and tok.decode(q2).endswith(after_o)
    first = tok.apply_chat_template([user], tokenize=False, add_generation_prompt=True)
    if name.endswith("-think"):        # the template prefills '<think>\n' in both layers' prompts
        assert first.endswith("<｜Assistant｜><think>\n") and history.endswith("<｜Assistant｜><think>\n")
        assert tok.decode(prompt).endswith("<think>\n") and tok.decode(q2).endswith("<think>\n")
    else:                              # q' is the template's own conversation, token for token
        assert tok.decode(q2) == history
    assert eot in tk.stop and tok.bos_token_id not in tk.stop
    # BOS exactly once, whether the template writes it, the tokenizer adds it, or both
    if tok.bos_token_id is not None and first.startswith(tok.bos_token):
        assert prompt[:2] == [tok.bos_token_id, tok.encode(first[len(tok.bos_token):], add_special_tokens=False)[0]]


def test_families_a_base_tokenizer_that_adds_bos_gets_it_once_in_every_prompt():
    tok = template_tokenizer("mistral-7b-base")           # no chat template; plain text starts with <s>
    tk = mgrpo.Tokens(tok)
    bos, q = tok.bos_token_id, "What is 2 + 3?"
    text = "Question: " + q + "\n" + mgrpo.INSTRUCTION + "\nAnswer: "
    assert tok(text)["input_ids"][0] == bos
    assert tk.prompt(q) == tok(text)["input_ids"] == [bos] + tok.encode(text, add_special_tokens=False)
    assert tk.prompt(q).count(bos) == 1 and tk.stop == [tok.eos_token_id]
    q2 = build_correction_prompt(tk.prompt(q), [40, 41], tk.guides[0])
    assert q2.count(bos) == 1                             # the guide turn brings no second BOS


def family_dir(path, name, tiny, **kw):
    """The family's tiny model beside the tiny tokenizer, saved as a user's model directory."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny)
    tok.save_pretrained(path)
    family_model(name, vocab_size=len(tok), **kw).save_pretrained(path)
    return str(path)


def test_families_context_length_is_read_from_each_kind_of_config():
    import transformers
    assert mgrpo.context_length(transformers.GPT2Config(n_positions=96)) == 96
    assert mgrpo.context_length(transformers.Gemma3TextConfig(max_position_embeddings=77)) == 77
    assert mgrpo.context_length(transformers.PretrainedConfig()) is None     # unknown: not refused


def test_families_a_run_that_cannot_fit_the_context_is_refused_at_start(tiny, toy_data, tmp_path, monkeypatch,
                                                                         capsys):
    from transformers import AutoTokenizer
    tk = mgrpo.Tokens(AutoTokenizer.from_pretrained(tiny))
    questions = [json.loads(x)["question"] for x in open(toy_data)]
    p, g = max(len(tk.prompt(q)) for q in questions), max(map(len, tk.guides))
    ctx = p + g + 2 * 20 + 1                  # prompt + guide + two generations of 20 tokens fit, of 21 do not
    model = family_dir(tmp_path / "gpt2", "gpt2", tiny, n_positions=ctx)   # learned positions: no way past ctx
    real_load = mgrpo.load_model
    capsys.readouterr()                       # (saving the model showed a progress bar)

    def no_model_work(*a, **kw):
        raise AssertionError("a model was loaded before the context check")

    monkeypatch.setattr(mgrpo, "load_model", no_model_work)
    with pytest.raises(SystemExit) as e:
        mgrpo.main(cli_args(model, toy_data, str(tmp_path / "out"), "--steps", "1", "--max-new-tokens", "21"))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert f"{p + g + 42} tokens" in err and f"context of {ctx}" in err and "--max-new-tokens 20 is the" in err
    # 20 fits: both layers and evaluation run at the very end of the context
    monkeypatch.setattr(mgrpo, "load_model", real_load)
    log = mgrpo.main(cli_args(model, toy_data, str(tmp_path / "fits"), "--steps", "1", "--max-new-tokens", "20"))
    assert log["step"] == 1 and log["l2_groups"] > 0


def test_families_the_context_check_counts_evaluations_t2_when_training_runs_one_layer(tiny, toy_data, tmp_path,
                                                                                       monkeypatch, capsys):
    # --layers 1 trains on prompt + answer only, but evaluation still builds q' + correction for every set
    from transformers import AutoTokenizer
    tk = mgrpo.Tokens(AutoTokenizer.from_pretrained(tiny))
    p = max(len(tk.prompt(json.loads(x)["question"])) for x in open(toy_data))
    ctx = p + 2 * 20 + max(map(len, tk.guides)) - 1      # prompt + answer fits; prompt + answer + guide + correction not
    model = family_dir(tmp_path / "gpt2", "gpt2", tiny, n_positions=ctx)
    capsys.readouterr()
    monkeypatch.setattr(mgrpo, "load_model", lambda *a, **kw: pytest.fail("loaded before the context check"))
    with pytest.raises(SystemExit) as e:
        mgrpo.main(cli_args(model, toy_data, str(tmp_path / "out"), "--layers", "1", "--max-new-tokens", "20"))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and f"context of {ctx}" in err and "guide + correction" in err


@pytest.mark.parametrize("name", list(FAMILIES))
def test_families_two_step_cli_run_trains_evaluates_and_checkpoints(name, tiny, toy_data, tmp_path):
    from transformers import AutoModelForCausalLM
    model = family_dir(tmp_path / name, name, tiny)
    out = str(tmp_path / "out")
    mgrpo.main(cli_args(model, toy_data, out, "--steps", "2", "--eval-n", "2"))
    log = read_log(out)
    assert [x["step"] for x in log] == [1, 2] and "eval" in log[1] and "l2_reward" in log[1]
    assert os.path.exists(os.path.join(out, "eval-toy-000002.jsonl"))
    saved = AutoModelForCausalLM.from_pretrained(os.path.join(out, "step-000002"))
    start = AutoModelForCausalLM.from_pretrained(model)
    assert type(saved) is type(start) and saved.config.model_type == start.config.model_type
    assert all(math.isfinite(x[k]) for x in log for k in ("l1_loss", "l1_grad_norm"))   # forward and backward ran
    mgrpo.check_logprobs(saved)


# -----------------------------------------------------------------------------
# Many GPUs: torchrun + FSDP2, tested on the CPU with the gloo backend (`pytest -k distributed`)

# The two paper-era aggregations, and every GRPO variant at once: Dr. GRPO's normaliser, the std over all
# ranks' rewards, truncated completions masked, clip-higher and GSPO's sequence ratio over two passes.
CONFIGS = {"seq-mean-token-mean": {}, "token-mean": {"loss_agg": "token-mean"},
           "l2-loss-norm trained": {"l2_loss_norm": "trained"},
           "l2-loss-norm trained, token-mean": {"l2_loss_norm": "trained", "loss_agg": "token-mean"},
           "variants": {"loss_agg": "seq-mean-token-sum-norm", "scale_rewards": "batch", "mask_truncated": True,
                        "max_new_tokens": 6, "clip_eps_high": 0.28, "importance_sampling": "sequence", "mu": 2}}
R, W = 20, 21                               # first token of a right / wrong injected completion


def one_step_on_injected_rollouts(tiny, config, set_attr=setattr):
    """One MGRPO step on a global batch of 4 questions whose rollouts are fixed functions of the prompt,
    each rank on its share. Layer 1 mixes right and wrong answers; in Layer 2 (every answer gets a q')
    questions 0 and 1 get 2 right corrections of 4 and questions 2 and 3 none, so with 2 ranks, rank 0
    trains on 16 corrections (8 q' x 2) and rank 1 on none. Lengths vary, so the ranks also get different numbers
    of micro-batches. SGD (lr 1) turns the gradient itself into the weight change. Returns the full
    weights after the step, the rollout copy's weights and the log. With --mask-truncated, every second
    sample runs to --max-new-tokens without a stop token."""
    args = run_args(model=tiny, G=4, H=4, batch_size=4, l2_inputs="all", beta=0.04, micro_tokens=160,
                    **CONFIGS[config])
    run = mgrpo.setup(args)
    run.opt = torch.optim.SGD(run.policy.parameters(), lr=1.0)
    run.tk.guides = [run.tk.guides[0]] * 4           # the same q' whichever guide a rank's stream picks
    problems = [{"question": f"What is {k} + 1?", "gold": str(k + 1)} for k in range(4)]
    first = {tuple(run.tk.prompt(p["question"])): k for k, p in enumerate(problems)}

    def generate(model, prompts, n, tk, *a, **kw):
        out = []
        for p in prompts:
            k = next(k for q, k in first.items() if tuple(p[:len(q)]) == q)
            layer2 = len(p) > len(run.tk.prompt(problems[k]["question"]))
            for j in range(n):
                right = (k < 2 and j % 2 == 0) if layer2 else (k + j) % 3 == 0
                if args.mask_truncated and j % 2:
                    out.append([R if right else W] + [30 + k] * (args.max_new_tokens - 1))
                    continue
                out.append([R if right else W] + [30 + (7 * k + j) % 20] * (1 + (k + 2 * j) % 5) + [run.tk.stop[0]])
        return out

    set_attr(mgrpo, "generate", generate)
    set_attr(mgrpo, "reward", lambda text, gold, question=None: float(text == "right"))
    run.tk.text = lambda ids: "right" if ids[0] == R else "wrong"
    log = mgrpo.train_step(run, mgrpo.my_share(problems), args, random.Random(0))
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    full = get_model_state_dict(run.policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {"weights": full, "rollout": {k: v.clone() for k, v in run.rollout.state_dict().items()}, "log": log}


def distributed_worker(rank, world, port, tiny, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    # a rank that skipped a collective would leave the other waiting: fail after 2 minutes instead
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120))
    results = {config: one_step_on_injected_rollouts(tiny, config) for config in CONFIGS}
    if rank == 0:
        torch.save(results, out)
    mgrpo.leave_distributed(0)                    # as a torchrun rank ends: no teardown for gloo's threads to meet


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_step_on_two_ranks_equals_the_step_on_one(tiny, tmp_path, monkeypatch):
    out = str(tmp_path / "two_ranks.pt")
    torch.multiprocessing.spawn(distributed_worker, args=(2, free_port(), tiny, out), nprocs=2)
    two = torch.load(out, weights_only=False)
    for agg in CONFIGS:
        one = one_step_on_injected_rollouts(tiny, agg, monkeypatch.setattr)
        before = dict(mgrpo.load_model(tiny, torch.device("cpu"), torch.float32).state_dict())
        moved = max((one["weights"][k] - before[k]).abs().max().item() for k in before)
        diff = max((one["weights"][k] - two[agg]["weights"][k]).abs().max().item() for k in before)
        assert moved > 1e-2 and diff < 1e-6, (agg, moved, diff)
        # the rollout copy of rank 0 holds the updated weights
        assert all(torch.equal(two[agg]["rollout"][k], two[agg]["weights"][k]) for k in before)
        for key in ("l1_reward", "l2_groups", "l2_samples_kept", "l2_samples_trained", "l2_reward", "l1_tokens",
                    "l2_tokens", "l1_kl", "l2_kl", "l1_loss", "l2_loss", "l1_grad_norm", "l2_grad_norm",
                    "l1_zero_std_frac", "l2_zero_std_frac"):
            assert two[agg]["log"][key] == pytest.approx(one["log"][key], rel=1e-5, abs=1e-7), key
        assert one["log"]["l2_groups"] == 16 and two[agg]["log"]["l1_truncated"] == one["log"]["l1_truncated"]
        assert one["log"]["l2_samples_trained"] == 16     # the cut-off corrections are the wrong ones


MGRPO_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mgrpo.py")


# Imported by every Python process that torchrun starts: says so if a rank's interpreter begins its teardown.
TEARDOWN_WITNESS = """import atexit, os, sys
if "RANK" in os.environ:
    atexit.register(lambda: print(f"teardown of rank {os.environ['RANK']}", file=sys.stderr, flush=True))
"""


def torchrun(*argv, n=2, tmp=None):
    import subprocess
    import sys
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if tmp:
        os.makedirs(os.path.join(tmp, "site"), exist_ok=True)
        with open(os.path.join(tmp, "site", "sitecustomize.py"), "w") as f:
            f.write(TEARDOWN_WITNESS)
        env["PYTHONPATH"] = os.pathsep.join([os.path.join(tmp, "site"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                           MGRPO_PY, *argv], env=env, capture_output=True, text=True, timeout=300)


def test_distributed_cli_trains_evaluates_checkpoints_and_resumes_exactly(tiny, toy_data, tmp_path, capsys):
    a, b, c = str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c")
    r = torchrun(*cli_args(tiny, toy_data, a, "--steps", "2", "--batch-size", "4", "--eval-n", "5"), tmp=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    # The ranks end without the interpreter's teardown, in which a gloo worker thread that still wants the
    # GIL would abort the rank (see mgrpo.leave_distributed); the witness would print from any that began one.
    assert "teardown of rank" not in r.stderr
    assert [x["step"] for x in read_log(a)] == [1, 2]
    rows = [json.loads(x) for x in open(os.path.join(a, "eval-toy-000002.jsonl"))]
    problems = mgrpo.load_problems(toy_data, "test")[:5]
    assert [x["question"] for x in rows] == [p["question"] for p in problems]   # every problem once, in order
    straight = weights(os.path.join(a, "step-000002"))                          # loads with from_pretrained
    # resume from step 1 on 2 ranks: exactly the straight run's step-2 weights
    copy_run(a, b, keep_steps=1)
    r = torchrun("--resume", b)
    assert r.returncode == 0, r.stderr[-3000:]
    assert all(torch.equal(p, q) for p, q in zip(straight, weights(os.path.join(b, "step-000002"))))
    # resume the 2-rank checkpoint in one process: it works and says it is not bit-exact
    copy_run(a, c, keep_steps=1)
    mgrpo.main(["--resume", c])
    assert "2 process(es), this run has 1" in capsys.readouterr().out
    assert [x["step"] for x in read_log(c)] == [1, 2]


def test_distributed_ctrl_c_is_one_line_from_rank_0_naming_torchrun_resume(tiny, toy_data, tmp_path):
    import subprocess
    import sys
    import time
    out = str(tmp_path / "c")
    argv = cli_args(tiny, toy_data, out, "--steps", "500", "--batch-size", "4", "--eval-every", "0", "--save-every", "2")
    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          MGRPO_PY, *argv], env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))    # as in a terminal
    log = os.path.join(out, "log.jsonl")
    for _ in range(600):                                    # until a checkpoint exists and a later step runs
        time.sleep(0.2)
        if os.path.exists(log) and len(open(log).readlines()) >= 3:
            break
    os.killpg(p.pid, signal.SIGINT)                         # Ctrl-C in a terminal: every process of the group
    err = p.communicate(timeout=120)[1]
    said = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("mgrpo: ") and "%|" not in ln
            and not ln.startswith("mgrpo: finishing the checkpoint")]     # said first if a save was under way
    assert len(said) == 1 and said[0].startswith("mgrpo: stopped by SIGINT during step ")
    assert said[0].endswith(f"continue with: torchrun --nproc_per_node 2 {MGRPO_PY} --resume {out}")   # as launched
    assert 'mgrpo.py", line' not in err and "terminate called" not in err       # no rank's traceback or abort


def test_distributed_bad_input_is_one_line_from_rank_0(tiny, toy_data, tmp_path):
    r = torchrun(*cli_args(tiny, toy_data, str(tmp_path / "x"), "--steps", "1", "--batch-size", "3"))
    assert r.returncode != 0 and r.stderr.count("mgrpo: error:") == 1
    assert "mgrpo: error: --batch-size 3 does not split evenly over 2 processes" in r.stderr
    # no traceback from the ranks themselves (torchrun's launcher adds its own report of failed ranks)
    assert 'mgrpo.py", line' not in r.stderr and "[rank0]" not in r.stderr and "[rank1]" not in r.stderr


# =============================================================================
# verify.py: the answer checker

import time  # noqa: E402

import verify  # noqa: E402
from verify import extract_answer, is_equiv, last_boxed, reward  # noqa: E402

EQUIV = [  # (pred, gold, expected) -- one line each, grouped by category
    # integers, thousands separators, signs
    ("42", "42", True), ("42", "43", False), ("1,000", "1000", True), ("1{,}000", "1000", True),
    ("1\\,000", "1000", True), ("12,345,678", "12345678", True), ("-7", "-7", True), ("-7", "7", False),
    ("\u22125", "-5", True), ("007", "7", True), ("+3", "3", True), ("3.0", "3", True), ("3.00", "3", True),
    ("3.01", "3", False), ("10", "1", False),
    # rationals, decimals (exact policy), mixed numbers
    ("0.5", "\\frac12", True), ("1/2", "\\frac{1}{2}", True), ("\\dfrac{2}{4}", "\\frac12", True),
    ("\\tfrac{3}{6}", "0.5", True), (".5", "1/2", True), ("0.333", "\\frac13", False),
    ("0.3333333333", "\\frac{1}{3}", False), ("0.25", "\\frac{1}{4}", True), ("2\\frac{1}{3}", "\\frac{7}{3}", True),
    ("-2\\frac{1}{2}", "-2.5", True), ("\\frac{7}{3}", "2\\frac13", True), ("1.5", "\\frac{3}{2}", True),
    ("\\frac{-1}{2}", "-\\frac12", True), ("\\frac{2}{3}", "\\frac{3}{2}", False), ("0.1", "\\frac{1}{9}", False),
    ("\\frac{639}{40}", "15\\frac{39}{40}", True),
    # radicals, pi, e
    ("\\frac{1}{\\sqrt2}", "\\frac{\\sqrt2}{2}", True), ("\\sqrt{8}", "2\\sqrt{2}", True), ("\\sqrt{12}", "2\\sqrt3", True),
    ("\\sqrt{2}", "1.414", False), ("\\sqrt{2}", "\\sqrt{3}", False), ("2\\pi", "\\pi \\cdot 2", True),
    ("\\frac{\\pi}{2}", "\\frac{1}{2}\\pi", True), ("\\pi", "3.14159", False), ("\\sqrt[3]{27}", "3", True),
    ("\\sqrt{2}+\\sqrt{3}", "\\sqrt{3}+\\sqrt{2}", True), ("(\\sqrt2+1)^2", "3+2\\sqrt2", True), ("e^2", "e^{2}", True),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{3}", False),
    # percent: a unit or x1/100, never a licence to rescale
    ("50\\%", "50", True), ("50%", "50", True), ("50\\%", "0.5", True), ("0.5", "50", False), ("50", "0.5", False),
    ("0.5", "50\\%", True), ("25\\%", "\\frac14", True), ("20\\%", "25", False),
    # degrees, dollars, units
    ("30^\\circ", "30", True), ("30^{\\circ}", "30", True), ("30", "30^\\circ", True), ("\\$5", "5", True),
    ("$5$", "5", True), ("5 dollars", "5", True), ("5\\text{ cm}", "5", True), ("864 \\mbox{ inches}^2", "864", True),
    ("\\$1,080", "1080", True), ("12 \\text{ meters}", "13", False), ("5.4 \\text{ cents}", "5.4", True),
    # scientific notation
    ("1.2\\times10^{3}", "1200", True), ("1.2e3", "1200", True), ("3 \\times 10^{-2}", "0.03", True),
    ("2.5E-1", "\\frac14", True), ("1.2\\times 10^3", "120", False),
    # equations
    ("x = 3", "3", True), ("3", "x = 3", True), ("x=3", "x=4", False), ("y = 2x+1", "2x+1", True),
    ("2x - y = 1", "y = 2x - 1", True), ("4x - 2y = 2", "y = 2x - 1", True), ("y = 2x + 1", "y = 2x - 1", False),
    ("x + y = 1", "x - y = 1", False), ("x \\in [-2,7]", "[-2,7]", True),
    # intervals and unions
    ("(-\\infty, 3]", "(-\\infty,3]", True), ("(-\\infty, 3)", "(-\\infty, 3]", False), ("[1, 2)", "[1,2)", True),
    ("[1, 2)", "(1, 2]", False), ("[1,2) \\cup (3,4]", "(3,4] \\cup [1,2)", True), ("[1,2) \\cup (3,4]", "[1,2)", False),
    ("(-\\infty, -1) \\cup (1, \\infty)", "(-\\infty,-1)\\cup(1,\\infty)", True), ("[0, \\frac12]", "[0, 0.5]", True),
    # sets (unordered) and tuples (ordered)
    ("\\{1, 2\\}", "\\{2, 1\\}", True), ("1, 2", "2, 1", True), ("1, 2, 3", "1, 2", False), ("\\{1,2\\}", "\\{1,3\\}", False),
    ("(1, 2)", "(1, 2)", True), ("(1, 2)", "(2, 1)", False), ("(1,2,3)", "(1, 2)", False), ("(0.5, 1)", "(\\frac12, 1)", True),
    ("\\emptyset", "\\varnothing", True), ("-2, 2", "\\pm 2", True),
    # matrices
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", True),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}", False),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1&2\\end{pmatrix}", False),
    ("\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}", "\\begin{pmatrix}-\\frac13\\\\ \\frac23\\end{pmatrix}", True),
    # complex numbers
    ("3+4i", "4i+3", True), ("3-4i", "3+4i", False), ("i^2", "-1", True), ("\\frac{1}{i}", "-i", True),
    ("2i", "2", False), ("-2 + 7i", "7i - 2", True),
    # expressions: symbolic identities and numeric probing
    ("(x+1)^2", "x^2+2x+1", True), ("x^2-1", "(x-1)(x+1)", True), ("\\sin^2 x + \\cos^2 x", "1", True),
    ("2x+1", "2y+1", False), ("\\frac{x^2-1}{x-1}", "x+1", True), ("x^2", "x^3", False), ("\\log(e^3)", "3", True),
    ("\\frac{a}{b}", "a/b", True), ("2^{10}", "1024", True), ("10^{12}", "10^12", True), ("5!", "120", True),
    ("|{-3}|", "3", True), ("3!", "5", False), ("x_1+x_2", "x_2+x_1", True), ("\\sqrt{x^2}", "x", False),
    ("\\sqrt{x^2}", "|x|", True), ("\\frac{x^2-1}{x-1}", "x-1", False),
    # multiple choice
    ("(B)", "B", True), ("\\text{B}", "(B)", True), ("\\textbf{(B)}", "B", True), ("\\text{(C)}", "C", True),
    ("B", "C", False), ("A, B", "B", False), ("(A)", "\\text{(A)}", True),
    # text answers
    ("\\text{Monday}", "monday", True), ("Monday", "\\text{Monday}", True), ("\\text{even}", "\\text{odd}", False),
    ("\\text{no solution}", "\\text{No Solution}", True), ("\\text{Evelyn}", "\\text{Navin}", False),
    # hedges and one-value golds
    ("\\pm 2", "2", False), ("2", "\\pm2", False), ("3 \\pm 1", "2, 4", True),
    # bases
    ("52_8", "52_8", True), ("52", "52_8", True), ("42", "52_8", False), ("4210_{5}", "4210_5", True),
    # thousands separators as MATH writes them; a trailing approximation
    ("10,\\!000", "10000", True), ("\\$16,\\!386.20", "16386.2", True), ("1 000", "1000", True),
    ("14{,}916", "14916", True), ("1 000", "100", False), ("\\frac{\\sqrt{3}}{3} \\approx 0.577", "\\frac{\\sqrt3}{3}", True),
    ("x \\approx 11", "11", True), ("185\\", "185", True),
    # relations: the sets they describe
    ("x \\geq 5", "x >= 5", True), ("x \\lt 3", "x < 3", True), ("x <= 2", "x \\leq 2", True), ("x \\ne 3", "x != 3", True),
    ("5 \\geq x", "x \\le 5", True), ("-x > -1", "x < 1", True), ("-x \\ge -1", "x \\le 1", True),
    ("-793 < a < 10", "(-793, 10)", True), ("-2 \\le x \\le 7", "x \\in [-2, 7]", True), ("x > 5", "(5, \\infty)", True),
    ("x \\geq 5", "[5,\\infty)", True), ("x > 5", "[5, \\infty)", False), ("x \\le 3", "(-\\infty, 3)", False),
    ("3 > x", "(-\\infty, 3)", True), ("2x + 1 < 7", "x < 3", True), ("x^2 < 4", "(-2, 2)", True), ("x > 5", "y > 5", False),
    ("1\\leq|z|\\leq \\frac{3}{2}", "z \\in [-\\frac{3}{2}, -1] \\cup [1, \\frac{3}{2}]", True), ("|x - 1| \\le 2", "[-1, 3]", True),
    ("x \\neq 2", "(-\\infty,2)\\cup(2,\\infty)", True), ("0<f(x)<1", "(0,1)", True), ("x < 1", "x > 1", False),
    # a name on the left of '=' names the value; chains
    ("f(x) = 1", "1", True), ("|AB| = 1", "1", True), ("A:B=1", "1", True), ("\\frac{NO}{BO}=\\frac{1}{\\sqrt{6}}", "\\frac{1}{\\sqrt6}", True),
    ("V_{1}:V_{2}=11:21", "11:21", True), ("(p,q)=(3,2)", "(3,2)", True), ("(p,q,r)=(3,2,7)", "(3,2,7)", True),
    ("(x,y)=(2,1)", "(1,2)", False), ("x = 1, y = 2", "(1, 2)", True), ("x = 2, y = 1", "(1, 2)", False),
    ("p=5,q=2;p=7,q=2", "(5,2),(7,2)", True), ("x = 1 + 1 = 2", "2", True), ("z = 3 + 3 = 2", "2", False),
    ("x^2 + y^2 = 1", "1", False), ("2 : 4", "1 : 2", True), ("12:00", "1:00", False), ("AB=4,CD=5", "4, 5", True),
    # lists: sets that ignore repeats; several values in words
    ("(3, 17, 3, 7), (3, 3, 2, 3), (3,17,3,7)", "(3,17,3,7),(3,3,2,3)", True), ("1 and 2 and 3", "1,2,3", True),
    ("19, 46, and 82", "19, 46, \\text{ and } 82", True), ("6 \\text{ and } 8", "6,8", True), ("2 or 3", "\\{2, 3\\}", True),
    ("x = 2 or x = 3", "2, 3", True), ("either 1 or -1", "\\pm 1", True), ("2 or 3", "2", False), ("(11,7)or(7,11)", "(7,11), (11,7)", True),
    ("p = -1 \\text{ and } p = \\dfrac{15}{8}", "p=-1,p=\\frac{15}{8}", True), ("\\text{odd or even}", "\\text{odd or even}", True),
    # matrices in any bracket style, sums and products
    ("\\left[\\begin{array}{cc}1 & 2 \\\\3 & 4\\end{array}\\right]", "\\begin{pmatrix}1 & 2 \\\\3 & 4\\end{pmatrix}", True),
    ("\\begin{Bmatrix}1\\\\2\\end{Bmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} + \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}",
     "\\begin{pmatrix}6 & 8 \\\\ 10 & 12\\end{pmatrix}", True),
    ("\\begin{pmatrix}0 & 1 \\\\ 1 & 0\\end{pmatrix} \\begin{pmatrix}0 & 1 \\\\ 1 & 0\\end{pmatrix}",
     "\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}", True),
    ("\\begin{bmatrix}1&2\\end{bmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", False),
    # logarithms, trigonometry, degrees
    ("\\log_2 8", "3", True), ("\\log_{10} 1000", "3", True), ("\\log_{4} 2", "\\frac12", True), ("\\log_2 8", "4", False),
    ("\\log_2 3", "\\frac{\\ln 3}{\\ln 2}", True), ("\\log_2 3", "1.585", False), ("2\\log 3", "\\log 9", True),
    ("\\sin 2x", "2\\sin x\\cos x", True), ("\\cos^2 x - \\sin^2 x", "\\cos 2x", True), ("\\sec^2 x - \\tan^2 x", "1", True),
    ("\\sin 30^\\circ", "\\frac12", True), ("\\cos 60^{\\circ}", "0.5", True), ("\\sin^{-1}(1)", "\\frac{\\pi}{2}", True),
    ("\\sin 2x", "2\\sin x", False), ("\\sin x + \\cos x", "\\sqrt{2}\\sin(x + \\pi/4)", True),
    # repeating decimals, mixed numbers, number words, unit words
    ("0.\\overline{3}", "\\frac13", True), ("0.1\\overline{6}", "\\frac{1}{6}", True), ("1.\\overline{09}", "\\frac{12}{11}", True),
    ("0.\\overline{3}", "0.3", False), ("2 1/3", "7/3", True), ("-1\\frac{1}{2}", "-1.5", True), ("2 1/3", "2/3", False),
    ("five", "5", True), ("twenty-five", "25", True), ("one hundred and three", "103", True), ("seven", "8", False),
    ("\\text{five}", "5", True), ("5 apples", "5", True), ("3 hours ago", "3", True), ("18 \\text{ eggs}", "18", True),
    ("42 students", "43", False), ("28 pct", "28\\%", True), ("125\\textnormal{ miles}", "125", True),
    # physics notation: Greek letters, primes, accents, subscripts with commands
    ("\\frac{1}{4-\\omega^{2}}", "\\frac{-1}{\\omega^2-4}", True), ("2.2 \\tau", "\\frac{11\\tau}{5}", True),
    ("y^{\\prime}+r y=0", "y' = -ry", True), ("\\dot{x}_{0}", "\\dot{x}_0", True), ("m_{\\max }=n^{2}-n-1", "n^2-n-1", True),
    ("\\binom{4}{2}", "6", True), ("\\lfloor 7/2 \\rfloor", "3", True), ("\\lceil 7/2 \\rceil", "3", False),
    ("np.arcsin(10/13)", "\\arcsin\\frac{10}{13}", True), ("\\alpha", "\\beta", False),
    # multiple choice with an explanation
    ("C. x = 42", "C", True), ("B. x = 42", "C", False),
]


@pytest.mark.parametrize("pred,gold,expected", EQUIV)
def test_is_equiv(pred, gold, expected):
    assert is_equiv(pred, gold) is expected


SYMMETRIC = [(p, g, e) for p, g, e in EQUIV if "%" not in p + g]   # percent reading is one-sided by design


@pytest.mark.parametrize("pred,gold,expected", SYMMETRIC)
def test_is_equiv_is_symmetric(pred, gold, expected):
    assert is_equiv(gold, pred) is expected


EXTRACT = [
    ("so the answer is $\\boxed{42}$.", "42"),
    ("\\boxed{\\frac{1}{2}} and nothing else", "\\frac{1}{2}"),
    ("nested \\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),
    ("braceless \\boxed 7 done", "7"),
    ("\\fbox{12}", "12"),
    ("first \\boxed{5}, wait, still \\boxed{5}", "5"),
    ("We get 3 + 4 = 7.\n#### 7", "7"),
    ("#### 1,080", "1,080"),
    ("Work...\nThe final answer is 12.", "12"),
    ("Answer: $x = 3$", "x = 3"),
    ("The answer is: 9", "9"),
    ("\\boxed{3} beats #### 4", "3"),
    ("42", "42"),
    ("  \\frac{3}{4} ", "\\frac{3}{4}"),
]


@pytest.mark.parametrize("text,expected", EXTRACT)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


NO_ANSWER = [
    "I computed 3 + 4 = 7 and then 7 * 6 = 42 so",           # no 'last number' fallback (truncated work)
    "The total is 42 apples, which we double-check below, and after the check we conclude something",
    "first \\boxed{3} then \\boxed{5}",                       # several different boxes, not as one list
    "\\boxed{1} no no no no no \\boxed{2}",
    "\\boxed{unbalanced",
    "<think> The answer is \\boxed{3}",                     # still thinking
    "",
]


@pytest.mark.parametrize("text", NO_ANSWER)
def test_no_answer_gets_nothing(text):
    assert extract_answer(text) is None and reward(text, "3") == 0.0 and reward(text, "3, 5") == 0.0


HEDGES = [  # several values: right for the gold that is that set, nothing for a single-valued gold
    "\\boxed{3 \\text{ or } 5}", "The answer is either 3 or 5.", "\\boxed{3 or 5}", "The roots are \\boxed{3} and \\boxed{5}.",
    "\\boxed{3}, \\boxed{5}", "$\\boxed{3}\\boxed{5}$", "Final Answer: The final answer is $x = 3$ or $x = 5$.",
    "\\boxed{x = 3 \\text{ or } x = 5}",
]


@pytest.mark.parametrize("text", HEDGES)
def test_several_values_are_a_set_not_a_hedge_that_pays(text):
    assert reward(text, "3") == 0.0 and reward(text, "5") == 0.0
    assert reward(text, "3, 5") == 1.0 and reward(text, "\\{5, 3\\}") == 1.0 and reward(text, "3, 5, 7") == 0.0


def test_checker_file_opens_with_its_route():
    # a reader reaches how a reply becomes a reward in one screen: reward, then extraction, parsing, equivalence
    with open(verify.__file__, encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert any(line.startswith("def reward(") for line in lines[:60])
    head = "\n".join(lines[:60])
    assert head.index("extract_answer") < head.index("is_equiv") < head.index("def reward(")
    assert "normalize" in head and "parse" in head and "docs/checker.md" in head
    order = [next(i for i, line in enumerate(lines) if line.startswith(f"def {name}("))
             for name in ("reward", "extract_answer", "normalize", "parse", "is_equiv")]
    assert order == sorted(order)


REWARD = [
    ("Thus $\\boxed{1080}$ dollars.", "1080", 1.0),
    ("Thus $\\boxed{\\$1,080}$.", "1080", 1.0),
    ("She has 18 left.\n#### 18", "18", 1.0),
    ("\\boxed{18}", "19", 0.0),
    ("The answer is \\boxed{x=3}", "3", 1.0),
    ("\\boxed{(B)}", "\\text{(B)}", 1.0),
    ("\\boxed{A, C}", "\\text{(C)}", 0.0),
    ("\\boxed{\\pm 3}", "3", 0.0),
    ("\\boxed{15\\frac{39}{40}} or \\boxed{\\frac{639}{40}}", "\\frac{639}{40}", 1.0),
    # the MATH/Minerva few-shot format: the last statement wins, cut to what it states
    ("Final Answer: The final answer is $28 \\%$. I hope it is correct. Note: redo. Final Answer: The final answer is "
     "$28 \\%$. I hope it is correct. Note: ", "28\\%", 1.0),
    ("Final Answer: The final answer is 12,000,023. I hope it is correct. <|im_start|>user", "12000023", 1.0),
    ("Final Answer: The final answer is 7.78.", "7.78", 1.0),
    ("Final Answer: The largest $n$ is 34.", "34", 1.0),
    ("Final Answer: The volume of $ABCDEFGH$ is 120. I hope it is correct.", "120", 1.0),
    ("Final Answer: Jane started growing Sphere 3 hours ago. I hope it is correct.", "3", 1.0),
    ("Final Answer: The final answer is \\((-6, 10)\\). I hope it is correct.", "(-6, 10)", 1.0),
    ("Final Answer: The final answer is $\\frac{10\\sqrt{10.5}}{27}$. I hope it is correct.", "\\frac{5\\sqrt{42}}{27}", 1.0),
    ("Answer $ 9 $", "9", 1.0), ("Answer \\[ 9 \\]", "9", 1.0), ("Answer \\( (9+1) \\)", "10", 1.0), ("Answer $$\n 9 \n$$", "9", 1.0),
    ("Answer: 9", "8", 0.0),
    # '####' anywhere, ending a sentence
    ("So she has 18 left. #### 18.", "18", 1.0), ("#### 42. That is the answer.", "42", 1.0), ("The total is 5.\n#### 5.", "5", 1.0),
    # thinking: only the text after the last </think> counts
    ("<think> My answer is \\boxed{42} </think> Some other text.", "42", 0.0),
    ("<think>maybe \\boxed{3}</think> The answer is $4$.", "4", 1.0),
    # several boxes as one list answer
    ("\\boxed{1} papers and \\boxed{2} bins", "1,2", 1.0),
    ("$$\\boxed{k = 45} \\quad \\text{and} \\quad \\boxed{n = 2}$$", "k = 45, n = 2", 1.0),
    ("solutions are:\n\\[\n\\boxed{(1, 2)}, \\boxed{(2, 1)}\n\\]", "(2,1),(1,2)", 1.0),
    ("\\boxed{1} and \\boxed{2}", "2", 0.0),
    ("$\\boxed{11,\\! 111,\\! 111,\\! 100}$", "11111111100", 1.0),
]


@pytest.mark.parametrize("completion,gold,expected", REWARD)
def test_reward(completion, gold, expected):
    assert reward(completion, gold) == expected


HOSTILE = [
    "\\boxed{2^{2^{2^{2^{2^{2}}}}}}",
    "\\boxed{9^{9^{9^{9}}}}",
    "\\boxed{10^{10^{10}}}",
    "\\boxed{100000!}",
    "\\boxed{(10^{100})!}",
    "\\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}",
    "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "\\boxed{" + "1" * 100_000 + "}",
    "x" * 100_000,
    "\\boxed{1" + "+1" * 50_000 + "}",
    "\\boxed{1\x002}",
    "\\boxed{" * 3000,
    "}}}}\\boxed{{{{{1}",
    "\\boxed{__import__('os').system('touch pwned_by_checker')}",
    "\\boxed{().__class__.__bases__[0].__subclasses__()}",
    "\\boxed{eval(\"open('pwned_by_checker','w')\")}",
    "\\boxed{\\x^{\\x^{\\x}}}",
    "\\boxed{1e999999999}",
    "\\boxed{(x+1)^{100000}}",
    "\\boxed{\\sqrt[0]{2}}",
    "\\boxed{\\frac{1}{0}}",
    "\\boxed{0^{-1}}",
    "\\boxed{\\begin{pmatrix}" + "1&" * 2000 + "1\\end{pmatrix}}",
    "\\boxed{" + "x" * 999 + "}",
    "\\boxed{" + "\\sin(" * 300 + "1" + ")" * 300 + "}",
    "\\boxed{\\binom{10^{4000}}{500}}",
    "\\boxed{|x^2 - 10^{4000}| \\le 10^{3999}}",
    "\\boxed{" + "\\lceil" * 100 + "1" + "\\rceil" * 100 + "}",
    "\\boxed{1}" + " and \\boxed{2}" * 5000,
    "The answer is " + "one " * 5000,
    "\\boxed{" + "\\dot{" * 200 + "x" + "}" * 200 + "}",
]


@pytest.mark.parametrize("completion", HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
@pytest.mark.parametrize("gold", ["1", "x"])
def test_hostile_input_is_refused_quickly_and_executes_nothing(completion, gold, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t = time.thread_time()
    assert reward(completion, gold) == 0.0
    assert time.thread_time() - t < 1.0
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("pred,gold", [
    ([f"(x+{i})^2" for i in range(30)], [f"x^2+{2 * i}x+{i * i}" for i in reversed(range(30))]),
    ([f"\\sin({i}x)" for i in range(30)], [f"\\sin({i}x)" for i in reversed(range(30))]),
])
def test_long_lists_of_expressions_are_compared_within_bounded_work(pred, gold):
    # each element of one list equals the element the other list reaches last. The bounds in these tests
    # are this thread's CPU seconds, not wall time: a busy machine cannot fail them, a check that hangs does.
    t = time.thread_time()
    assert reward("\\boxed{" + ", ".join(pred) + "}", ", ".join(gold)) == 1.0
    assert time.thread_time() - t < 2.0


def test_reward_never_raises_on_odd_types():
    assert reward(None, "1") == 0.0 and reward(12, "12") == 0.0 and reward("\\boxed{1}", None) == 0.0
    assert is_equiv(None, "1") is False


def test_reward_works_off_the_main_thread():
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as ex:
        got = list(ex.map(lambda c: reward(c, "\\frac{\\sqrt2}{2}"), ["\\boxed{\\frac{1}{\\sqrt{2}}}"] * 4))
    assert got == [1.0] * 4


def test_plain_integers_are_fast():
    t = time.thread_time()
    for i in range(2000):
        reward(f"We add them.\n\\boxed{{{i},000}}", f"{i}000")
    assert (time.thread_time() - t) / 2000 < 2e-3   # generous bound; bench/verify_real_data.py measures


# -----------------------------------------------------------------------------
# verify.py on the answer styles users report: markdown, answers inside math, prose after the answer,
# fractions in prose, arithmetic on an answer line, letter golds, options A-J, several answer statements

STYLES = [  # (completion, gold, reward) -- one kind per block; near-misses that must stay 0 in each
    # 1. markdown emphasis around the marker, the value, or both; an answer heading
    ("**Answer:** 12", "12", 1.0), ("The final answer is **12**.", "12", 1.0), ("**Final answer: 12**", "12", 1.0),
    ("**Answer:** **12**", "12", 1.0), ("__Answer:__ 12", "12", 1.0), ("*Answer:* 12", "12", 1.0),
    ("\\textbf{Answer:} 12", "12", 1.0), ("### Final Answer\n\n12", "12", 1.0), ("**Final Answer**\n$\\frac{3}{4}$", "0.75", 1.0),
    ("The final answer is **12**.", "13", 0.0), ("**Answer:** 2**3", "23", 0.0), ("**Answer:** 2**3", "8", 0.0),
    # 2. an answer marker inside display or inline math: the answer stops at the closing delimiter
    ("\\[ \\text{Answer: } 12 \\]", "12", 1.0), ("\\(Answer: 12\\)", "12", 1.0), ("$\\text{Answer: } 12$ and we are done.", "12", 1.0),
    ("$$\\text{Final answer: } \\frac{1}{2}$$ (checked twice)", "1/2", 1.0), ("\\textbf{Answer: 12}", "12", 1.0),
    ("\\[\n\\text{Answer: } 12\n\\]\nso 13 apples are left.", "12", 1.0),
    ("\\(Answer: 12\\) apples and 13 pears", "13", 0.0), ("It costs $5. So the answer is $12$.", "12", 1.0),
    # 3. prose after the stated answer: the value right after the marker, not what follows a later 'is'
    ("The answer is 12, since both counts agree.", "12", 1.0), ("The answer is 12 in all.", "12", 1.0),
    ("The answer is 12, which is the number of red marbles.", "12", 1.0), ("The answer is \\frac{3}{4} of the pie.", "3/4", 1.0),
    ("Answer: x = 3, because 2x = 6.", "3", 1.0), ("The answer is 12 apples, so 5 are left.", "12", 1.0),
    ("The answer is 12 (because 3 + 9 = 12).", "12", 1.0), ("Final Answer: The total is 12, which is the number of red marbles.", "12", 1.0),
    ("Final Answer: The area of the part that is shaded is 12.", "12", 1.0),
    ("The answer is 12 in base 3.", "12", 0.0), ("The answer is 1 in 4.", "1", 0.0), ("The answer is 3 times 4.", "3", 0.0),
    ("The answer is 5 squared.", "5", 0.0), ("The answer is 2 thirds of the class.", "2", 0.0),
    ("The answer is 12 or more.", "12", 0.0), ("The answer is 12 less than x.", "12", 0.0), ("The answer is 12 at most.", "12", 0.0),
    # 4. a fraction (or any number) is read whole from prose, never as a piece
    ("The answer is 2/5 of the class.", "2/5", 1.0), ("The answer is 2/5 of the class.", "5", 0.0),
    ("The answer is 2/5 of the class.", "2", 0.0), ("Final Answer: She keeps 2/5 of the cake.", "2/5", 1.0),
    ("Final Answer: She keeps 2/5 of the cake.", "5", 0.0), ("Final Answer: The ratio came out -3/4 overall.", "-3/4", 1.0),
    ("Final Answer: The ratio came out -3/4 overall.", "4", 0.0), ("Final Answer: She ran 10^3 meters.", "3", 0.0),
    ("Final Answer: She picked 1,000 apples.", "1000", 1.0), ("Final Answer: She ran 3.5 miles.", "5", 0.0),
    # 5. an answer line that shows its arithmetic with a compound left side
    ("Answer: p+q = 12+7 = 19", "19", 1.0), ("\\boxed{r+s+t = 4+5+6 = 15}", "15", 1.0),
    ("\\boxed{a^2 + b^2 = 9 + 16 = 25}", "25", 1.0), ("The answer is $m + n = 3 + 4 = 7$.", "7", 1.0),
    ("Answer: p+q = 12+7 = 20", "20", 0.0), ("Answer: p+q = 12+7 = 20", "19", 0.0), ("\\boxed{x+y = 2z = 4}", "4", 0.0),
    # 6. a gold made of letters is an expression in single-letter variables; words stay words
    ("\\boxed{qp}", "pq", 1.0), ("\\boxed{p \\cdot q}", "pq", 1.0), ("\\boxed{\\frac{p}{1/q}}", "pq", 1.0),
    ("\\boxed{cba}", "abc", 1.0), ("\\boxed{pq}", "p q", 1.0), ("\\boxed{pr}", "pq", 0.0), ("\\boxed{p+q}", "pq", 0.0),
    ("\\boxed{\\text{Monday}}", "Monday", 1.0), ("\\boxed{\\text{Tuesday}}", "Monday", 0.0),
    ("\\boxed{\\text{CBAD}}", "\\text{ABCD}", 0.0), ("\\boxed{yes}", "\\text{no}", 0.0),
    # 7. multiple choice A-J, in all the forms an option is written
    ("\\boxed{G}", "G", 1.0), ("Answer: (G) none of these", "G", 1.0), ("\\boxed{(G) none of these}", "G", 1.0),
    ("\\boxed{G) none of these}", "G", 1.0), ("\\boxed{\\text{G: none of these}}", "G", 1.0), ("\\boxed{\\textbf{(G)}}", "G", 1.0),
    ("The answer is (J).", "J", 1.0), ("The answer is G because the others fail.", "G", 1.0), ("\\boxed{F}", "\\text{(F)}", 1.0),
    ("\\boxed{G}", "(G) none of these", 1.0), ("\\boxed{(H)}", "G", 0.0), ("Option G looks right to me.", "G", 0.0),
    ("I would pick G.", "G", 0.0), ("\\boxed{E = mc^2}", "E", 0.0), ("\\boxed{E: a polygenic risk score}", "E", 1.0),
    ("We need \\boxed{\\langle H\\rangle \\ll \\Delta E} to hold.\n\n**Answer: D**", "D", 1.0),   # a box that holds no answer
    ("We need \\boxed{\\langle H\\rangle \\ll \\Delta E} to hold.\n\n**Answer: D**", "E", 0.0),
    ("\\boxed{(C)}\n\n**Answer: D**", "D", 0.0),                                             # a box that does still wins
    # 8. several answer statements: different values are a hedge, whatever the marker; what a few-shot
    #    model writes after running on into a new question is not part of its answer
    ("#### 3\n#### 5", "5", 0.0), ("#### 3\n#### 5", "3", 0.0), ("The answer is 3.\nWait, the answer is 5.", "5", 0.0),
    ("Answer: 3\nAnswer: 5", "5", 0.0), ("#### 5\n#### 5", "5", 1.0), ("The answer is 12. We check that the answer is correct.", "12", 1.0),
    ("She has 4 left.\n#### 4\n\nQuestion: Tom has 2 apples and buys 5 more. How many?\nAnswer: 2 + 5 = 7\n#### 7", "4", 1.0),
    ("She has 4 left.\n#### 4\n\nQuestion: Tom has 2 apples and buys 5 more. How many?\nAnswer: 2 + 5 = 7\n#### 7", "7", 0.0),
    ("So $x = \\boxed{4}$.\n\nProblem 2. Find $y$.\nSolution: $y = \\boxed{7}$", "4", 1.0),
    ("Answer: 12\n<|im_start|>user\nNext one. Answer: 9", "12", 1.0),
    ("Question: Tom has 3 apples and gets 4 more. How many?\nHe has 3 + 4 = 7.\n#### 7", "7", 1.0),
]


@pytest.mark.parametrize("completion,gold,expected", STYLES)
def test_answer_styles_users_report(completion, gold, expected):
    assert reward(completion, gold) == expected


@pytest.mark.parametrize("completion", [
    "".join(f"The answer is {i}.\n" for i in range(120)),                 # 120 different statements: a hedge, found fast
    ("Answer: " + "1+" * 1900 + "1\n") * 50,                             # long statements
    "Final Answer: The thing " + "1/2 " * 40000,                          # a sentence cut by a length limit gives no piece
])
def test_answer_statements_are_decided_quickly_and_never_in_pieces(completion):
    t = time.thread_time()
    assert reward(completion, "1") == 0.0 and reward(completion, "2") == 0.0
    assert time.thread_time() - t < 1.0


@pytest.mark.parametrize("pred,gold,expected", [
    # words after a number are dropped only when they do not change its value
    ("5 thousand", "5", False), ("12 squared", "12", False), ("2 thirds", "2", False), ("3 halves", "3", False),
    ("12 apples", "12", True), ("12 months", "12", True),
    # a left side that is a sum of names is named only in a chain that computes it: a plane stays a plane
    ("x + y + z = 0", "0", False), ("m+n = 3+4 = 7", "7", True),
    # letters: products of variables, words compared as words
    ("qp", "pq", True), ("p \\cdot q", "pq", True), ("xy", "x y", True), ("pq", "pr", False), ("\\text{even}", "even", True),
    ("Monday", "\\text{monday}", True), ("\\text{odd}", "\\text{even}", False),
    # options A-J
    ("(G) none of these", "G", True), ("G) none of these", "\\text{(G)}", True), ("\\text{J: 42}", "J", True),
    ("(G)", "(H)", False), ("E = mc^2", "E", False), ("F, G", "G", False),
])
def test_answer_styles_equivalence_both_ways(pred, gold, expected):
    assert is_equiv(pred, gold) is expected and is_equiv(gold, pred) is expected

# -----------------------------------------------------------------------------
# verify.py on real model outputs: the answer containers RL prompts use (<answer> tags, 'A:' lines, zero-shot
# chain of thought, a concluding sentence), run-ons, and the equivalences graders accept. Near-misses stay 0.

CONTAINERS = [  # (completion, gold, reward)
    # (a) the R1-Zero template's <answer> block, read as a stated answer is read; nested tags are one block
    ("<think>5 + 9 = 14</think>\n<answer>14</answer>", "14", 1.0),
    ("<think>...</think> <answer> She can fill 14 bags </answer>", "14", 1.0),
    ("<think>400 + 60 = 460</think> <answer>= $460.</answer>", "460", 1.0),
    ("<think>...</think> <answer>5800+3600=9400</answer>", "9400", 1.0),
    ("<think>...</think> <answer>42 inches</answer>", "42", 1.0),
    ("<answer><answer>42</answer></answer>", "42", 1.0),
    ("<think>...</think> <answer>Monday</answer>", "\\text{Monday}", 1.0),
    ("<think>...</think> <answer>\\frac{3}{4}</answer>", "0.75", 1.0),
    ("<think>...</think> <answer>She buys 3 more. So she has 14 bags.</answer>", "14", 1.0),
    ("<think>...</think> <answer>\n\\[ \\frac{14}{3} \\]\n</answer>", "14/3", 1.0),
    ("<think>...</think> <answer>$3$ apples and $5$ pears</answer>", "3", 0.0),
    ("<think>...</think> <answer>The answer is $\\boxed{7}$.</answer>", "7", 1.0),
    ("<think>...</think> <answer>3 or 5</answer>", "5", 0.0),                           # two values
    ("<think>...</think> <answer>She has 3 apples and 5 pears</answer>", "5", 0.0),
    ("<think>...</think> <answer>She has 3 apples and 5 pears</answer>", "3", 0.0),
    ("<think>...</think> <answer>14", "14", 0.0),                                        # cut before it closed
    ("<think>...</think> <answer>14</answer> or maybe <answer>15</answer>", "14", 0.0),  # two blocks: a hedge
    ("<think>...</think> \\boxed{3} <answer>5</answer>", "5", 0.0),
    ("<think>The answer is <answer>14</answer>", "14", 0.0),                             # still thinking
    # (b) the few-shot GSM8K style: a last line 'A: 18'
    ("Natalia sold 48 / 2 = 24 clips in May, 48 + 24 = 72 in all.\nA: 72", "72", 1.0),
    ("He earns 1,000 + 2,000 dollars.\nA: 3,000", "3000", 1.0),
    ("A: 18\n\nQ: Tom has 2 apples and buys 5 more. How many?\nA: 7", "18", 1.0),
    ("A: 18\n\nQ: Tom has 2 apples and buys 5 more. How many?\nA: 7", "7", 0.0),
    ("A: She has 3 apples.\nShe buys 15 more, 18 in all.", "18", 0.0),                  # 'A:' in the working
    ("A: She has 3 apples.\nShe buys 15 more, 18 in all.", "3", 0.0),
    ("A: 3\nThen she buys 15 more and has", "3", 0.0),
    ("A: 3\nA: 5", "5", 0.0),                                                             # two values
    # (c) zero-shot chain of thought's second stage and its variants
    ("Let's think step by step. 4 * 30 = 120.\nTherefore, the answer (arabic numerals) is 120.", "120", 1.0),
    ("Therefore, the answer (arabic numerals) is 1600*3.5 = $5600", "5600", 1.0),
    ("Therefore, the answer (arabic numerals) is x = 9. Sally has 9 books.", "9", 1.0),
    ("Therefore, the answer (arabic numerals) is 25%. The answer (as a fraction) is 1/4", "25", 1.0),
    ("Therefore, the answer (arabic numerals) is 25%. The answer (as a fraction) is 1/5", "25", 0.0),
    ("Therefore, the answer (arabic numerals) is 1600*3.5 = $5600", "1600", 0.0),
    ("Therefore, the answer (arabic numerals) is 120.", "12", 0.0),
    # (d) a final sentence that concludes, without a marker
    ("He bought it for $80,000 and sold it for $150,000.\nSo Josh made a profit of $70,000.", "70000", 1.0),
    ("8 * 1000 = 8000, and the answer is definitely \\(8000\\)", "8000", 1.0),
    ("We solve $3x = 14$. Thus the value of $x$ is $\\frac{14}{3}$", "14/3", 1.0),
    ("She starts with 4 and gets 5 more.\nTherefore, Sally has 9 books.", "9", 1.0),
    ("In total, 5 + 7 = 12 apples.", "12", 1.0), ("She has 4 and gets 8 more. So it is 12.", "12", 1.0),
    ("Therefore, she needs 20 more cups.\n\nI hope this helps!", "20", 1.0),
    ("So she has 12 apples. Next we find how many she gives away.", "12", 0.0),     # not the last sentence
    ("He buys 3 boxes of 12 eggs.", "12", 0.0),                                          # no conclusion
    ("So she had 12 apples after 3 days.", "12", 0.0),                                  # which number?
    ("So she had 12 apples after 3 days.", "3", 0.0),
    ("So the total is 12. Next we multiply it by", "12", 0.0),                          # cut off mid-sentence
    ("So far she has 12 apples.", "12", 0.0),
    ("Thus $x = 3$ and $y = 5$.", "5", 0.0),
    ("So the total is 12 after 3 days.", "12", 0.0),
    ("So he gets 1 pound, which is 16 ounces, from the third, a total of 6+8+16=30 ounces.", "16", 0.0),
    ("So x = 3, then y = 5.", "3", 0.0), ("<answer>x = 3, then y = 5</answer>", "3", 0.0),      # a value that
    ("<answer>12, so she has 5 left</answer>", "12", 0.0), ("Thus x = 3, so y is 5.", "3", 0.0),  # does not end it
]


@pytest.mark.parametrize("completion,gold,expected", CONTAINERS)
def test_checker_reads_answer_containers(completion, gold, expected):
    assert reward(completion, gold) == expected


RUN_ONS = [  # the answer is what comes before the completion runs on
    ("Final Answer: The final answer is 7. I hope it is correct.\n\nSubproblem 2: Find $y$.\n" + "\\boxed{1}\n" * 300,
     "7", 1.0),
    ("$\\boxed{7}$\n\nSubproblem 2: Find $y$.\n" + "$\\boxed{1}$ " * 300, "7", 1.0),
    ("$\\boxed{7}$\n\nSubproblem 2: Find $y$.\n" + "$\\boxed{1}$ " * 300, "1", 0.0),
    ("The answer is 12.\nsystem\nYou are a helpful assistant. Put your final answer within \\boxed{}.\nuser\n"
     "What is 1 + 2?\nassistant\n\\boxed{3}", "12", 1.0),
    ("The answer is 12.\nsystem\nYou are a helpful assistant.\nuser\nWhat is 1 + 2?\nassistant\n\\boxed{3}", "3", 0.0),
    ("The answer is 12.\nSystem: You are a helpful assistant.\nThe answer is 3.", "12", 1.0),
    ("The answer is 12.<|system|>You are a helpful assistant.<|user|>What is 1+2? The answer is 3.", "12", 1.0),
    ("Therefore, the answer (arabic numerals) is 12.\n\nQ: Tom has 3 apples. How many?\nA: The answer is 3.", "12", 1.0),
    ("The answer is 12. Q: Tom has 3 apples. How many? A: The answer is 3.", "12", 1.0),
    ("The answer is 12. Q: Tom has 3 apples. How many? A: The answer is 3.", "3", 0.0),
    ("We get \\boxed{12} at the point Q: \\boxed{(1, 2)}", "12", 0.0),            # a point Q: is no new question
    ("So the answer is \\boxed{12}.\n\n```python\nprint(f\"\\\\boxed{{{3 * 5}}}\")\n```", "12", 1.0),
    ("The answer is 12.\n```python\n# the answer is x\nx = 3\nprint(x)\n```", "12", 1.0),
    ("```python\nprint(3 * 4)\n```\n```output\n12\n```\nSo the answer is \\boxed{12}.", "12", 1.0),
    ("So the answer is \\boxed{12}.\n```python\nprint(13)\n```\nThe code says 13, so \\boxed{13}.", "12", 0.0),
    ("So the answer is \\boxed{12}.\n```python\nprint(13)\n```\nThe code says 13, so \\boxed{13}.", "13", 0.0),
    ("\\boxed{12}\n```python\nprint(13)\n```\n\\boxed{13}", "12, 13", 0.0),      # code between boxes is text
    ("The final answer is:\n```latex\n\\boxed{12}\n```", "12", 1.0),          # an answer only inside code still counts
]


@pytest.mark.parametrize("completion,gold,expected", RUN_ONS)
def test_checker_stops_at_run_ons(completion, gold, expected):
    assert reward(completion, gold) == expected


@pytest.mark.parametrize("pred,gold,expected", [
    # ± in a list covers both signs, and nothing more
    ("\\pm 1, \\pm 7", "1, -1, 7, -7", True), ("\\pm 1, \\pm 7", "-7, -1, 1, 7", True), ("\\{\\pm 1, \\pm 7\\}", "1,-1,7,-7", True),
    ("\\pm 1, 7", "1, -1, 7", True), ("\\pm 1, \\pm 7", "1, 7", False), ("\\pm 1, \\pm 7", "1, -1, 7", False),
    ("\\pm 1, \\pm 7", "1, -1, 7, -8", False), ("\\pm 2", "2", False),
    # a constant of integration named C or c
    ("\\frac{x^2}{2} + C", "\\frac{x^2}{2} + c", True), ("e^x + C", "e^{x} + c", True), ("x^2 + C", "x^2 + 2c", False),
    ("x^2 + C", "x^3 + c", False), ("C", "c", False), ("x + C", "x + c + C", False),
    # a differential equation solved for the derivative: scaled by a parameter, never by the unknown function
    ("\\ddot{x} = -\\frac{k}{m} x", "m \\ddot{x} + k x = 0", True),
    ("\\dot{y} = \\frac{F - b y}{m}", "m\\dot{y} + b y = F", True), ("y' = \\frac{2y}{t}", "t y' - 2 y = 0", True),
    ("\\ddot{x} = -k x", "m \\ddot{x} + k x = 0", False), ("x \\ddot{x} + k x^2 = 0", "\\ddot{x} + k x = 0", False),
    ("\\ddot{x} = -\\frac{k}{m} x", "m \\ddot{x} + k x^2 = 0", False), ("x^2 = x", "x = 1", False),
    ("\\ddot{x} = -\\frac{k}{m} x", "m \\ddot{x} - k x = 0", False),
    # a Unicode π, Greek letters and superscripts; units after π
    ("2π", "2\\pi", True), ("4π \\text{ cm}^2", "4\\pi", True), ("ω²", "\\omega^2", True), ("3π", "3", False),
    ("4π \\text{ cm}^2", "4", False), ("2\\pi m", "2\\pi", False),
    # a value with a side condition is its value
    ("A = 1/(4 - ω²), for ω² ≠ 4", "\\frac{1}{4-\\omega^{2}}", True),
    ("A = \\frac{1}{4-\\omega^2} \\text{ for } \\omega \\neq 2", "\\frac{1}{4-\\omega^2}", True),
    ("A = \\frac{1}{4-\\omega^2}, \\omega \\neq \\pm 2", "\\frac{1}{4-\\omega^2}", True),
    ("A = 1/(4 - ω²), for ω² ≠ 4", "\\frac{1}{4+\\omega^{2}}", False), ("x = 2 \\text{ for } x > 0", "3", False),
    ("x \\ne 2, x \\ne 3", "x \\ne 2", False), ("3 \\text{ for } x > 0, 5 \\text{ for } x < 0", "3", False),
    ("3 \\text{ if } x > 0 \\text{ and } 5 \\text{ if } x < 0", "3", False),
    # 10^{3} inside a tuple
    ("(10^{3}, 5)", "(1000, 5)", True), ("\\left(10^{3}, 2\\right)", "(1000, 2)", True), ("(10^{3}, 5)", "(100, 5)", False),
    ("(10^{3}\\,\\text{kg}, 5)", "(1000, 5)", True), ("(10^{3} \\mathrm{~m}, 5 \\mathrm{~s})", "(1000, 5)", True),
    ("(10^{3}\\,\\text{kg}, 5)", "(100, 5)", False), ("(1, \\text{odd})", "(1, \\text{even})", False),
])
def test_checker_equivalences_graders_accept_both_ways(pred, gold, expected):
    assert is_equiv(pred, gold) is expected and is_equiv(gold, pred) is expected


@pytest.mark.parametrize("completion,gold,expected", [
    # an exact value and its decimal boxed one after the other are one answer: the exact one
    ("The point is $\\boxed{\\frac{\\sqrt{2}}{2}} \\approx \\boxed{0.707}$.", "\\frac{\\sqrt2}{2}", 1.0),
    ("$\\boxed{0.707}$, exactly $\\boxed{\\frac{\\sqrt{2}}{2}}$", "\\frac{\\sqrt2}{2}", 1.0),
    ("$\\boxed{(\\frac{1}{2}, \\frac{\\sqrt{3}}{2})} \\approx \\boxed{(0.5, 0.866)}$", "(1/2, \\sqrt3/2)", 1.0),
    ("$\\boxed{\\frac{\\sqrt{2}}{2}} \\approx \\boxed{0.8}$", "\\frac{\\sqrt2}{2}", 0.0),       # not its rounding
    ("$\\boxed{\\frac{\\sqrt{2}}{2}} \\approx \\boxed{0.707}$", "0.707", 0.0),                  # the exact one counts
    ("$\\boxed{(\\frac{1}{2}, \\frac{\\sqrt{3}}{2})} \\approx \\boxed{(0.5, 0.87)}$", "(1/2, \\sqrt3/2)", 1.0),
    ("$\\boxed{(\\frac{1}{2}, \\frac{\\sqrt{3}}{2})} \\approx \\boxed{(0.5, 0.85)}$", "(1/2, \\sqrt3/2)", 0.0),
    ("\\boxed{4π \\text{ cm}^2}", "4\\pi", 1.0), ("The area is $\\boxed{A = 1/(4 - ω²), for ω² ≠ 4}$", "\\frac{1}{4-\\omega^2}", 1.0),
    ("\\boxed{(10^{3}, 5)}", "(1000, 5)", 1.0),
    # the policies that stay: rounded decimals, two values, truncated work, brackets, roots
    ("\\boxed{0.707}", "\\frac{\\sqrt2}{2}", 0.0), ("\\boxed{0.333}", "\\frac{1}{3}", 0.0),
    ("The answer is 3. Wait, the answer is 5.", "5", 0.0), ("\\boxed{3} then \\boxed{5}", "5", 0.0),
    ("We compute 3 + 4 = 7, then 7 * 6 =", "42", 0.0), ("We compute 3 + 4 = 7, then 7 * 6 =", "7", 0.0),
    ("\\boxed{(1, 2]}", "[1, 2]", 0.0), ("<answer>[1, 2)</answer>", "[1, 2]", 0.0), ("\\boxed{1, 2, 3}", "1, 2", 0.0),
    ("\\boxed{1}", "1, 2", 0.0), ("<answer>\\pm 1</answer>", "1", 0.0),
])
def test_checker_exact_and_decimal_boxes_and_kept_policies(completion, gold, expected):
    assert reward(completion, gold) == expected


@pytest.mark.parametrize("completion", [
    "<answer>" * 25_000,                                              # every tag left open
    "<answer>" * 10_000 + "1" + "</answer>" * 10_000,                 # nested 10,000 deep
    "<answer>1</answer> or " * 9_000,                                 # too many blocks
    "<answer>" + "1 " * 90_000 + "</answer>",                         # one huge block
    "</answer>" * 20_000 + "<answer>3</answer>",
    "A: " + "1 " * 90_000,
    "A: 1 or 2\n" * 18_000,
    "Therefore, the answer (" * 8_000,
    "So " * 60_000 + "1.",
    "So the total is " + "$1$ " * 40_000 + ".",
    "So " + "$1$. " * 30_000 + "So it is 1.",                        # many sentences and spans at the end
    "x" + " " * 199_990 + ".", "So" + " " * 199_990 + "1.", "A:" + " " * 199_990 + "1", "\n" * 199_000 + "So it is 1.",
    "So it is 1." + " " * 199_000 + "I hope this helps!", "answer" + " " * 199_000 + "(x) is 1",
    "\\boxed{3}" + "```x" * 45_000,
    "\\boxed{3}\nsubproblem 2:" * 8_000,
    "\\boxed{" + "A = 1/(4 - ω²), for ω² ≠ 4, " * 30 + "}",
    "\\boxed{" + ", \\omega \\neq 2" * 60 + "}",
    "\\boxed{" + "\\pm 1, " * 29 + "\\pm 2}",
    "\\boxed{\\frac{\\sqrt{2}}{2}}" + " \\approx \\boxed{0.707}" * 8_000,
])
def test_checker_new_rules_on_hostile_input_are_refused_quickly(completion):
    t = time.thread_time()
    assert reward(completion, "2") == 0.0 and reward(completion, "x") == 0.0
    assert time.thread_time() - t < 1.0


# -----------------------------------------------------------------------------
# verify.py reads the value a reply ends on: a chain or working after the answer marker, prose and arithmetic in
# an <answer> block, broken tags, invented turns, and (with the question) a prose sentence that names the
# question's numbers beside its value. Each rule has its near misses, which earn 0.

JEAN = ("Jean has 30 lollipops. Jean eats 2 of the lollipops. With the remaining lollipops, Jean wants to package 2 "
        "lollipops in one bag. How many bags can Jean fill?")
CARS = ("Cars have lined up on the motorway. Some of the cars drive through in the first 15 minutes of the traffic jam, "
        "then 20 more cars drive through in the remaining 15 minutes of the jam. 5 cars from the line take an exit so "
        "they don't have to drive through the traffic jam. If there were originally 30 cars on the motorway, how many "
        "cars drove through the traffic jam in the first 15 minutes?")
TRUCKS = ("A landscaping company is delivering flagstones to a customer's yard. Each flagstone weighs 75 pounds. If the "
          "delivery trucks can carry a total weight of 2000 pounds, how many trucks will be needed to transport 80 "
          "flagstones in one trip?")
MACK = ("On days one and two, Mack saw a total of 50 birds. On day three he saw none. On days four and five, he saw 120 "
        "birds. On day six he saw 20 and on day seven he saw 90. On average, how many birds did Mack see in a day?")
PAY = ("Sally makes $10 an hour and 1.2 times as much for each hour of overtime. She worked 40 hours and 5 hours of "
       "overtime. How much did she earn?")
JON = "Jon drives 1000 miles a month. How many months does it take him to drive 3000 miles?"

FINAL_STATEMENTS = [  # (completion, gold, question, reward)
    # 1. a chain after the marker: its last value, checked where it is all numbers
    ("Let's think step by step. The first shipment is worth 76,000 and the second 53,200.\nTherefore, the answer "
     "(arabic numerals) is: 76,000 + 53,200 = 129,200.", "129200", None, 1.0),
    ("Therefore, the answer (arabic numerals) is: 76,000 + 53,200 = 129,200.", "76000", None, 0.0),
    ("Therefore, the answer (arabic numerals) is: 76,000 + 53,200 = 129,300.", "129300", None, 0.0),  # wrong sum
    ("The answer is 280 / 7 = 40 birds.", "40", None, 1.0), ("A: 280 / 7 = 40", "40", None, 1.0),
    ("The answer is 40 hours x $10/hour + 5 hours x $12/hour = $460.", "460", None, 1.0),
    ("The answer is 40 hours x $10/hour + 5 hours x $12/hour = $460.", "400", None, 0.0),
    ("The answer is 40 x 10 = 400 and 5 x 12 = 60.", "60", None, 0.0),                 # two results
    ("The answer is 40 x 10 = 400 and 5 x 12 = 60.", "400", None, 0.0),
    ("The answer is 30 - 2 = 28, and 28 / 2 = 14 bags.", "14", None, 1.0),             # computes on from 28
    ("The answer is x = 3, y = 5.", "5", None, 0.0), ("The answer is 12 + 3 = 15 or 16.", "15", None, 0.0),
    # 2. a few lines of working after the marker end on their 'x = value'
    ("Let's think step by step.\nTherefore, the answer (arabic numerals) is:\n\n4x + 12 = 48\n4x = 36\nx = 9",
     "9", None, 1.0),
    ("Therefore, the answer (arabic numerals) is:\n\n4x + 12 = 48\n4x = 36\nx = 9\nSally has 9 books.", "9", None, 1.0),
    ("Therefore, the answer (arabic numerals) is:\n\n4x + 12 = 48\n4x = 36\nx = 9", "36", None, 0.0),
    ("Therefore, the answer (arabic numerals) is:\n\n4x + 12 = 48\nx = 9\ny = 4", "9", None, 0.0),    # two values
    ("Therefore, the answer (arabic numerals) is:\n\n4x + 12 = 48\nx = 9\ny = 4", "4", None, 0.0),
    ("The answer is:\nx = 3\nx = 5", "3", None, 0.0), ("The answer is:\nx = 3\nx = 5", "5", None, 0.0),
    ("Therefore, the answer (arabic numerals) is:\n\n4x + 12 = 48\n4x = 36\nx = 9\nSally has 10 books.", "9", None, 0.0),
    # 3. one sentence after it that restates the value; one that names another number is a second value
    ("Therefore, the answer (arabic numerals) is 280/7 = 40\nMack saw an average of 40 birds per day.", "40", None, 1.0),
    ("Therefore, the answer (arabic numerals) is 280/7 = 40 Mack saw an average of 40 birds per day.", "40", None, 1.0),
    ("Therefore, the answer (arabic numerals) is 280/7 = 40\nMack saw an average of 41 birds per day.", "40", None, 0.0),
    ("Therefore, the answer (arabic numerals) is 280/7 = 40\nMack saw an average of 41 birds per day.", "41", None, 0.0),
    ("Therefore, the answer (arabic numerals) is 280/7 = 40 Mack saw 41 birds a day.", "40", None, 0.0),
    ("Therefore, the answer (arabic numerals) is 280/7 = 40 birds over 8 days.", "40", MACK, 0.0),  # 8: not the question's
    ("Therefore, the answer (arabic numerals) is 280/7 = 40 birds a day on days one and two.", "40", MACK, 1.0),
]


@pytest.mark.parametrize("completion,gold,question,expected", FINAL_STATEMENTS)
def test_checker_reads_the_last_value_of_the_final_statement(completion, gold, question, expected):
    assert reward(completion, gold, question=question) == expected


ANSWER_BLOCKS = [  # (completion, gold, question, reward)
    # prose and arithmetic inside an <answer> block, as a weak model early in R1-Zero-style RL writes it
    ("<think>She works 40 hours at $10 and 5 hours at 1.2 x $10.</think>\n<answer> 40 hours x $10 / hour + 5 hours x 1.2 "
     "x $10/hour = $460. </answer>", "460", PAY, 1.0),
    ("<think>She works 40 hours at $10 and 5 hours at 1.2 x $10.</think>\n<answer> 40 hours x $10 / hour + 5 hours x 1.2 "
     "x $10/hour = $460. </answer>", "460", None, 1.0),
    ("<think>...</think>\n<answer> 40 hours x $10 / hour = $400, plus 5 hours of overtime </answer>", "400", None, 0.0),
    ("<think>...</think>\n<answer> 40 x 10 = 400 and 5 x 12 = 60 </answer>", "60", None, 0.0),
    ("<think>...</think>\n<answer> 5 + 7 = 13 </answer>", "13", None, 0.0),              # a chain that is wrong
    ("<think>...</think>\n<answer> 5 apples + 7 apples = 12 apples </answer>", "12", None, 1.0),
    ("<think>Jean has 30 - 2 = 28 lollipops. 28 / 2 = 14.</think>\n<answer> Jean has 28 lollipops left. Therefore, Jean "
     "can fill 14 bags with 2 lollipops in each bag. </answer>", "14", JEAN, 1.0),
    ("<think>Jean has 30 - 2 = 28 lollipops. 28 / 2 = 14.</think>\n<answer> Jean has 28 lollipops left. Therefore, Jean "
     "can fill 14 bags with 2 lollipops in each bag. </answer>", "14", None, 0.0),     # without the question: which?
    ("<think>...</think>\n<answer> Therefore, Jean can fill 14 bags with 3 lollipops in each bag. </answer>", "14", JEAN, 0.0),
    ("<think>...</think>\n<answer> Therefore, Jean can fill 14 bags with 3 lollipops in each bag. </answer>", "3", JEAN, 0.0),
    ("<think>...</think>\n<answer> Jean can fill 14 or 15 bags. </answer>", "14", JEAN, 0.0),
    ("<think>...</think>\n<answer> Jean can fill 14 bags or 2 bags. </answer>", "14", JEAN, 0.0),
    ("<think>...</think>\n<answer> Jean can fill 2 bags, not 14. </answer>", "14", JEAN, 0.0),
    ("<think>...</think>\n<answer> Jean can fill 2 to 14 bags. </answer>", "14", JEAN, 0.0),          # a range
    ("<think>...</think>\n<answer> Jean can fill between 2 and 14 bags. </answer>", "14", JEAN, 0.0),
    ("<think>...</think>\n<answer> 5 + 7 = 12 or more </answer>", "12", None, 0.0),
    ("<think>...</think>\n<answer> 5 + 7 = 12 times 2 </answer>", "12", None, 0.0),
    ("<think>...</think>\n<answer> Jean can fill at least 14 bags with 2 lollipops in each. </answer>", "14", JEAN, 0.0),
    # a nested block at the end of one left open is its answer
    ("<think> 3000 / 1000 = 3 </think>\n<answer> So, Jon will drive 3000 miles in 3 months (3000 miles / 1000 miles) "
     "<answer> 3 </answer>", "3", JON, 1.0),
    ("<think> 3000 / 1000 = 3 </think>\n<answer> So, Jon will drive 3000 miles (3000 miles / 1000 miles) <answer> 3 "
     "</answer>", "3", None, 1.0),
    ("<think>...</think>\n<answer> So, Jon will drive 3000 miles <answer> 3 </answer> or <answer> 4 </answer>", "3", None, 0.0),
    ("<think>...</think>\n<answer> So, Jon will drive 3000 miles <answer> 3 </answer> and then", "3", None, 0.0),
    # a tag closed by the wrong tag, cut just after the value, or left open after a complete value
    ("<think>1000 + 4 = 1004</think>\n<answer>1004</think>", "1004", None, 1.0),
    ("<think>1000 + 4 = 1004</think>\n<answer>1004</think>", "1005", None, 0.0),
    ("<think>I will put it in <answer> tags. 1000 + 4 = 1004</think>\n<answer>1004</answer>", "1004", None, 1.0),
    ("1000 + 4 = 1004</think>\n<answer>1004</think>", "1004", None, 1.0),         # the prompt opened <think>
    ("<think>1000 + 4 = 1004</think>\n<answer>1004</think> <answer>1005</answer>", "1005", None, 0.0),
    ("<think>1000 + 4 = 1004</think>\n<answer>1004</", "1004", None, 1.0),
    ("<think>1000 + 4 = 1004</think>\n<answer>1004</ans", "1004", None, 1.0),
    ("<think>1000 + 4 = 1004</think>\n<Answer>1004</Answer>", "1004", None, 1.0),
    ("<think>1000 + 4 = 1004</think>\n<answer>The answer is 1004.", "1004", None, 1.0),
    ("<think>1000 + 4 = 1004</think>\n<answer>\\boxed{1004}", "1004", None, 1.0),
    ("<think>1000 + 4 = 1004</think>\n<answer>1004\n", "1004", None, 1.0),                 # the line was finished
    ("<think>1000 + 4 = 1004</think>\n<answer>1004", "1004", None, 0.0),                   # cut: maybe 10045
    ("<think>1000 + 4 = 1004</think>\n<answer>She has 1004 stamps", "1004", None, 0.0),
    ("<think>1000 + 4 = 1004</think>\n<answer>The answer is 1004 or", "1004", None, 0.0),
    ("<think>The answer is <answer>1004</think>", "1004", None, 0.0),                      # still thinking
]


@pytest.mark.parametrize("completion,gold,question,expected", ANSWER_BLOCKS)
def test_checker_reads_prose_chains_and_broken_tags_in_answer_blocks(completion, gold, question, expected):
    assert reward(completion, gold, question=question) == expected


# A turn the model invents, in each chat template's own tokens (as decoded with special tokens kept), in plain prose,
# and where the template's tokens were decoded away. After it nothing is paid: not the invented turn's box or block.
INVENTED_TURNS = {  # each token or phrase alone, then as whole templates write an invented user turn
    "ChatML <|im_start|>": "\n<|im_start|>user\nHow many more books does she need?\n",
    "ChatML <|im_end|>": "<|im_end|>\nHow many more books does she need?\n",
    "<|endoftext|>": "<|endoftext|>How many more books does she need?\n",
    "Llama-3 <|start_header_id|>": "\n<|start_header_id|>user\n\nHow many more books does she need?\n",
    "Llama-3 <|end_header_id|>": "\nuser<|end_header_id|>\n\nHow many more books does she need?\n",
    "Llama-3 <|eot_id|>": "<|eot_id|>\nHow many more books does she need?\n",
    "<|begin_of_text|>": "<|begin_of_text|>How many more books does she need?\n",
    "Gemma <start_of_turn>": "\n<start_of_turn>user\nHow many more books does she need?\n",
    "Gemma <end_of_turn>": "<end_of_turn>\nHow many more books does she need?\n",
    "Phi <|user|>": "\n<|user|>\nHow many more books does she need?\n",
    "Phi <|assistant|>": "\n<|assistant|>\nLet me also answer: how many more books?\n",
    "Phi <|system|>": "\n<|system|>\nYou answer questions.\n",
    "Phi <|end|>": "<|end|>\nHow many more books does she need?\n",
    "Mistral [INST]": " [INST] How many more books does she need? ",
    "Mistral [/INST]": " [/INST] How many more books does she need?\n",
    "Llama-2 </s>": "</s>How many more books does she need?\n",
    "<eos>": "<eos>How many more books does she need?\n",
    "DeepSeek <\uff5cUser\uff5c>": "<\uff5cUser\uff5c>How many more books does she need?",
    "DeepSeek <\uff5cAssistant\uff5c>": "<\uff5cAssistant\uff5c>Next question: how many more books?\n",
    "DeepSeek <\uff5cend\u2581of\u2581sentence\uff5c>": "<\uff5cend\u2581of\u2581sentence\uff5c>How many more books?\n",
    "ASCII <|User|>": "<|User|>How many more books does she need?",
    "ASCII <|Assistant|>": "<|Assistant|>Next question: how many more books?",
    "decoded away": "\nuser\nHow many more books does she need?\n",
    "Human:": "\n\nHuman: How many more books does she need?\n",
    "User:": "\nUser: How many more books does she need?\n",
    "User: after a sentence": " User: How many more books does she need?\n",
    "Assistant:": "\nAssistant: Let me also answer the next one.\n",
    "System:": "\nSystem: You are a helpful assistant.\n",
    "Question:": "\n\nQuestion: How many more books does she need?\nAnswer: ",
    "Question: after a sentence": " Question: How many more books does she need? Answer: ",
    "Q:": "\n\nQ: How many more books does she need?\nA: ",
    "### Instruction:": "\n\n### Instruction:\nHow many more books does she need?\n\n### Response:\n",
    "You are an AI assistant": "\n\nYou are an AI assistant. User will give you a task. How many more books?\n",
    "You are a helpful assistant": " You are a helpful assistant. Please answer: how many more books?\n",
    "You are Qwen": "\nYou are Qwen, created by Alibaba Cloud.\n",
    "whole ChatML turn": "<|im_end|>\n<|im_start|>user\nHow many more books?<|im_end|>\n<|im_start|>assistant\n",
    "whole Llama-3 turn": "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHow many more books?<|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "whole Gemma turn": "<end_of_turn>\n<start_of_turn>user\nHow many more books?<end_of_turn>\n<start_of_turn>model\n",
    "whole Phi turn": "<|end|>\n<|user|>\nHow many more books?<|end|>\n<|assistant|>\n",
    "whole Mistral turn": "</s>[INST] How many more books? [/INST]",
    "whole DeepSeek turn": "<\uff5cend\u2581of\u2581sentence\uff5c><\uff5cUser\uff5c>How many more books?<\uff5cAssistant\uff5c>",
    "whole Human/Assistant turn": "\n\nHuman: How many more books?\n\nAssistant: ",
}


@pytest.mark.parametrize("turn", INVENTED_TURNS.values(), ids=INVENTED_TURNS.keys())
def test_checker_pays_nothing_after_a_turn_the_model_invents(turn):
    # the answer before the turn counts; a box, an <answer> or an answer line after it never does
    assert reward("So she reads \\boxed{20.8} books a week." + turn + "\\boxed{500}", "20.8") == 1.0
    assert reward("So she reads \\boxed{20.8} books a week." + turn + "\\boxed{500}", "500") == 0.0
    assert reward("She reads 52 / 2.5 = 20.8 books a week." + turn + "<answer> 500 </answer>", "500") == 0.0
    assert reward("She reads 52 / 2.5 = 20.8 books a week." + turn + "The answer is 500.", "500") == 0.0
    assert reward("She reads 52 / 2.5 = 20.8 books a week." + turn + "<think>ok</think><answer>500</answer>", "500") == 0.0


RUN_ONS_AND_NEW_PROBLEMS = [  # (completion, gold, reward)
    ("So the answer is 12.\n\nYou are an AI assistant. User will you give you a task. The answer is \\boxed{13}", "12", 1.0),
    ("So the answer is 12.\n\nYou are an AI assistant. User will you give you a task. The answer is \\boxed{13}", "13", 0.0),
    ("<think>...</think><answer>14<|im_end|>", "14", 1.0),               # the end of the turn finished the value
    ("<|im_start|>assistant\nThe answer is 12.<|im_end|>", "12", 1.0),  # a turn marker before anything is no run-on
    ("Question: Tom has 3 apples and gets 4 more. How many?\nHe has 3 + 4 = 7.\n#### 7", "7", 1.0),
    ("You are asked for the total. 3 + 4 = 7.\n#### 7", "7", 1.0),      # 'You are' that is no system prompt
    # a correct box followed by an unmarked new problem of the model's own, which ends in a box
    ("Janet sells 16 - 3 - 4 = 9 eggs, so she makes 9 * 2 = \\boxed{18} dollars.\n\nA robe takes 2 bolts of blue fiber "
     "and half that much white fiber. How many bolts in total does it take?\n\nIt takes 2 / 2 = 1 bolt of white fiber, "
     "so 2 + 1 = \\boxed{3} bolts.", "18", 1.0),
    ("Janet sells 16 - 3 - 4 = 9 eggs, so she makes 9 * 2 = \\boxed{18} dollars.\n\nA robe takes 2 bolts of blue fiber "
     "and half that much white fiber. How many bolts in total does it take?\n\nIt takes 2 / 2 = 1 bolt of white fiber, "
     "so 2 + 1 = \\boxed{3} bolts.", "3", 0.0),
    ("The sum is $\\boxed{13}$.\n\nThe product of two consecutive integers is 56. Find the larger integer.\n\nLet the "
     "integers be n and n + 1, so n = 7 and the answer is $\\boxed{8}$.", "13", 1.0),
    # a second look at the same problem is no new problem: two different boxes stay a hedge
    ("So she makes 9 * 2 = \\boxed{18} dollars.\n\nWait, did she sell 9 eggs? She had 16 - 3 - 4 = 9, yes, but each "
     "costs $3, so 9 * 3 = \\boxed{27}.", "18", 0.0),
    ("So she makes 9 * 2 = \\boxed{18} dollars.\n\nHow much does she make in a week? She makes 18 * 7 = \\boxed{126}.",
     "18", 0.0),
    ("Janet's ducks lay 16 eggs. She eats 3 and bakes with 4, so she sells 9 eggs for \\boxed{18} dollars.\n\nJanet's "
     "ducks lay 16 eggs per day and she sells the rest at $2 each. How much does she make? She makes \\boxed{20}.",
     "18", 0.0),
]


@pytest.mark.parametrize("completion,gold,expected", RUN_ONS_AND_NEW_PROBLEMS)
def test_checker_stops_at_invented_turns_and_new_problems(completion, gold, expected):
    assert reward(completion, gold) == expected


PROSE_ANSWERS = [  # (completion, gold, question, reward)
    # the final sentence's one value, where every other number in it is one the question gives
    ("In the first 15 minutes, 30 - 5 - 20 = 5 cars drove through.\n\n5 cars drove through the traffic jam in the "
     "first 15 minutes.", "5", CARS, 1.0),
    ("5 cars drove through the traffic jam in the first 15 minutes.", "5", CARS, 1.0),
    ("5 cars drove through the traffic jam in the first 15 minutes.", "15", CARS, 0.0),
    ("5 cars drove through the traffic jam in the first 15 minutes.", "5", None, 0.0),    # no question: which one?
    ("5 cars drove through the traffic jam in the first 16 minutes.", "5", CARS, 0.0),    # 16 is no given number
    ("5 or 6 cars drove through the traffic jam in the first 15 minutes.", "5", CARS, 0.0),
    ("5 or 6 cars drove through the traffic jam in the first 15 minutes.", "6", CARS, 0.0),
    ("Then 30 - 5 = 25 cars were left, and 20 of them drove through in the remaining 15 minutes.", "5", CARS, 0.0),
    ("Natalia sold 48 / 2 = 24 clips in May. Natalia sold 48 + 24 = 72 clips altogether in April and May.", "72",
     "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips "
     "did Natalia sell altogether in April and May?", 1.0),
    ("Natalia sold 48 / 2 = 24 clips in May. Natalia sold 48 + 24 = 72 clips altogether in April and May.", "24",
     "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips "
     "did Natalia sell altogether in April and May?", 0.0),
    ("The largest digit in 3 8 1 5 is 8.", "8", "What is the largest digit in 3 8 1 5?", 0.0),   # all the question's
    ("3 8 1 5. The largest is 8.", "8", "What is the largest digit in 3 8 1 5?", 0.0),
    ("Jean eats 2 of the lollipops.", "2", JEAN, 0.0),       # only the question's own number, and not where it asks
    ("So Ruby is 6 times as old as Sam.", "6", None, 0.0), ("So she has twice 6 apples.", "6", None, 0.0),
    ("7+8=15, 4+5+1=10, 3+2+1=6.\n605.", "605", "What is 347 + 258?", 0.0),     # a bare number is no sentence
    ("Ruby is 6 times as old as Sam now.", "6", "Ruby is 6 times older than Sam. In 9 years, Ruby will be 3 times as "
     "old as Sam. How old is Sam now?", 0.0),
    # number words
    ("Three trucks will be needed to transport 80 flagstones.", "3", TRUCKS, 1.0),
    ("Three trucks will be needed to transport 80 flagstones.", "3", None, 0.0),
    ("Three trucks will be needed to transport 90 flagstones.", "3", TRUCKS, 0.0),
    ("So three trucks are needed.", "3", None, 1.0), ("So twenty-five cents are left.", "25", None, 1.0),
    ("So three or four trucks are needed.", "3", None, 0.0), ("So each one of the trucks carries 2000 pounds.", "2000", None, 1.0),
    # after the final statement: a note, a courtesy or code without numbers changes nothing; a note with one does
    ("So Sam has 12 marbles.\n\nNote: this assumes none were lost.", "12", None, 1.0),
    ("So Sam has 12 marbles.\n```python\nprint(5 + 7)\n```", "12", None, 1.0),
    ("So Sam has 12 marbles.\n\nLet me know if you have any other questions!", "12", None, 1.0),
    ("So Sam has 12 marbles.\n\nNote: if 3 were lost, he would have 9.", "12", None, 0.0),
    ("So Sam has 12 marbles.\n```python\nprint(5 + 7", "12", None, 0.0),                 # the code was cut off
    ("So she has 12 apples. Next we find how many she gives away.", "12", None, 0.0),
    ("Mr. Sylas puts 4 cows in each stall, so there are 160 + 32 = 192 cows in eight stalls after Mr. Sylas adds four.",
     "4", "Ten stalls have 20 cows each. Mr. Sylas buys 40 cows and puts an equal number into each of the twenty "
     "stalls. How many cows are in 8 of the stalls?", 0.0),                                # 'Mr.' ends no sentence
]


@pytest.mark.parametrize("completion,gold,question,expected", PROSE_ANSWERS)
def test_checker_reads_a_prose_answer_beside_the_questions_own_numbers(completion, gold, question, expected):
    assert reward(completion, gold, question=question) == expected


@pytest.mark.parametrize("completion,gold,expected", [
    # a box, an answer line or a block decides as it did: the question changes nothing
    ("\\boxed{8}", "8", 1.0), ("7+8=15, 4+5+1=10, 3+2+1=6. \\boxed{605}", "605", 1.0),
    ("\\boxed{605}. Check: 7+8=15, 4+5+1=10, 3+2+1=6, ones first 506.", "605", 1.0),
    ("\\boxed{506}. Check: 7+8=15, 4+5+1=10, 3+2+1=6, ones first 506.", "605", 0.0),
    ("What is the largest digit in 3 8 1 5? Please reason step by step, and put your final answer within \\boxed{}.",
     "8", 0.0),
    ("The answer is 12.", "12", 1.0), ("#### 12", "12", 1.0),
])
def test_checker_question_changes_nothing_where_a_box_or_answer_line_decides(completion, gold, expected):
    for question in (None, "What is the largest digit in 3 8 1 5?", "What is 347 + 258?"):
        assert reward(completion, gold, question=question) == expected


@pytest.mark.parametrize("pred,gold,expected", [
    # an ordered pair or tuple equals a comma list in the same order, and only in that order
    ("(1000, 10)", "10^{3},10", True), ("(10, 1000)", "10^{3},10", False), ("(1000, 10, 1)", "10^{3},10", False),
    ("(3, -2)", "x = 3, y = -2", True), ("(2, 3)", "3, 2", False),
    # one arbitrary constant: any usual name (C, c, C_1, K), the terms in any order; never two constants for one
    ("y = C e^{2x} + x", "y = x + c e^{2x}", True), ("y = C_1 e^{2x} + x", "y=x+ce^{2x}", True),
    ("x^2 + K", "x^2 + C", True), ("y = \\frac{1}{C - x}", "y = \\frac{1}{c - x}", True),
    ("y = C_1 e^{x} + C_2 e^{-x}", "y = c e^{x} + c e^{-x}", False), ("y = C e^{2x} + x", "y = x + c e^{3x}", False),
    ("y = C e^{2x} + x", "y = x + d e^{2x}", False), ("a + b + C", "a + b + d", False),
    # an equation of motion rearranged and divided by a parameter (Leibniz notation or dots); never by the unknown
    ("\\frac{d\\omega}{dt} = \\frac{T}{I} - \\frac{2B\\omega}{I}", "I \\frac{d\\omega}{dt} + 2B\\omega = T", True),
    ("d\u03c9/dt = T/I \u2212 2B\u03c9/I", "I \\frac{d\\omega}{dt} + 2B\\omega = T", True),
    ("\\dot{\\omega} = \\frac{T - 2B\\omega}{I}", "I \\frac{d\\omega}{dt} + 2B\\omega = T", True),
    ("\\frac{d^2x}{dt^2} = -\\frac{k}{m + M} x", "(m + M)\\ddot{x} + kx = 0", True),
    ("\\frac{dy}{dx} = 2y", "y' - 2y = 0", True),
    ("\\omega \\frac{d\\omega}{dt} = \\frac{T\\omega}{I} - \\frac{2B\\omega^2}{I}", "I \\frac{d\\omega}{dt} + 2B\\omega = T", False),
    ("\\frac{d\\omega}{dt} = \\frac{T}{I} + \\frac{2B\\omega}{I}", "I \\frac{d\\omega}{dt} + 2B\\omega = T", False),
    ("\\frac{d^2x}{dt^2} = -\\frac{k}{m} x", "(m + M)\\ddot{x} + kx = 0", False),
    # one value written twice is that value; two different ones are a hedge
    ("0.5 or 0.50", "0.5", True), ("0.5 or 1/2", "\\frac{1}{2}", True), ("0.5 or 0.51", "0.5", False),
    ("0.5 or 0.51", "0.51", False), ("3, 3", "3", True),
    # plain-text sqrt() and pi
    ("20 * sqrt(13)", "20\\sqrt{13}", True), ("sqrt(13)*20", "20\\sqrt{13}", True), ("3pi/2", "\\frac{3\\pi}{2}", True),
    ("20 * sqrt(12)", "20\\sqrt{13}", False), ("sqrt(13)", "13", False),
    # a unit of two or more letters glued to its number; a single letter may be a variable
    ("72Mb", "72", True), ("72 Mb", "72", True), ("5kg", "5", True), ("60mph", "60", True), ("3.5km", "3.5", True),
    ("72Mb", "73", False), ("72Mb", "72000", False), ("2x", "2", False), ("5m", "5", False),
    # a bracketed list that cannot be an interval is a list; one that can stays an interval
    ("\\{1,4\\}", "[4, 1]", True), ("\\{1,2,3\\}", "[3, 1, 2]", True), ("1, 4", "[4, 1]", True),
    ("\\{1,4\\}", "[1, 4]", False), ("\\{1,4\\}", "[4, 2]", False), ("(3, 1, 2)", "[3, 1, 2]", False),
    # an option letter with its content against the bare letter; another letter, or two options, is not it
    ("(d) $\\theta^{-2}$", "(d)", True), ("(d) \\theta^{-2}", "D", True), ("(D) \\theta^{-2}", "(d)", True),
    ("(c) \\theta^{-2}", "(d)", False), ("(A) or (B)", "A", False), ("(A) or (B)", "B", False), ("(a) (b)", "(a)", False),
    ("(d) \\theta^{-2}", "\\theta^{-2}", False), ("d", "(d)", True),
    # thousands separators inside arithmetic
    ("76,000 + 53,200 = 129,200", "129200", True), ("76,000 + 53,200 = 129,300", "129300", False),
    ("1,000, 2,000", "1000", False),
])
def test_checker_new_equivalences_both_ways(pred, gold, expected):
    assert is_equiv(pred, gold) is expected and is_equiv(gold, pred) is expected


@pytest.mark.parametrize("completion,gold,expected", [
    ("The answer is 0.5 or 0.50.", "0.5", 1.0), ("The answer is 0.5 or 0.51.", "0.5", 0.0),
    ("The answer is \\boxed{20 * sqrt(13)}.", "20\\sqrt{13}", 1.0), ("The answer is 20 * sqrt(13).", "20\\sqrt{13}", 1.0),
    ("The answer is 20 * sqrt(12).", "20\\sqrt{13}", 0.0), ("The file takes 72Mb.\n#### 72Mb", "72", 1.0),
    ("The answer is \\boxed{\\{1,4\\}}.", "[4, 1]", 1.0), ("The answer is \\boxed{\\{1,4\\}}.", "[1, 4]", 0.0),
    ("The answer is (d) $\\theta^{-2}$.", "(d)", 1.0), ("The answer is (c) $\\theta^{-2}$.", "(d)", 0.0),
    ("The answer is (A) or (B).", "A", 0.0), ("\\boxed{(A) \\text{ or } (B)}", "B", 0.0),
    ("The pair is $\\boxed{(1000, 10)}$.", "10^{3},10", 1.0), ("The pair is $\\boxed{(10, 1000)}$.", "10^{3},10", 0.0),
])
def test_checker_new_equivalences_in_whole_replies(completion, gold, expected):
    assert reward(completion, gold) == expected


EGGS = ("Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her friends "
        "every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. How much in "
        "dollars does she make every day at the farmers' market?")

REAL_LOOKING = [  # (completion, gold, question, reward): replies as each kind of source writes them
    # base model, plain prose prompt
    (" Janet's ducks lay 16 eggs per day. She eats 3 for breakfast and bakes 4 into muffins. So she"
     " has 16 - 3 - 4 = 9 eggs left. She sells them for $2 each, so she makes 9 * 2 = $18 per day.\n\nQuestion:"
     " A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total"
     " does it take?\nAnswer: It takes 2 / 2 = 1 bolt of white fiber. So the total is 2 + 1 = 3 bolts.",
     "18", EGGS, 1.0),
    (" Janet's ducks lay 16 eggs per day. She eats 3 for breakfast and bakes 4 into muffins. So she"
     " has 16 - 3 - 4 = 9 eggs left. She sells them for $2 each, so she makes 9 * 2 = $18 per day.\n\nQuestion:"
     " A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total"
     " does it take?\nAnswer: It takes 2 / 2 = 1 bolt of white fiber. So the total is 2 + 1 = 3 bolts.",
     "3", EGGS, 0.0),
    (" She has 16 - 3 - 4 = 9 eggs left to sell. She makes 9 * $2 = $18 every day at the farmers'"
     " market.", "18", EGGS, 1.0),
    (" She has 16 - 3 - 4 = 9 eggs left to sell. She makes 9 * $2 = $18 every day at the farmers'"
     " market.", "18", None, 0.0),
    (" The answer is 18.\n\nQuestion: How many eggs does she eat in a week?\nAnswer: 21", "18", EGGS, 1.0),
    (" $18", "18", EGGS, 1.0),
    (" She makes $18 every day.", "18", EGGS, 1.0),
    (" She makes $18 every day, or $126 every week.", "18", EGGS, 0.0),
    (" She makes 18 dollars.\nShe eats 3 eggs, so 16 - 3 = 13.", "18", EGGS, 0.0),
    # R1-Zero style rollouts
    ("Let me figure this out. 16 - 3 - 4 = 9 eggs. 9 * 2 = 18.</think> <answer>18</answer>", "18", EGGS, 1.0),
    ("Let me figure this out. 16 - 3 - 4 = 9 eggs. 9 * 2 = 18.</think> <answer> Janet makes $18 every"
     " day at the farmers' market. </answer>", "18", EGGS, 1.0),
    ("Let me figure this out. 16 - 3 - 4 = 9 eggs. 9 * 2 = 18.</think> <answer> 16 - 3 - 4 = 9 eggs,"
     " 9 x $2 = $18 </answer>", "18", EGGS, 1.0),
    ("Let me figure this out.</think> <answer> 16 - 3 - 4 = 9 eggs, 9 x $2 = $18 </answer>", "9", EGGS, 0.0),
    ("16 - 3 - 4 = 9.</think> <answer>9 eggs</answer>\nUser: How much does she make?\nAssistant: <think>9*2=18</th"
     "ink> <answer>18</answer>", "18", EGGS, 0.0),
    ("16 - 3 - 4 = 9.</think> <answer>18</answer> <answer>18</answer>", "18", EGGS, 1.0),
    ("9 * 2 = 18</think>\n<answer>\n$18\n</answer>", "18", EGGS, 1.0),
    ("9 * 2 = 18</think>\n<answer>\\$18 per day</answer>", "18", EGGS, 1.0),
    ("9 * 2 = 18</think>\n<answer>9 eggs x $2 = $18</answer>", "18", None, 1.0),
    ("9 * 2 = 18</think>\n<answer>9 eggs times 2 dollars</answer>", "9", EGGS, 0.0),    # goes on computing
    ("9 * 2 = 18</think>\n<answer>9 eggs x $2 = $18 and 3 eggs for breakfast</answer>", "18", None, 0.0),
    ("9 * 2 = 18</think>\n<answer>The answer is 18</answer>", "18", None, 1.0),
    # TheoremQA-like
    ("Using the formula, the probability is 0.25. Therefore, the answer is 0.25.", "0.25", None, 1.0),
    ("Therefore, the answer is (c).", "(c)", None, 1.0),
    ("Therefore, the answer is (c).", "(b)", None, 0.0),
    ("The statement holds for all n, so the answer is True.", "True", None, 1.0),
    ("The statement holds for all n, so the answer is True.", "False", None, 0.0),
    ("Therefore, the answer is [1, 2, 3].", "[1, 2, 3]", None, 1.0),
    ("Therefore, the answer is [3, 2, 1].", "[1, 2, 3]", None, 0.0),
    ("Therefore, the answer is 3.1416.", "3.14", None, 0.0),
    # tool-integrated
    ("```python\nprint(16 - 3 - 4)\n```\n```output\n9\n```\nShe sells 9 eggs.\n```python\nprint(9"
     " * 2)\n```\n```output\n18\n```\nThe answer is $\\boxed{18}$.", "18", EGGS, 1.0),
    ("```python\nprint(16 - 3 - 4)\n```\n```output\n9\n```\nShe sells 9 eggs, making 9 * 2 = 18 dollars."
     "```python\nprint(16 - 3 - 4)\n```\n```output\n9\n```\nShe sells 9 eggs, making 9 * 2 = 18 dollars.",
     "18", EGGS, 1.0),
    # first sample kinds
    ("Let's think step by step. ... Therefore, the answer (arabic numerals) is: 76,000 + 53,200 ="
     " 129,200.", "129200", None, 1.0),
    ("The total is 12.\nYou are an AI assistant that helps people find information.", "12", None, 0.0),
    ("So the total is 12.\nYou are an AI assistant that helps people find information.", "12", None, 1.0),
]


@pytest.mark.parametrize("completion,gold,question,expected", REAL_LOOKING)
def test_checker_on_replies_as_base_models_rl_rollouts_api_models_and_tools_write_them(completion, gold, question,
                                                                                          expected):
    assert reward(completion, gold, question=question) == expected


@pytest.mark.parametrize("first,second", [
    ("<answer>14</answer>", "<answer>15</answer>"), ("\\boxed{14}", "<answer>15</answer>"),
    ("<answer>14</answer>", "\\boxed{15}"), ("<answer>14</answer>", "<answer>\\boxed{15}</answer>"),
    ("<answer>14</answer>", "<answer>15</think>"), ("<answer>So she fills 14 bags.</answer>", "<answer>15</answer>"),
])
@pytest.mark.parametrize("between", [" or maybe ", "\nWait, let me check that again.\n", "\n\n"])
def test_checker_two_different_answers_pay_nothing_whichever_is_the_gold(first, second, between):
    completion = "<think>28 / 2 = 14</think>\n" + first + between + second
    assert reward(completion, "14") == 0.0 and reward(completion, "15") == 0.0
    assert reward(completion, "14", question=JEAN) == 0.0 and reward(completion, "15", question=JEAN) == 0.0
    same = "<think>28 / 2 = 14</think>\n" + first + between + second.replace("15", "14")
    assert reward(same, "14") == 1.0                                     # the same value twice is one answer


@pytest.mark.parametrize("completion,question", [
    ("He buys 3 boxes of 4 eggs. So the total is 12", None),             # cut: maybe '... is 120 eggs.'
    ("Therefore, Sam has 12", None), ("So, in total, 3 * 4 = 12", None), ("Thus the number of eggs is $12", None),
    ("He buys 3 boxes of 4 eggs. So the total is 12. Next we multiply it by", None),
    ("So 12 cars drove through the traffic jam in the first 15", CARS),
    ("12 cars drove through the traffic jam in the first 15 minutes", CARS),
    ("<answer> So the total is 12", None), ("<answer> 12 cars drove through in the first 15 minutes", CARS),
])
def test_checker_a_concluding_sentence_cut_off_is_no_answer(completion, question):
    assert reward(completion, "12", question=question) == 0.0
    finished = completion.replace(" Next we multiply it by", "") + ("$." if "$" in completion else ".")
    assert reward(finished, "12", question=question) == 1.0            # the same sentence, finished, is read


@pytest.mark.parametrize("completion", [
    "Therefore, the answer (arabic numerals) is:\n" + "x = 1\n" * 60_000,
    "The answer is: " + "1 + " * 40_000 + "1 = 40001",
    "<answer>" + "40 hours x $10 / hour + " * 8_000 + "= $460 </answer>",
    "<answer> So " + "<answer> 3 </answer> " * 10_000,
    "<answer>1004" + "</think>" * 20_000, "<answer>" * 20_000 + "</",
    "So she reads 12 books." + "\n\nA robe takes 2 bolts of fiber. How many bolts?" * 4_000,
    "\\boxed{12}" + "\nThe farmer has 2 cows. How many cows?" * 5_000,
    "So " + "three or four " * 15_000 + "trucks.", "x" + " User:" * 30_000, "You are" + " an AI assistant." * 10_000,
    "Mr. " * 50_000 + "So it is 1.", "So Sam has 12 marbles." + "\nNote: none." * 15_000,
    "5 cars drove " + "in the first 15 minutes " * 8_000 + ".",
])
def test_checker_final_statement_rules_on_hostile_input_are_refused_quickly(completion):
    t = time.thread_time()
    assert reward(completion, "2", question=CARS) == 0.0 and reward(completion, "x") == 0.0
    assert time.thread_time() - t < 1.0


@pytest.mark.parametrize("completion,question", [
    ("So she has 12 apples and 3 pears.", "1 2 3 " * 60_000),           # a huge question full of numbers
    ("So " + "twenty-five " * 16_000 + ".", "What is twenty-five?"),
    ("The answer is " + "1 = " * 240 + "1.", None), ("</think><answer>" * 12_000, None),
    ("x." + " You are" * 25_000, None), ("x" + "\nuser" * 30_000, None),
])
def test_checker_question_and_new_patterns_stay_bounded(completion, question):
    t = time.thread_time()
    assert reward(completion, "2", question=question) == 0.0
    assert time.thread_time() - t < 1.0


# -----------------------------------------------------------------------------
# Real data (skipped where ../shared/data is absent, as on users' machines)

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shared", "data")
needs_data = pytest.mark.skipif(not os.path.isdir(SHARED), reason="../shared/data not present")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]


@needs_data
@pytest.mark.parametrize("split", ["test", "train"])
def test_gsm8k_solutions_earn_full_reward(split):
    rows = read_jsonl(os.path.join(SHARED, "gsm8k", f"{split}.jsonl"))
    misses = [r for r in rows if reward(r["answer"], mgrpo.gold_of(r)) != 1.0]
    assert not misses


@needs_data
def test_minerva_math_solutions_earn_reward_and_answers_equal_themselves():
    golds = [last_boxed(r["solution"]) for r in read_jsonl(os.path.join(SHARED, "minerva_math", "test.jsonl"))]
    rows = read_jsonl(os.path.join(SHARED, "minerva_math", "test.jsonl"))
    assert len(rows) == 272 and all(reward(r["solution"], g) == 1.0 for r, g in zip(rows, golds))
    assert all(is_equiv("\\displaystyle " + g, g) for g in golds)               # full parse, no fast path


@needs_data
def test_olympiadbench_golds_earn_reward_and_equal_themselves():
    rows = read_jsonl(os.path.join(SHARED, "olympiadbench", "test.jsonl"))
    golds = [mgrpo.gold_of(r) for r in rows]
    assert len(golds) == 675 and all(reward(f"So the answer is $\\boxed{{{g}}}$.", g) == 1.0 for g in golds)
    assert all(is_equiv("\\displaystyle " + g, g) for g in golds)


@needs_data
def test_negative_control_different_golds_are_rarely_equal():
    import random
    golds = sorted({mgrpo.gold_of(r) for name in ("math500", "minerva_math", "olympiadbench")
                    for r in read_jsonl(os.path.join(SHARED, name, "test.jsonl"))})
    rng = random.Random(0)
    pairs = [tuple(rng.sample(golds, 2)) for _ in range(1000)]
    assert sum(is_equiv(x, y) for x, y in pairs) <= 2          # bench/verify_real_data.py shows each one


PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shared", "checker-suites", "peers.jsonl")


@pytest.mark.skipif(not os.path.isfile(PEERS), reason="../shared/checker-suites not present")
def test_other_projects_checker_cases_at_least_97_percent_with_at_most_2_false_positives():
    cases = [c for c in read_jsonl(PEERS) if not c["policy_differs"]]
    got = [(is_equiv(c["pred"], c["gold"]) if c["api"] == "is_equiv" else reward(c["pred"], c["gold"]) == 1.0)
           for c in cases]
    fp = sum(g and not c["expected"] for g, c in zip(got, cases))
    right = sum(g == c["expected"] for g, c in zip(got, cases))
    assert len(cases) == 323 and right / len(cases) >= 0.97 and fp <= 2


@needs_data
def test_math500_solutions_earn_reward_and_answers_equal_themselves():
    rows = read_jsonl(os.path.join(SHARED, "math500", "test.jsonl"))
    hits = sum(reward(r["solution"], r["answer"]) for r in rows)
    assert hits / len(rows) >= 0.995
    assert all(is_equiv(r["answer"], r["answer"]) for r in rows)
    assert all(is_equiv("\\displaystyle " + r["answer"], r["answer"]) for r in rows)   # full parse, no fast path


# MATH's training split (--data math): ../shared/data/math/train.jsonl, read through mgrpo's cache as a user's run does.

def math_cache(tmp_path, monkeypatch, *names):
    """An MGRPO_CACHE holding the shared copies of `names` ('math' -> math/train.jsonl, others test.jsonl)."""
    for name in names:
        split = "train" if name == "math" else "test"
        src = os.path.join(SHARED, name, f"{split}.jsonl")
        if not os.path.isfile(src):
            pytest.skip(f"../shared/data/{name} not present")
        os.makedirs(tmp_path / "cache" / name)
        shutil.copy(src, tmp_path / "cache" / name / f"{split}.jsonl")
    monkeypatch.setattr(mgrpo, "CACHE_DIR", str(tmp_path / "cache"))

    def no_hub(*a, **kw):
        raise AssertionError("a test asked the Hugging Face Hub for data")
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)


def test_math_training_split_golds_are_earned_by_their_own_solutions(tmp_path, monkeypatch, capsys):
    math_cache(tmp_path, monkeypatch, "math")
    rows = read_jsonl(os.path.join(SHARED, "math", "train.jsonl"))
    problems = mgrpo.load_problems("math", "train")
    note = capsys.readouterr().out.strip()
    # two solutions box nothing ('there are $\\boxed{}$ primes'): left out, with one line naming them
    assert len(rows) == 7500 and len(problems) == 7498 and len(note.splitlines()) == 1 and "5342, 5344" in note
    kept = [r for r in rows if last_boxed(r["solution"])]
    assert [p["question"] for p in problems] == [r["problem"] for r in kept]
    assert all(p["gold"] == last_boxed(r["solution"]) for p, r in zip(problems, kept))
    misses = [(r, p["gold"]) for r, p in zip(kept, problems) if reward(r["solution"], p["gold"]) != 1.0]
    # Every solution that boxes one answer earns its gold. The 21 that box several (two points of intersection,
    # a box in an Asymptote label, an intermediate result) are read as a list or a hedge by the checker's policy
    # on several boxes, so they miss the last box alone; that box, stated alone, earns it.
    assert len(misses) == 21 and all(len(verify.boxed_all(r["solution"])) >= 2 for r, _ in misses)
    assert all(reward(f"So the answer is $\\boxed{{{g}}}$.", g) == 1.0 for _, g in misses)


@needs_data
def test_no_math_training_problem_is_a_math500_problem():
    def norm(q):
        return " ".join(q.split())
    train = [norm(r["problem"]) for r in read_jsonl(os.path.join(SHARED, "math", "train.jsonl"))]
    test = [norm(r["problem"]) for r in read_jsonl(os.path.join(SHARED, "math500", "test.jsonl"))]
    assert len(train) == 7500 and len(test) == 500 and not set(train).intersection(test)
    assert norm("a  b\n c") == "a b c"                        # the comparison is whitespace-blind


def test_math_is_not_an_evaluation_set(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mgrpo, "CACHE_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as e:
        mgrpo.load_problems("math", "test")
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "--eval-data math500" in err


def test_offline_math_error_names_the_file_and_the_folder(tmp_path, monkeypatch, capsys):
    def offline(*a, **kw):
        raise OSError("network unreachable")
    monkeypatch.setattr(mgrpo.urllib.request, "urlopen", offline)
    monkeypatch.setattr(mgrpo, "CACHE_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as e:
        mgrpo.load_problems("math", "train")
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "Qwen2.5-Math" in err
    assert os.path.join(str(tmp_path), "math") in err and "train.jsonl" in err


def test_cli_trains_on_math_and_evaluates_on_math500_offline_from_the_cache(tiny, tmp_path, monkeypatch):
    math_cache(tmp_path, monkeypatch, "math", "math500")
    model = shutil.copytree(tiny, str(tmp_path / "long"))      # MATH's longest problems need more than 512 positions
    with open(os.path.join(model, "config.json")) as f:
        cfg = json.load(f)
    write_jsonl(os.path.join(model, "config.json"), [{**cfg, "max_position_embeddings": 8192}])
    out = str(tmp_path / "run")
    log = mgrpo.main(["--model", model, "--data", "math", "--eval-data", "math500", "--device", "cpu", "--steps", "1",
                      "--batch-size", "2", "--G", "2", "--H", "2", "--max-new-tokens", "4", "--eval-n", "2",
                      "--output-dir", out])
    assert set(log["eval"]) == {"math500"} and log["l1_tokens"] > 0
    rows = [json.loads(x) for x in open(os.path.join(out, "eval-math500-000001.jsonl"))]
    math500 = read_jsonl(os.path.join(SHARED, "math500", "test.jsonl"))
    assert [r["gold"] for r in rows] == [r["answer"] for r in math500[:2]]


# =============================================================================
# It learns: the toy task of examples/toy.py, trained through mgrpo.train_step; and the experiments run


def run_ablation(tmp_path, *argv):
    import ablations
    out = str(tmp_path / "results")
    result = ablations.main([*argv, "--seeds", "0", "--steps", "2", "--n-eval", "4", "--warm-target", "0", "--out", out])
    name = argv[0] + (f"-{argv[argv.index('--task') + 1]}" if "--task" in argv else "")
    return result, open(os.path.join(out, f"{name}.md")).read(), out


def test_compute_matched_experiment_runs_every_method_and_writes_table_and_curves(tmp_path):
    import ablations
    result, md, out = run_ablation(tmp_path, "compute", "--curve-every", "1", "--methods", *ablations.METHODS)
    assert list(result["methods"]) == list(ablations.METHODS)
    assert result["methods"]["mgrpo_batch_norm"]["runs"][0]["steps"]["l2_grad_norm"] is not None
    g = result["methods"]["grpo_g"]["flags"]["G"]
    mg = result["methods"]["mgrpo"]["runs"][0]
    assert g == round(8 * mg["rollout_tokens"] / mg["l1_tokens"]) and g > 8      # rollout tokens matched
    assert result["methods"]["grpo_2x"]["runs"][0]["optimizer_steps"] == 4
    for k, m in result["methods"].items():                                              # curve points at steps
        assert [s for s, _, _ in m["runs"][0]["curve"]] == ([0, 1, 2, 3, 4] if k == "grpo_2x" else [0, 1, 2])
    first_table = md[:md.index("\n\n", md.index("| method"))]
    assert sum(line.startswith(("| GRPO", "| MGRPO")) for line in first_table.splitlines()) == len(ablations.METHODS)
    assert "±" not in md and "Paired" not in md                       # one seed: no spread, nothing to pair
    if importlib.util.find_spec("matplotlib"):
        assert os.path.getsize(os.path.join(out, "curves.png")) > 10_000


def test_h_sweep_experiment_runs_each_h_and_writes_table_and_plot(tmp_path):
    result, md, out = run_ablation(tmp_path, "hsweep", "--H", "2", "4", "--curve-every", "0")
    assert [m["H"] for m in result["methods"].values()] == [2, 4] and md.count("\n| H = ") == 2
    tokens = [m["runs"][0]["l2_tokens"] for m in result["methods"].values()]
    assert tokens[1] > tokens[0]                                                        # H = 4 samples more
    if importlib.util.find_spec("matplotlib"):
        assert os.path.getsize(os.path.join(out, "hsweep.png")) > 10_000


def test_compute_on_the_addition_task_writes_its_own_files_with_the_intrinsic_row_and_greedy_curves(tmp_path, capsys):
    result, md, out = run_ablation(tmp_path, "compute", "--task", "addition", "--methods", "grpo", "mgrpo",
                                   "--curve-every", "1")
    assert result["task"] == "addition" and not os.path.exists(os.path.join(out, "compute.md"))
    lines = [x for x in md.splitlines() if x.startswith("| ")]
    assert [x.split(" | ")[0] for x in lines[2:5]] == ["| warm start, before RL (intrinsic)", "| GRPO (`--layers 1`)",
                                                       "| MGRPO, Layer 2's N = the corrections trained "
                                                       "(`--l2-loss-norm trained`)"]
    run = result["methods"]["mgrpo"]["runs"][0]
    assert [s for s, _, _ in run["curve_greedy"]] == [0, 1, 2]
    assert list(run["curve_greedy"][-1][1:]) == [run["after"]["delta_i2c"], run["after"]["delta_c2i"]]
    # one progress bar per run, named by method and seed; none from the evaluations or from transformers
    err = capsys.readouterr().err
    assert "(--l2-loss-norm trained), seed 0" in err and "GRPO (--layers 1), seed 0" in err
    assert "eval t1" not in err and "eval t2" not in err and "Writing model shards" not in err
    if importlib.util.find_spec("matplotlib"):
        assert os.path.getsize(os.path.join(out, "curves-addition.png")) > 10_000


@pytest.mark.parametrize("argv,needle", [(["compute", "--methods", "grpo_g"], "grpo_g needs mgrpo"),
                                         (["hsweep", "--H", "1", "4"], "--H must be >= 2")])
def test_ablations_refuse_bad_input_in_one_line(argv, needle, tmp_path, capsys):
    import ablations
    with pytest.raises(SystemExit) as e:
        ablations.main([*argv, "--out", str(tmp_path)])
    assert e.value.code == 2 and needle in capsys.readouterr().err.splitlines()[-1]


# The learning tests run on whatever kernels this machine's torch picks (the pin of examples/numerics.py needs
# a fresh process), so they assert what holds on every kernel path with room to spare. MGRPO (the defaults),
# digits task, seed 0, 150 steps, one thread, measured 2026-12-06: held-out Acc@t1 0.350 -> 0.725 on torch's
# AVX2 (pinned) and AVX-512 kernels and 0.715 on its plain C++ ones; sampled correction rate 0.109 -> 0.245,
# 0.240 and 0.245. Over the 10 seeds of examples/results/compute.md every seed gained at least 0.29 Acc@t1,
# and every seed's sampled correction rate rose.


def committed_warm_start():
    """Seed 0's first run of the committed digits quick result, and what it ran with (its numerics: threads,
    transformers, ...)."""
    committed = json.load(open(os.path.join(HERE, "examples", "results", "quick", "compute.json"), encoding="utf-8"))
    return next(iter(committed["methods"].values()))["runs"][0], committed["numerics"]


def warm_start(run):
    """A run_toy result's numbers before RL."""
    return run["warm_steps"], run["before"], run["sampled_corr_before"]


def another_toy_model(run):
    """None where `run` (a run_toy result, digits, seed 0) started from the committed warm start, else the one-line
    reason to skip: another transformers (or its tokenizers) builds another tiny model and tokenizer from the same
    seed, so the measured margins are not about it. The same transformers with another warm start is no reason:
    the caller's assertion, or the warm-start test, then fails."""
    import transformers
    first, numerics = committed_warm_start()
    made_with = numerics["transformers"]
    if warm_start(run) == warm_start(first) or transformers.__version__ == made_with:
        return None
    return (f"transformers {transformers.__version__} builds another toy model (warm start Acc@t1 "
            f"{run['before']['acc_t1']} after {run['warm_steps']} steps) than transformers {made_with} did for the "
            f"committed results ({first['before']['acc_t1']} after {first['warm_steps']})")


@pytest.fixture(scope="module")
def toy_mgrpo(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                     # as measured
    try:
        return toy.run_toy(seed=0, layers=2, steps=150, workdir=str(tmp_path_factory.mktemp("toy")), curve_every=0,
                           log=None)
    finally:
        torch.set_num_threads(threads)


def test_mgrpo_raises_held_out_accuracy_on_the_toy_task(toy_mgrpo):
    if another_toy_model(toy_mgrpo):
        pytest.skip(another_toy_model(toy_mgrpo))
    assert toy_mgrpo["after"]["acc_t1"] - toy_mgrpo["before"]["acc_t1"] >= 0.25


def test_mgrpo_raises_the_correction_rate_of_wrong_answers_on_the_toy_task(toy_mgrpo):
    if another_toy_model(toy_mgrpo):
        pytest.skip(another_toy_model(toy_mgrpo))
    assert toy_mgrpo["sampled_corr_after"] > toy_mgrpo["sampled_corr_before"] + 0.05


def test_negative_control_flipped_advantage_does_not_learn_the_toy_task(tmp_path, monkeypatch):
    # The same run with the advantage sign flipped. It collapses within 10 steps (held-out Acc@t1
    # 0.35 -> 0.00 at step 10, measured), so 40 steps show it; with every answer wrong, each of its
    # steps sends all 128 answers to Layer 2 and costs ~3x a normal step.
    advantages = mgrpo.group_advantages
    monkeypatch.setattr(mgrpo, "group_advantages", lambda r, eps=1e-4, **kw: -advantages(r, eps, **kw))
    r = toy.run_toy(seed=0, layers=2, steps=40, workdir=str(tmp_path), curve_every=0, log=None)
    assert r["after"]["acc_t1"] <= r["before"]["acc_t1"] - 0.1


def test_toy_digits_best_constant_answer_stays_below_the_warm_start_stop():
    assert toy.best_constant_accuracy([{"gold": g} for g in "9998701"]) == 3 / 7
    # the docstring's numbers: the maximum is skewed upwards by never repeating a problem (seeds 0, 1, 2)
    best = [toy.best_constant_accuracy(toy.split(seed)[1]) for seed in (0, 1, 2)]
    assert best == [0.18, 0.14, 0.17] and max(best) < 0.25
    train = toy.split(0)[0]
    assert not any(p["gold"] == "0" for p in train) and sum(p["gold"] == "9" for p in train) == 376


# -----------------------------------------------------------------------------
# The second toy task, column addition with the work shown (examples/toy.py TASKS["addition"]), and what
# the experiments print.


def test_column_work_writes_each_column_with_the_carry_it_takes_in():
    assert toy.column_work(47, 38) == "7+8=15, 4+3+1=8. \\boxed{85}"
    assert toy.column_work(95, 17) == "5+7=12, 9+1+1=11. \\boxed{112}"
    assert toy.column_work(21, 34) == "1+4=5, 2+3=5. \\boxed{55}"
    train, held_out = toy.split(0, task="addition")
    assert len(train) == 2000 and len(held_out) == 200
    assert not {p["key"] for p in train} & {p["key"] for p in held_out}
    assert all(p["gold"] == str(sum(p["key"])) and p["work"].endswith(f"\\boxed{{{p['gold']}}}") for p in train)


def untrained_task_run(tmp_path, task):
    """A toy task's tiny model before any warm start, its args, and 64 of its training problems."""
    args = toy.toy_args(task, model=toy.build_task_model(str(tmp_path / "m"), task))
    return mgrpo.setup(args), args, toy.split(0, task=task)[0][:64]


def test_the_warm_start_shows_only_right_first_answers_in_second_turns(tmp_path, monkeypatch):
    # The warm start may teach the form of a second turn, never a correction: every q' it trains on holds
    # the right worked answer of its own question, and the target repeats it.
    run, args, train = untrained_task_run(tmp_path, "addition")
    shown, build = [], mgrpo.build_correction_prompt
    monkeypatch.setattr(mgrpo, "build_correction_prompt", lambda p, o, g: shown.append((p, o)) or build(p, o, g))
    monkeypatch.setattr(toy, "greedy_accuracy", lambda *a: 1.0)       # the first-turn phase ends at once,
    monkeypatch.setattr(toy, "greedy_repeat_rate", lambda *a: 0.0)    # the second-turn phase never early
    assert toy.warm_start(run, train, args, target=0.5, max_steps=2, batch=8, task="addition") == 2
    work = {run.tk.text(run.tk.prompt(p["question"])): p["work"] for p in train}
    assert len(shown) == 8 and all(run.tk.text(o) == work[run.tk.text(p)] for p, o in shown)


# Over a minute and a half each: skipped by default so the suite stays under 4 minutes; CI runs them (.ci/run).
SLOW = pytest.mark.skipif(not os.environ.get("MGRPO_SLOW_TESTS"),
                          reason="slow (about 2 minutes on 2 cores): MGRPO_SLOW_TESTS=1 runs it, as CI does")


# -----------------------------------------------------------------------------
# The examples as a new user runs them: their own thread count, a run folder of their own, Ctrl-C


def stub_experiment(monkeypatch, seen):
    """ablations' compute stubbed out: records the thread count it runs under and returns an empty table."""
    import ablations

    def compute(opts, work):
        seen.append(torch.get_num_threads())
        return {"methods": {}}
    monkeypatch.setattr(ablations, "compute", compute)
    return ablations


def test_the_examples_set_their_own_thread_count_record_it_and_give_the_callers_back(tmp_path, monkeypatch):
    seen = []
    ablations = stub_experiment(monkeypatch, seen)
    torch.set_num_threads(2)
    try:
        result = ablations.main(["compute", "--out", str(tmp_path / "a")])
        assert seen == [1] and result["threads"] == 1 and torch.get_num_threads() == 2
        assert "1 torch thread," in open(tmp_path / "a" / "compute.md").read()
        ablations.main(["compute", "--out", str(tmp_path / "b"), "--threads", "2"])
        assert seen == [1, 2]
        monkeypatch.setattr(toy, "write_task", lambda *a: seen.append(torch.get_num_threads()) or 0)
        toy.main(["write", str(tmp_path / "w")])
        assert seen == [1, 2, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(2 if os.cpu_count() >= 2 else 1)


def test_ablations_write_a_run_folder_by_default_and_the_committed_results_only_when_asked(tmp_path, monkeypatch):
    import subprocess
    ablations = stub_experiment(monkeypatch, [])
    here = os.path.dirname(os.path.abspath(__file__))
    assert ablations.RUNS == os.path.join(here, "examples", "runs")
    # the default folder is ignored by git, so following the docs leaves the checkout clean
    if shutil.which("git") and os.path.isdir(os.path.join(here, ".git")) or os.path.isfile(os.path.join(here, ".git")):
        assert subprocess.run(["git", "check-ignore", "-q", "examples/runs/compute-x/compute.json"], cwd=here).returncode == 0
    committed = {f: os.path.getmtime(os.path.join(here, "examples", "results", f))
                 for f in os.listdir(os.path.join(here, "examples", "results"))}
    monkeypatch.setattr(ablations, "RUNS", str(tmp_path / "runs"))
    ablations.main(["compute"])
    (run,) = os.listdir(tmp_path / "runs")
    assert run.startswith("compute-") and {"compute.json", "compute.md"} <= set(os.listdir(tmp_path / "runs" / run))
    assert committed == {f: os.path.getmtime(os.path.join(here, "examples", "results", f)) for f in committed}


@pytest.mark.parametrize("argv,needle", [(["report"], "report needs --out DIR"),
                                         (["compute", "--threads", "0"], "--threads must be >= 1"),
                                         (["compute", "--jobs", "0"], "--jobs must be >= 1"),
                                         (["compute", "--seeds", "0", "0"], "each seed once")])
def test_ablations_refuse_a_report_without_a_folder_and_bad_counts_in_one_line(argv, needle, capsys):
    import ablations
    with pytest.raises(SystemExit) as e:
        ablations.main(argv)
    assert e.value.code == 2 and needle in capsys.readouterr().err.splitlines()[-1]


def test_ctrl_c_on_ablations_is_one_line_exit_130_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import ablations

    def interrupted(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(toy, "run_toy", interrupted)
    old = tmp_path / "old"
    os.makedirs(old)
    (old / "compute.json").write_text("earlier results")
    for out in (tmp_path / "new", old):
        with pytest.raises(SystemExit) as e:
            ablations.cli(["compute", "--seeds", "0", "--out", str(out)])
        # the run's own progress bar (leave=False: a terminal clears it) aside, one line and no traceback
        err = [x for x in capsys.readouterr().err.splitlines() if x.strip() and "it/s]" not in x]
        assert e.value.code == 130 and err == ["interrupted: no results written"]
    assert not os.path.exists(tmp_path / "new") and os.listdir(old) == ["compute.json"]
    assert (old / "compute.json").read_text() == "earlier results"


# -----------------------------------------------------------------------------
# Evidence: paired seeds with their intervals, and numbers that do not depend on the machine


def test_t_quantile_is_the_t_tables():
    import ablations
    for df, q in [(1, 12.7062), (2, 4.3027), (9, 2.2622), (19, 2.0930), (29, 2.0452)]:
        assert ablations.t_quantile(0.975, df) == pytest.approx(q, abs=1e-4)


def test_paired_differences_hand_computed():
    import ablations
    s = ablations.paired([0.1, 0.2, 0.3, 0.0])           # mean 0.15, sample std 0.1291, t(0.975, 3) = 3.1824
    half = 3.182446 * math.sqrt(((0.05 ** 2) * 2 + (0.15 ** 2) * 2) / 3) / 2
    assert s["mean"] == pytest.approx(0.15) and s["hi"] - s["mean"] == pytest.approx(half, rel=1e-5)
    assert s["lo"] == pytest.approx(0.15 - half, rel=1e-5) and (s["above"], s["below"], s["n"]) == (3, 0, 4)


def fake_result(acc):
    """A saved compute result with one run per seed for each method of `acc` ({method: [Acc@t1 per seed]}),
    every other metric 0 and the warm start at Acc@t1 0.1."""
    def run(a):
        m = {"acc_t1": a, "acc_t2": a, "delta": 0.0, "delta_i2c": 0.0, "delta_c2i": 0.0}
        return {"before": {**m, "acc_t1": 0.1}, "after": m, "sampled_corr_before": 0.0, "sampled_corr_after": 0.0,
                "optimizer_steps": 1, "rollout_tokens": 10, "l1_tokens": 10}
    import ablations
    seeds = list(range(len(next(iter(acc.values())))))
    return {"methods": {m: {"label": ablations.METHODS[m][0], "flags": {}, "runs": [run(a) for a in accs]}
                        for m, accs in acc.items()},
            "task": "digits", "seeds": seeds, "steps": 5, "curve_every": 0, "threads": 1, "seconds": 60.0,
            "load": [0.0, 0.0], "command": "python examples/ablations.py compute"}


def test_the_table_pairs_each_method_with_its_baseline_seed_by_seed(tmp_path):
    import ablations
    result = fake_result({"grpo": [0.5, 0.6, 0.7], "mgrpo": [0.6, 0.6, 0.9]})   # differences 0.1, 0, 0.2
    with open(tmp_path / "compute.json", "w") as f:
        json.dump(result, f)
    ablations.main(["report", "--out", str(tmp_path)])             # the tables again from the saved result
    md = (tmp_path / "compute.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| MGRPO N=trained − GRPO |"))
    half = ablations.t_quantile(0.975, 2) * 0.1 / math.sqrt(3)   # the differences' sample std is 0.1
    assert row.split(" | ")[1] == f"+0.100 [{0.1 - half:+.3f}, {0.1 + half:+.3f}] 2↑ 0↓"
    assert "| MGRPO N=trained − warm start |" in md and "| GRPO − warm start |" in md and "3 seeds (0-2)" in md


def test_an_out_folder_inside_the_checkout_is_recorded_relative_to_it():
    import ablations
    inside = ablations.command_line(["compute", "--out", os.path.join(HERE, "examples", "results")])
    assert inside == "python examples/ablations.py compute --out examples/results"
    assert ablations.command_line(["compute", "--out", "/elsewhere/x"]).endswith("--out /elsewhere/x")


def test_the_examples_pin_the_cpu_kernels_before_torch_loads_and_record_what_they_ran_with():
    import numerics
    assert numerics.numerics(1)["pinned"] is None and numerics.numerics(1)["threads"] == 1   # torch came first here
    code = ("import sys; sys.path.insert(0, 'examples'); import numerics, torch; n = numerics.numerics(1); "
            "print(n['cpu_capability'], n['pinned'] is not None)")
    out = subprocess.run([sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True, check=True).stdout
    if numerics.X86 and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        assert out.split() == ["AVX2", "True"]
    else:                                         # another architecture, or no AVX2: nothing is pinned
        assert out.split()[1] == "False"


def test_jobs_run_seeds_in_processes_of_their_own_and_give_the_same_numbers(tmp_path):
    import ablations
    common = ["compute", "--methods", "grpo", "mgrpo", "--seeds", "0", "1", "--steps", "1", "--n-eval", "8",
              "--warm-target", "0.1", "--curve-every", "0"]
    env = os.environ.get("MGRPO_NATIVE_KERNELS")
    one, two = (ablations.main([*common, "--jobs", jobs, "--out", str(tmp_path / jobs)]) for jobs in ("1", "2"))
    assert run_numbers(one) == run_numbers(two) and one["methods"]["mgrpo"]["runs"][1]["l2_tokens"] > 0
    assert os.environ.get("MGRPO_NATIVE_KERNELS") == env   # the pool's kernel choice stays with the pool: later
                                                           # processes this one starts still pin theirs


def run_numbers(result):
    """Every number of every run of a saved result, without the wall times (JSON's lists for tuples)."""
    return json.loads(json.dumps({m: [{k: v for k, v in r.items() if k != "seconds"} for r in e["runs"]]
                                  for m, e in result["methods"].items()}))


QUICK = sorted(glob.glob(os.path.join(HERE, "examples", "results", "quick", "compute*.json")))


def why_not_bit_for_bit(numerics):
    """None where this machine can rerun a result made with `numerics` bit for bit, else the one-line reason:
    the examples pin the AVX2 kernels of torch 2.x on x86-64 (examples/numerics.py), which other CPUs and
    other torch versions do not run."""
    import platform
    here = torch.backends.cpu.get_cpu_capability()
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"this is a {platform.machine()} machine; the committed results ran x86-64's AVX2 kernels"
    if here not in ("AVX2", "AVX512"):
        return f"this CPU runs torch's {here} kernels, not AVX2 ones as the committed results did"
    if os.environ.get("MGRPO_NATIVE_KERNELS") == "1":
        return "MGRPO_NATIVE_KERNELS=1 is set: the reruns would not pin the kernels the committed results ran"
    import transformers
    if transformers.__version__ != numerics["transformers"]:
        return (f"transformers {transformers.__version__} here; the committed results were made with transformers "
                f"{numerics['transformers']}, which may build the toy model or run it otherwise")
    if torch.__version__ != numerics["torch"]:
        return f"torch {torch.__version__} here; the committed results were made with torch {numerics['torch']}"
    return None


@SLOW
def test_every_committed_quick_result_reruns_from_its_command_to_the_same_numbers(tmp_path):
    # examples/results/quick/ holds the short configuration of each committed table (one seed, a few steps).
    # Rerun as recorded, in processes of their own (so the kernels are pinned before torch loads) and side by
    # side, each must give every number again: a change of code path cannot leave the tables stale unnoticed.
    assert [os.path.basename(p) for p in QUICK] == ["compute-addition.json", "compute-answer_first.json",
                                                   "compute.json"]
    committed = [json.load(open(p, encoding="utf-8")) for p in QUICK]
    reason = why_not_bit_for_bit(committed[0]["numerics"])
    if reason:
        pytest.skip(reason)
    procs = []
    for i, c in enumerate(committed):
        argv = c["command"].split()[2:]
        argv[argv.index("--out") + 1] = str(tmp_path / str(i))
        procs.append(subprocess.Popen([sys.executable, os.path.join(HERE, "examples", "ablations.py"), *argv],
                                      cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for p, c, i in zip(procs, committed, range(len(procs))):
        err = p.communicate()[1]
        assert p.returncode == 0, err[-2000:]
        rerun = json.load(open(glob.glob(str(tmp_path / str(i) / "compute*.json"))[0], encoding="utf-8"))
        assert rerun["numerics"]["pinned"] and rerun["numerics"]["cpu_capability"] == "AVX2"
        assert rerun["threads"] == c["threads"] == 1 and run_numbers(rerun) == run_numbers(c), c["command"]


def test_the_warm_start_is_the_same_on_every_kernel_path(tmp_path):
    # What runs everywhere, pinned or not: the digits task's warm start, before RL, gave the same model on
    # torch's AVX-512, AVX2 and plain C++ kernels (docs/toy.md), so seed 0's numbers before RL equal the
    # committed quick result's on any CPU. (RL after it amplifies last-bit differences; the rerun above checks
    # that where the kernels can be pinned.)
    first, numerics = committed_warm_start()
    threads = torch.get_num_threads()
    torch.set_num_threads(numerics["threads"])
    try:
        r = toy.run_toy(0, 0, str(tmp_path), curve_every=0, log=None)
    finally:
        torch.set_num_threads(threads)
    if another_toy_model(r):
        pytest.skip(another_toy_model(r))
    assert warm_start(r) == warm_start(first)


def test_answer_first_work_puts_the_box_first_and_the_sums_digits_ones_first_last():
    assert toy.answer_first_work(347, 258) == "\\boxed{605}. Check: 7+8=15, 4+5+1=10, 3+2+1=6, ones first 506."
    assert toy.answer_first_work(947, 858) == "\\boxed{1805}. Check: 7+8=15, 4+5+1=10, 9+8+1=18, ones first 5081."
    assert toy.answer_first_work(12, 34, boxed=99) == "\\boxed{99}. Check: 2+4=6, 1+3=4, ones first 64."
    from verify import reward
    assert reward(toy.answer_first_work(347, 258, boxed=615), "615") == 1.0      # the reward reads the box only
    rng = random.Random(0)
    for number in ("605", "1805", "10"):
        off = [toy.one_digit_off(number, rng) for _ in range(200)]
        assert all(len(o) == len(number) and o[0] != "0" and sum(a != b for a, b in zip(o, number)) == 1 for o in off)
    train, held_out = toy.split(0, task="answer_first")
    assert [p["key"] for p in held_out] == [p["key"] for p in toy.split(0, task="addition")[1]]   # the same sums
    assert all(p["work"] == toy.answer_first_work(*p["key"]) for p in train + held_out)


def test_the_answer_first_warm_start_never_boxes_a_wrong_answer_nor_shows_a_correction(tmp_path, monkeypatch):
    # Its first phase gives half its first turns a box one digit off as part of the prompt, followed by the
    # right check, so that the check comes from the question and not from the box. No target ever boxes
    # anything but the sum, and every second turn shows the right first answer and repeats it: whatever the
    # model learns about correcting a wrong box, it learns in RL.
    import re
    run, args, train = untrained_task_run(tmp_path, "answer_first")
    packed, pack = [], mgrpo.pack
    monkeypatch.setattr(mgrpo, "pack", lambda p, t, *a: packed.append((p, t)) or pack(p, t, *a))
    monkeypatch.setattr(toy, "greedy_check_accuracy", lambda *a: 0.0)     # both phases run their 2 steps
    monkeypatch.setattr(toy, "greedy_repeat_rate", lambda *a: 0.0)
    assert toy.warm_start(run, train, args, target=0.5, max_steps=2, batch=8, task="answer_first") == 4
    decode = run.tk.tok.decode
    kinds = []
    for prompts, targets in packed:
        for p, t in zip(prompts, targets):
            prompt, target = decode(p), decode(t[:-1])
            a, b = map(int, re.search(r"What is (\d+) \+ (\d+)\?", prompt).groups())
            work = toy.answer_first_work(a, b)
            assert re.findall(r"boxed\{(\d+)", target) in ([], [str(a + b)])
            if any(g in prompt for g in mgrpo.GUIDES):                    # a second turn
                assert re.findall(r"boxed\{(\d+)", prompt) == [str(a + b)] and work in prompt and target == work
                kinds.append("second turn")
            elif target == work:
                kinds.append("first turn")
            else:                                                         # a misleading box, then the check
                box = re.search(r"boxed\{(\d+)$", prompt).group(1)
                assert box != str(a + b) and target.startswith("}.") and toy.answer_first_work(a, b, box).endswith(target)
                kinds.append("misleading box")
    assert kinds.count("second turn") == 8 and kinds.count("misleading box") == 8 and kinds.count("first turn") == 16
