"""
The answer checker: the reward of MGRPO is reward(completion, gold) ∈ {0.0, 1.0}.

    extract_answer(text) -> str | None   the final answer a completion commits to
    is_equiv(pred, gold) -> bool         are two final answers mathematically the same
    reward(completion, gold) -> float    1.0 iff the extracted answer equals gold; never raises

Model text is hostile input. Nothing here passes it to eval/exec/sympify/parse_expr: a small
recursive-descent parser over a whitelist of tokens builds sympy objects directly, and every
costly thing (length, nesting, token count, exponent and factorial sizes) is bounded *before* it
is computed, so every call finishes quickly in any thread (no signals, no subprocesses).

Policies (what counts as equal):
  - Extraction, in order: last \\boxed{}/\\fbox{} (nested braces; also braceless \\boxed 7), last
    '#### x' line, last 'The (final) answer is x' / 'Answer: x', a completion that is itself a short
    answer. There is deliberately no 'last number in the text' fallback: it rewards truncated work.
  - Hedges get nothing: several different boxed values, 'either 3 or 5', '3 or 5', '\\pm 2' for a
    single-valued gold, several letters for a multiple-choice gold.
  - Numbers compare exactly. A decimal is the exact rational it spells: 0.5 = 1/2, but 0.333 != 1/3
    and 1.414 != sqrt(2); there is no tolerance.
  - Percent: '50\\%' may be read as 50 (a unit) or 0.5 (×1/100); a bare number is never rescaled, so
    gold 50 rejects 0.5 and gold 0.5 rejects 50.
  - Units, degrees, dollar signs and '\\text{...}' after a number are dropped; '1,000' and
    '1{,}000' are one thousand (a comma followed by exactly three digits in a bare number).
  - 'x = 3' equals '3' (and 'y = 2x+1' equals '2x+1') when the left side is a single variable;
    two equations are equal when one is a nonzero multiple of the other.
  - Sets ('\\{1,2\\}', '1, 2') are unordered; tuples and intervals are ordered and their brackets
    must match; unions of intervals are unordered; matrices must have the same shape.
  - 'i' is the imaginary unit, 'e' is Euler's number.
  - A braceless exponent takes the whole number after '^': '10^12' is 10^{12}, as a reader means it
    (LaTeX would typeset 10^1 2).
  - '52_8' (a numeral in base 8) equals '52_8' and '52' (the base left implicit), never '42'.
  - 'x \\in [-2, 7]' equals '[-2, 7]', like an equation with a single variable on the left.
  - Expressions: equal if their difference expands to 0, or if they agree to 30 digits at several
    random points (simplify misses identities and can be slow; probing at random points does not).
  - Text answers ('\\text{Monday}') compare case-insensitively; multiple-choice letters
    ('(B)', '\\text{B}', '\\textbf{(B)}') compare as the letter.
"""

import math
import random
import re
from fractions import Fraction

import sympy as sp

MAX_TEXT = 200_000      # completions longer than this get 0 without being read
MAX_ANSWER = 1_000      # characters of one final answer
MAX_TOKENS = 400        # tokens of one final answer
MAX_DEPTH = 40          # nesting depth of the parser
MAX_DIGITS = 5_000      # digits of any number built while parsing
MAX_EXPONENT = 1_000    # |integer exponent| on a symbolic base
MAX_FACTORIAL = 500
MAX_ITEMS = 30          # elements of a set, tuple or matrix


class Refuse(Exception):
    """The answer is malformed or too costly to evaluate: it earns no reward."""


# -----------------------------------------------------------------------------
# Extraction


def _closing_braces(text):
    """{index of '{': index of its matching '}'} in one linear pass (unmatched ones are absent)."""
    stack, match = [], {}
    for j, c in enumerate(text):
        if c == "{":
            stack.append(j)
        elif c == "}" and stack:
            match[stack.pop()] = j
    return match


