"""Placeholder checker (replaced by the full one)."""
import re

def last_boxed(text):
    i = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if i < 0:
        return None
    j = text.find("{", i)
    if j < 0:
        return None
    depth = 0
    for k in range(j, len(text)):
        depth += {"{": 1, "}": -1}.get(text[k], 0)
        if depth == 0:
            return text[j + 1:k]
    return None

def extract_answer(text):
    b = last_boxed(text)
    if b is not None:
        return b.strip()
    m = re.findall(r"####\s*(.+)", text)
    return m[-1].strip() if m else None

def is_equiv(pred, gold):
    return pred.replace(",", "").strip() == gold.replace(",", "").strip()

def reward(completion, gold):
    a = extract_answer(completion)
    return 1.0 if a is not None and is_equiv(a, gold) else 0.0