def boxed_all(text):
    """Contents of every \\boxed{...} / \\fbox{...} (and braceless '\\boxed 7'), in order."""
    out, match = [], None
    for m in re.finditer(r"\\(?:boxed|fbox)\b", text):
        j = m.end()
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            match = match if match is not None else _closing_braces(text)
            if j in match:
                out.append(text[j + 1:match[j]])
        elif j > m.end():                       # '\boxed 7': up to the next space or '$'
            tok = re.match(r"[^\s$]+", text[j:j + MAX_ANSWER])
            if tok:
                out.append(tok.group(0))
    return out


def last_boxed(text):
    found = boxed_all(text)
    return found[-1] if found else None


_ANSWER_IS = re.compile(r"(?:the\s+)?(?:final\s+)?answer\s*(?:is\s*:?|:)\s*(.+)", re.IGNORECASE)
_HEDGE = re.compile(r"\\text\{\s*or\s*\}|\bor\b|\beither\b", re.IGNORECASE)


def _clean_tail(ans):
    """'$42$.' -> '42': sentence punctuation and math delimiters around a stated answer."""
    return re.sub(r"[.\s]+$", "", ans.strip()).strip().strip("$").strip()


def extract_answer(text):
    """The final answer a completion commits to, or None (nothing committed to, or a hedge)."""
    if not isinstance(text, str) or len(text) > MAX_TEXT or "\x00" in text:
        return None
    boxed = boxed_all(text)
    if boxed:
        ans = boxed[-1].strip()
        others = {re.sub(r"\s+", "", b) for b in boxed[:-1]} - {re.sub(r"\s+", "", ans)}
        # Several boxed values that differ in value are a hedge; '15\frac{39}{40}' then '\frac{639}{40}' is not.
        if len(others) > 4 or not all(is_equiv(o, ans) for o in others):
            return None
    else:
        hashes = re.findall(r"^\s*####\s*(.+?)\s*$", text, re.MULTILINE)
        said = list(_ANSWER_IS.finditer(text))
        if hashes:
            ans = hashes[-1]
        elif said:
            ans = _clean_tail(said[-1].group(1).split("\n")[0])
        elif len(text.strip()) <= 40 and "\n" not in text.strip() and not re.search(r"\\(boxed|fbox)", text):
            ans = _clean_tail(text)
        else:
            ans = None
    if ans is None or not ans or _HEDGE.search(ans):
        return None
    return ans


# -----------------------------------------------------------------------------
# Normalisation of answer strings (plain string rewriting; nothing is evaluated)

_UNICODE = {"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": r"\times ", "\u00f7": r"\div ",
            "\u03c0": r"\pi ", "\u221e": r"\infty ", "\u221a": r"\sqrt", "\u00b7": r"\cdot ", "\u2264": r"\le ",
            "\u2265": r"\ge ", "\u222a": r"\cup ", "\u00b0": ""}
_SIZING = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|displaystyle|quad|qquad)(?![a-zA-Z])")
_UNITS = (r"(?:dollars?|cents?|units?|degrees?|percent|cm|mm|km|m|meters?|inches|inch|feet|foot|ft|miles?|"
          r"hours?|minutes?|seconds?|days?|years?|kg|g|grams?|pounds?|lbs?|square|sq|cubic|mph)")


def normalize(s):
    """Surface normalisation: spacing commands, unicode, units, degrees, dollars, thousands commas.
    Returns (string, had_percent)."""
    s = _unwrap(s.strip())
    for k, v in _UNICODE.items():
        s = s.replace(k, v)
    s = re.sub(r"(\d)\\[,!]\s*(?=\d{3}\b)", r"\1", s)                # 1\,000
    s = re.sub(r"(\d)\{,\}(?=\d{3})", r"\1", s)                       # 1{,}000
    s = _SIZING.sub("", s)
    s = re.sub(r"(?<!\\)\\[,;:! ]|~", " ", s)                     # thin spaces, not the row break '\\ '
    s = re.sub(r"\\[dtc]frac", r"\\frac", s)
    s = re.sub(r"\\(?:mathrm|mathbf|textbf|textit|mathit|boldsymbol|mbox|operatorname|textrm)\s*\{", r"\\text{", s)
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree", "", s)
    percent = bool(re.search(r"%|\\text\{\s*percent\s*\}", s))
    s = re.sub(r"\\?%|\\text\{\s*percent\s*\}", "", s)
    s = re.sub(r"\\text\{\s*(-?[\d.,/]+)\s*([a-zA-Z ]*)\}", r"\1 \2", s)  # \text{5 cm}
    # units after a number: '5 \text{ cm}', '12 dollars', '3\text{ units}^2'
    s = re.sub(r"(?<=[\d}])\s*\\text\{\s*[a-zA-Z][a-zA-Z\s.]*\}(\^\{?\d\}?)?\s*$", "", s)
    s = re.sub(r"(?<=[\d}])\s*(?:\b" + _UNITS + r"\b\s*)+(\^\{?\d\}?)?\.?\s*$", "", s)
    if re.fullmatch(r"\s*-?\d{1,3}(,\d{3})+(\.\d+)?\s*", s):            # 1,000 (a bare number only)
        s = s.replace(",", "")
    s = s.replace("\\{", "\\lbrace ").replace("\\}", "\\rbrace ")
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)          # \frac12
    s = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\s*(\{[^{}]*\})\s*(\d)", r"\\frac\1{\2}", s)
    s = re.sub(r"\\sqrt\s*(\d)", r"\\sqrt{\1}", s)                     # \sqrt2
    return _unwrap(s.strip().rstrip(".").strip()), percent


def _unwrap(s):
    while s.startswith("{") and _closing_braces(s).get(0) == len(s) - 1:   # {x} is just x
        s = s[1:-1].strip()
    return s


# -----------------------------------------------------------------------------
# Tokens and the parser

_TOKEN = re.compile(r"""
    (?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+(?![a-zA-Z]))?|\.\d+)
  | (?P<cmd>\\[a-zA-Z]+|\\\\)
  | (?P<letter>[a-zA-Z])
  | (?P<sym>[-+*/^_()\[\]{},=<>!|&;])
  | (?P<space>\s+)
""", re.VERBOSE)

_FUNCS = {"sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "sec": sp.sec, "csc": sp.csc, "cot": sp.cot,
          "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan, "sinh": sp.sinh, "cosh": sp.cosh,
          "tanh": sp.tanh, "ln": sp.log, "log": sp.log, "exp": sp.exp}
_RELATIONS = {"=": "=", "\\in": "=", "<": "<", ">": ">", "\\le": "<=", "\\leq": "<=", "\\ge": ">=", "\\geq": ">=",
              "\\ne": "!=", "\\neq": "!="}
_NOT_ATOMS = {"\\cup", "\\times", "\\cdot", "\\div", "\\pm", "\\mp", "\\\\", "\\end", "\\rbrace", *_RELATIONS}


def tokenize(s):
    if len(s) > MAX_ANSWER:
        raise Refuse("answer too long")
    out, i = [], 0
    while i < len(s):
        m = _TOKEN.match(s, i)
        if not m:
            raise Refuse(f"character {s[i]!r} is not allowed")
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group(0)))
        i = m.end()
        if len(out) > MAX_TOKENS:
            raise Refuse("too many tokens")
    return out


class _Parser:
    """Recursive descent over tokens. A value is a sympy expression or a tagged tuple:
    ('eq', lhs, rhs), ('rel', op, lhs, rhs), ('seq', open, items, close) for tuples and intervals,
    ('set', items), ('list', items) for bare 'a, b', ('union', items), ('matrix', rows),
    ('pm', a, b) for a ± b, ('text', words)."""

    def __init__(self, tokens):
        self.t, self.i, self.depth, self.in_abs = tokens, 0, 0, False
        self.mixed = False      # an integer literal directly followed by \frac: a mixed number

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def at(self, *values):
        return self.peek()[1] in values

    def take(self, value=None):
        kind, v = self.peek()
        if kind is None or (value is not None and v != value):
            raise Refuse(f"expected {value!r}, got {v!r}")
        self.i += 1
        return v

    def nested(self, parse_fn, *a):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Refuse("nested too deeply")
        v = parse_fn(*a)
        self.depth -= 1
        return v

    def parse(self):
        v = self.items()
        if self.i != len(self.t):
            raise Refuse(f"unexpected {self.peek()[1]!r}")
        return v

    def items(self):
        xs = [self.relation()]
        while self.at(",", ";"):
            self.take()
            xs.append(self.relation())
            if len(xs) > MAX_ITEMS:
                raise Refuse("too many items")
        return xs[0] if len(xs) == 1 else ("list", xs)

    def relation(self):
        lhs = self.union()
        if self.peek()[1] not in _RELATIONS:
            return lhs
        op = _RELATIONS[self.take()]
        rhs = self.union()
        return ("eq", lhs, rhs) if op == "=" else ("rel", op, lhs, rhs)

    def union(self):
        xs = [self.expr()]
        while self.at("\\cup"):
            self.take()
            xs.append(self.expr())
        return xs[0] if len(xs) == 1 else ("union", xs)

    def expr(self):
        """Signed terms; at most one of them may carry ± (a ± b -> ('pm', a, b))."""
        terms = []
        sign = self.take() if self.at("-", "+", "\\pm", "\\mp") else "+"
        while True:
            terms.append((sign, self.nested(self.term)))
            if not self.at("-", "+", "\\pm", "\\mp"):
                break
            sign = self.take()
        if len(terms) == 1 and sign == "+":
            return terms[0][1]                      # may be a compound value: '(1, 2)'
        _need_expr(*(t for _, t in terms))
        pm = [t for s, t in terms if s in ("\\pm", "\\mp")]
        base = sum((t if s == "+" else -t for s, t in terms if s in "+-"), sp.Integer(0))
        if len(pm) > 1:
            raise Refuse("more than one ±")
        return ("pm", base, pm[0]) if pm else base

    def term(self):
        value = self.power()
        while True:
            v = self.peek()[1]
            if v in ("*", "\\times", "\\cdot", "/", "\\div"):
                self.take()
                rhs = self.power()
                _need_expr(value, rhs)
                if v in ("/", "\\div"):
                    if rhs == 0:
                        raise Refuse("division by zero")
                    value = value / rhs
                else:
                    value = value * rhs
            elif self.starts_atom():                # implicit product: 2x, 3\sqrt{2}, x(x+1)
                mixed = self.mixed
                rhs = self.power()
                _need_expr(value, rhs)
                value = _mixed_number(value, rhs) if mixed and rhs.is_Rational else value * rhs
            else:
                return value

    def starts_atom(self):
        kind, v = self.peek()
        if kind in ("num", "letter") or v in ("(", "[", "{"):
            return True
        if v == "|":
            return not self.in_abs
        return kind == "cmd" and v not in _NOT_ATOMS

    def power(self):
        number_then_frac = self.peek()[0] == "num"
        base = self.postfix(self.atom())
        self.mixed = number_then_frac and self.at("\\frac")   # 2\frac{1}{3} is 2 + 1/3
        if self.at("^"):
            self.take()
            if self.at("{"):
                exp = self.nested(self.group, "{", "}")
            else:
                neg = self.at("-") and self.take()
                exp = self.postfix(self.atom())
                exp = -exp if neg else exp
            base = _pow(base, exp)
            self.mixed = False
        return base

    def postfix(self, value):
        while self.at("!"):
            self.take()
            value = _factorial(value)
        return value

    def group(self, open_, close):
        self.take(open_)
        v = self.items()
        self.take(close)
        return v

    def arg(self):
        """A macro argument: {group} or one atom."""
        return self.nested(self.group, "{", "}") if self.at("{") else self.atom()

    def atom(self):
        kind, v = self.peek()
        if kind == "num":
            self.take()
            if self.at("_"):                                        # 52_8: the numeral 52 in base 8
                self.take()
                base = self.arg()
                if not (v.isdigit() and base.is_Integer and 2 <= base <= 36):
                    raise Refuse("bad base")
                return ("based", v.lstrip("0") or "0", int(base))
            return _number(v)
        if kind == "letter":
            self.take()
            if self.at("_"):
                self.take()
                return sp.Symbol(f"{v}_{self.arg()}")
            return {"i": sp.I, "e": sp.E}.get(v) or sp.Symbol(v)
        if v in ("(", "["):
            self.take()
            inner = self.nested(self.items)
            close = self.take()
            if close not in (")", "]"):
                raise Refuse("unbalanced brackets")
            if isinstance(inner, tuple) and inner[0] == "list":
                return ("seq", v, inner[1], close)
            if (v, close) not in (("(", ")"), ("[", "]")):
                raise Refuse("an interval needs two ends")
            return inner
        if v == "{":
            inner = self.nested(self.group, "{", "}")
            return ("set", inner[1]) if isinstance(inner, tuple) and inner[0] == "list" else inner
        if v == "\\lbrace":
            inner = self.nested(self.group, "\\lbrace", "\\rbrace")
            return ("set", inner[1] if isinstance(inner, tuple) and inner[0] == "list" else [inner])
        if v == "|":
            self.take()
            outer, self.in_abs = self.in_abs, True
            inner = self.nested(self.expr)
            self.in_abs = outer
            self.take("|")
            _need_expr(inner)
            return sp.Abs(inner)
        if kind == "cmd":
            self.take()
            return self.command(v[1:])
        raise Refuse(f"unexpected {v!r}")

    def command(self, name):
        if name == "frac":
            num, den = self.arg(), self.arg()
            _need_expr(num, den)
            if den == 0:
                raise Refuse("division by zero")
            return num / den
        if name == "sqrt":
            n = self.nested(self.group, "[", "]") if self.at("[") else sp.Integer(2)
            x = self.arg()
            _need_expr(x, n)
            return sp.sqrt(x) if n == 2 else _pow(x, 1 / n)
        if name == "pi":
            return sp.pi
        if name == "infty":
            return sp.oo
        if name in ("emptyset", "varnothing"):
            return ("set", [])
        if name == "text":
            return ("text", "".join(self.raw_group()).lower())
        if name in _FUNCS:
            power = self.power_arg()
            x = self.nested(self.group, "(", ")") if self.at("(") else self.arg()
            _need_expr(x)
            value = _FUNCS[name](x)
            return _pow(value, power) if power is not None else value
        if name == "begin":
            return self.matrix()
        raise Refuse(f"command \\{name} is not supported")

    def power_arg(self):
        if not self.at("^"):
            return None
        self.take()
        return self.arg()

    def raw_group(self):
        """The tokens of a {...} group as text (for \\text and environment names)."""
        self.take("{")
        words = []
        while not self.at("}"):
            if self.peek()[0] is None or len(words) > 50:
                raise Refuse("unbalanced group")
            words.append(self.take())
        self.take("}")
        return words

    def matrix(self):
        env = "".join(self.raw_group())
        if env not in ("pmatrix", "bmatrix", "matrix", "vmatrix", "Bmatrix", "smallmatrix"):
            raise Refuse(f"environment {env}")
        rows, row = [], [self.nested(self.expr)]
        while not self.at("\\end"):
            sep = self.take()
            if sep == "\\\\" and self.at("\\end"):  # trailing row break
                break
            if sep not in ("&", "\\\\"):
                raise Refuse("bad matrix")
            if sep == "\\\\":
                rows.append(row)
                row = []
            row.append(self.nested(self.expr))
            if sum(map(len, rows)) + len(row) > MAX_ITEMS:
                raise Refuse("matrix too large")
        self.take("\\end")
        if "".join(self.raw_group()) != env:
            raise Refuse("mismatched environment")
        rows.append(row)
        _need_expr(*(x for r in rows for x in r))
        if any(len(r) != len(rows[0]) for r in rows):
            raise Refuse("ragged matrix")
        return ("matrix", rows)


def _need_expr(*xs):
    for x in xs:
        if isinstance(x, tuple):
            raise Refuse("arithmetic on a compound answer")


def _mixed_number(whole, frac):
    return whole + frac if whole >= 0 else whole - frac


def _number(text):
    if len(text) > 100:
        raise Refuse("number too long")
    m = re.search(r"[eE]([+-]?\d+)$", text)
    if m and abs(int(m.group(1))) > 300:
        raise Refuse("exponent too large")
    f = Fraction(text)                 # exact ('0.1' is 1/10); Fraction reads digits, it evaluates nothing
    return sp.Rational(f.numerator, f.denominator)


def _pow(base, exp):
    """base^exp, refused when the result would be huge (checked before sympy computes it)."""
    _need_expr(base, exp)
    if exp.has(sp.oo, -sp.oo, sp.zoo):
        raise Refuse("infinite exponent")
    if exp.is_Integer and abs(int(exp)) > MAX_EXPONENT and not base.is_number:
        raise Refuse("exponent too large")
    if base.is_number and exp.is_number:
        b, e = abs(complex(sp.N(base, 15))), abs(complex(sp.N(exp, 15)))
        if b == 0 and exp.is_number and not exp.is_positive:
            raise Refuse("0 to a non-positive power")
        if b not in (0.0, 1.0) and e * abs(math.log10(b)) > MAX_DIGITS:
            raise Refuse("power too large")
    return sp.Pow(base, exp)


def _factorial(n):
    _need_expr(n)
    if n.is_number and not (n.is_Integer and 0 <= n <= MAX_FACTORIAL):
        raise Refuse("factorial out of range")
    return sp.factorial(n)


def parse(s):
    """Answer string -> (value, had_percent); value as in _Parser, or ('choice', letter). Raises Refuse."""
    s, percent = normalize(s)
    if not s:
        raise Refuse("empty")
    letter = re.fullmatch(r"\(?\s*(?:\\text\{\s*\(?\s*([A-E])\s*\)?\s*\}|([A-E]))\s*\)?", s)
    if letter:
        return ("choice", letter.group(1) or letter.group(2)), False
    word = re.fullmatch(r"\\text\{([A-Za-z][A-Za-z ,'-]*)\}|([A-Za-z][A-Za-z ]*[A-Za-z])", s)
    if word:                                                       # 'Monday', '\text{no solution}'
        return ("text", "".join((word.group(1) or word.group(2)).lower().split())), False
    return _Parser(tokenize(s)).parse(), percent


# -----------------------------------------------------------------------------
# Equivalence


def _numbers_equal(a, b, rng):
    if a == b:
        return True
    if a.is_Rational and b.is_Rational:
        return False                       # both exact numbers, already compared exactly
    if any(x.has(sp.oo, -sp.oo, sp.zoo, sp.nan) for x in (a, b)):
        return False
    if _cheap(a) and _cheap(b) and sp.expand(a - b) == 0:
        return True
    syms = sorted(a.free_symbols | b.free_symbols, key=lambda x: x.name)
    for _ in range(4 if syms else 1):      # probe at random points: simplify misses identities
        env = {x: sp.Rational(rng.randint(300, 2100), 1000) for x in syms}
        try:
            va, vb = complex(sp.N(a.subs(env), 40)), complex(sp.N(b.subs(env), 40))
            diff = abs(complex(sp.N((a - b).subs(env), 40)))
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            return False
        if not (_finite(va) and _finite(vb)) or diff > 1e-25 * max(1.0, abs(va), abs(vb)):
            return False
    return True


def _finite(z):
    return z == z and abs(z) != float("inf")


def _cheap(x):
    """Small enough to expand symbolically in well under a millisecond or so."""
    return sp.count_ops(x) < 60 and all(not (p.exp.is_Integer and abs(int(p.exp)) > 8) for p in x.atoms(sp.Pow))


def _as_set(v):
    """Views of a value as an unordered collection: sets, bare lists and a ± b."""
    if v[0] == "pm":
        return ("set", [v[1] + v[2], v[1] - v[2]])
    if v[0] == "list":
        return ("set", v[1])
    return v


def _equal(a, b, rng):
    if not isinstance(a, tuple) and not isinstance(b, tuple):
        return _numbers_equal(a, b, rng)
    ka = a[0] if isinstance(a, tuple) else "expr"
    kb = b[0] if isinstance(b, tuple) else "expr"
    if ka == "eq" and kb == "eq":
        if isinstance(a[1], sp.Symbol) and a[1] == b[1]:
            return _equal(a[2], b[2], rng)
        return _equations_equal(a, b, rng)
    if ka == "eq" and isinstance(a[1], sp.Symbol):                # 'x = 3' vs '3'
        return _equal(a[2], b, rng)
    if kb == "eq" and isinstance(b[1], sp.Symbol):
        return _equal(a, b[2], rng)
    if {ka, kb} == {"based", "expr"}:                              # '52' for '52_8': the base left implicit
        based, plain = (a, b) if ka == "based" else (b, a)
        return plain.is_Integer and str(plain) == based[1]
    a = _as_set(a) if ka in ("pm", "list") else a
    b = _as_set(b) if kb in ("pm", "list") else b
    ka = a[0] if isinstance(a, tuple) else "expr"
    kb = b[0] if isinstance(b, tuple) else "expr"
    if ka != kb:
        return False
    if ka in ("set", "union"):
        return _unordered_equal(a[1], b[1], rng)
    if ka == "seq":
        return (a[1], a[3], len(a[2])) == (b[1], b[3], len(b[2])) and all(
            _equal(x, y, rng) for x, y in zip(a[2], b[2]))
    if ka == "matrix":
        return [len(r) for r in a[1]] == [len(r) for r in b[1]] and all(
            _equal(x, y, rng) for r, s in zip(a[1], b[1]) for x, y in zip(r, s))
    if ka in ("text", "choice"):
        return a[1] == b[1]
    if ka == "based":
        return a[1:] == b[1:]
    if ka == "rel":
        return a[1] == b[1] and _equal(a[2], b[2], rng) and _equal(a[3], b[3], rng)
    return False


def _unordered_equal(xs, ys, rng):
    if len(xs) != len(ys):
        return False
    left = list(ys)
    for x in xs:
        j = next((j for j, y in enumerate(left) if _equal(x, y, rng)), None)
        if j is None:
            return False
        del left[j]
    return True


def _equations_equal(a, b, rng):
    """Two equations are the same if (l1 - r1) is a nonzero constant multiple of (l2 - r2)."""
    _need_expr(a[1], a[2], b[1], b[2])
    f, g = a[1] - a[2], b[1] - b[2]
    syms = sorted(f.free_symbols | g.free_symbols, key=lambda x: x.name)
    if f.free_symbols != g.free_symbols or not syms:
        return False
    ratios = []
    for _ in range(4):
        env = {x: sp.Rational(rng.randint(300, 2100), 1000) for x in syms}
        gv = complex(sp.N(g.subs(env), 30))
        if abs(gv) < 1e-20:
            return False
        ratios.append(complex(sp.N(f.subs(env), 30)) / gv)
    return abs(ratios[0]) > 1e-12 and all(abs(r - ratios[0]) < 1e-10 * abs(ratios[0]) for r in ratios)


def is_equiv(pred, gold):
    """Are two final answers mathematically the same (the module docstring lists the policies)."""
    if not isinstance(pred, str) or not isinstance(gold, str) or "\x00" in pred + gold:
        return False
    if len(pred) > MAX_ANSWER or len(gold) > MAX_ANSWER:
        return False
    if pred.strip() == gold.strip():
        return True
    try:
        a, pa = parse(pred)
        b, pb = parse(gold)
        rng = random.Random(0)                  # probing points are fixed: the same call, the same verdict
        if _equal(a, b, rng):
            return True
        # percent: '50\%' may stand for 50 (done above) or for 50/100; a bare number is never rescaled.
        if pa and not isinstance(a, tuple) and _equal(a / 100, b, rng):
            return True
        return bool(pb and not isinstance(b, tuple) and _equal(a, b / 100, rng))
    except (Refuse, RecursionError):
        return False
    except Exception:                 # sympy raises many kinds of errors on odd input; none is a match
        return False


def reward(completion, gold):
    """1.0 if the completion's final answer equals gold, else 0.0. Never raises."""
    try:
        ans = extract_answer(completion)
        return 1.0 if ans is not None and is_equiv(ans, str(gold)) else 0.0
    except Exception:
        return 0.0
