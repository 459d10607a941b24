"""
The answer checker of MGRPO: reward(completion, gold, question=None) is 1.0 iff the final answer a completion
commits to equals the gold answer, else 0.0. The route, in the order this file runs it:

    reward(completion, gold, question=None)                                   (just below)
      extract_answer(completion, question) -> str | None
          the final answer: a box, an <answer> block, an answer statement ('The answer is ...', '####', 'A:'),
          a final sentence; cut where the reply runs on into a turn or a problem of its own. The question, where
          given, makes its own numbers context in a final sentence in prose, and does nothing else.
      is_equiv(answer, gold) -> bool
          normalize (surface forms: units, thousands, unicode, ...), parse (a whitelist recursive-descent parser
          that builds sympy objects), then compare (numbers exactly, expressions symbolically or at random
          points, sets, tuples, equations, inequalities as the sets they describe)

Model text is hostile input. Nothing here passes it to eval/exec/sympify/parse_expr, and every costly thing
(length, nesting, token count, sizes of exponents, factorials and binomials, the numbers of an inequality to be
solved, the number of numeric comparisons in one call) is bounded before it is computed, so every call finishes
quickly in any thread (no signals, no subprocesses). A false positive is a reward the policy learns to hack:
where a reading is ambiguous (two values, a cut-off reply, a hedge, an invented turn) the answer is None and
earns nothing.

What counts as an answer and what counts as equal (every rule with an example and a near miss, and where other
projects' checkers decide differently): docs/checker.md.
"""

import bisect
import functools
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
MAX_ITEMS = 30          # elements of a set, tuple or matrix; distinct boxed values


class Refuse(Exception):
    """The answer is malformed or too costly to evaluate: it earns no reward."""


class _Probes(random.Random):
    """The random points of one is_equiv call, with a budget: two long lists of expressions could
    otherwise ask for hundreds of numeric comparisons."""
    budget = 100


def reward(completion, gold, question=None):
    """1.0 if the completion's final answer equals gold, else 0.0. Never raises. The question, where given, lets a
    prose answer name the question's own numbers beside its value; without it such an answer earns nothing."""
    try:
        ans = extract_answer(completion, question)
        return 1.0 if ans is not None and is_equiv(ans, str(gold)) else 0.0
    except Exception:
        return 0.0


# -----------------------------------------------------------------------------
# Extraction


def extract_answer(text, question=None):
    """The final answer a completion commits to, or None (the rules: docs/checker.md). With the question, a number
    the question gives is context in a prose answer ('Jean can fill 14 bags with 2 lollipops in each bag' is 14 when
    the question gives the 2); without it such a sentence states no single value."""
    if not isinstance(text, str) or len(text) > MAX_TEXT or "\x00" in text:
        return None
    text = _before_invented_turn(text)
    if "<" in text and ("nswer" in text or "NSWER" in text):
        text = _answer_tags(text)
    if "<think>" in text or "</think>" in text:
        if "</think>" not in text:
            return None                                  # still thinking: no answer yet
        text = text.rsplit("</think>", 1)[1]
    text = re.sub(r"<<[^<>\n]*>>", "", text)              # GSM8K's calculator notes: 'is <<3*4=12>>12'
    text = _ITALIC.sub(r"\1", _EMPHASIS.sub("", text))
    question = question[:8 * MAX_ANSWER] if isinstance(question, str) else None
    if "```" in text:                   # code is not a statement; only a completion with no answer outside its
        # code blocks is read with them, as before. Words stand in for the code, so that boxes on both sides
        # of it still have text between them (two different ones are a hedge, not a list); a closed block reads as
        # a finished sentence after a conclusion, a block cut off does not.
        return _read(_CODE.sub(_code_stand_in, text), question) or _read(text, question)
    return _read(text, question)


def _read(text, question=None):
    """extract_answer after the text is prepared (thoughts, calculator notes, emphasis and code dropped)."""
    boxes, marks = _boxes(text), _marks(text)
    blocks = _answer_blocks(text) if "<answer>" in text else []
    if blocks is None or len(blocks) > 4 * MAX_ITEMS:
        return None
    if blocks:            # a block is read as a whole, like a box: what is inside it is not read again
        starts = [a for a, _, _ in blocks]

        def outside(i):
            k = bisect.bisect_right(starts, i) - 1
            return k < 0 or i >= blocks[k][1]
        boxes, marks = [b for b in boxes if outside(b[0])], [m for m in marks if outside(m.start())]
    lines = [m for m in _A_LINE.finditer(text) if len(m.group(1)) <= MAX_ANSWER and _starts_value(m.group(1))] \
        if "A:" in text else []
    cut = _run_on(text, [x[1] for x in (boxes[:1] + blocks[:1])] + [m.end() for m in (marks[:1] + lines[:1])], question)
    text, boxes, marks = text[:cut], [b for b in boxes if b[1] <= cut], [m for m in marks if m.end() <= cut]
    blocks, lines = [b for b in blocks if b[1] <= cut], [m for m in lines if m.end() <= cut]
    if len(boxes) > 4 * MAX_ITEMS or not boxes and len(marks) > 4 * MAX_ITEMS or len(lines) > 4 * MAX_ITEMS:
        return None
    if blocks:
        read = [(a, b, _block_answer(c, question)) for a, b, c in blocks]
        boxes = sorted(boxes + [(a, b, v if v is not None else c) for (a, b, v), (_, _, c) in zip(read, blocks)])
    if boxes:
        ans = _boxed_answer(text, boxes)
        if ans is not None and marks and not blocks and not _parses(ans):   # a box that holds no answer in the
            stated = _stated_answer(text, marks, question)      # reasoning ('\boxed{\langle H \rangle \ll \Delta E}')
            ans = stated if stated is not None and _parses(stated) else ans   # does not hide 'Answer: D'
    elif marks:
        ans = _stated_answer(text, marks, question)
    elif lines and lines[-1].end() == len(text.rstrip()):      # a last line 'A: 18'
        ans = _agreed([v for v in (_leading_value(m.group(1).strip().rstrip("."), question) for m in lines) if v])
    elif len(text.strip()) <= 40 and "\n" not in text.strip() and not re.search(r"\\(boxed|fbox)", text):
        ans = text.strip().rstrip(".").strip().strip("$").strip()
        ans = _concluding(text, question) or ans                         # 'In total, 5 + 7 = 12 apples.'
    else:
        ans = _concluding(text, question)
    return ans if ans else None


def _block_answer(content, question=None):
    """The answer an <answer> block holds: its box or answer line if it has one, else what it states."""
    boxes, marks = _boxes(content), _marks(content)
    if len(boxes) > 4 * MAX_ITEMS or len(marks) > 4 * MAX_ITEMS:
        return None
    if boxes:
        return _boxed_answer(content, boxes)
    return _stated_answer(content, marks, question) if marks else _container_value(content, question)


# A reply ends where the model starts a turn of its own invention: a chat template's turn or end-of-turn token
# (ChatML, Llama-3, Gemma, Phi, Mistral's [INST], DeepSeek's full-width bars, '</s>'), a role line ('User:',
# 'Human:', 'Assistant:', 'System:', 'Question:', 'Q:', '### Instruction:', also after a sentence on its line: '12.
# User: ...'), a line that is only 'system' / 'user' / 'assistant' where the template's tokens were decoded away,
# or an invented system prompt ('... is 12. You are an AI assistant ...'). Nothing after it is paid, not even a
# later box or <answer>. Three patterns, each searched only where a plain substring test says it may occur.
_TURN_TOKEN = re.compile(
    r"<(?:\|(?:im_start|im_end|endoftext|eot_id|start_header_id|end_header_id|begin_of_text|system|user|assistant|"
    r"end|User|Assistant|end_of_sentence)\||\uff5c(?:User|Assistant|end\u2581of\u2581sentence)\uff5c)>"
    r"|</s>|<eos>|<(?:start|end)_of_turn>|\[/?INST\]")
_TURN_ROLE = re.compile(r"\n[ \t#>*]*(?i:user|human|system|assistant|question|instruction|q)[ \t*]*:"
                        r"|\n[ \t]*(?i:system|user|assistant)[ \t]*\n"
                        r"|[.!?)][ \t]+(?:User|Human|System|Assistant|Question):")
_ROLE_WORDS = ("user", "human", "system", "assistant", "question", "instruction", "q:")
_TURN_PROMPT = re.compile(r"[.!?\n][ \t]*You are (?:(?:an? |the )?(?:[A-Za-z-]+ ){0,3}(?:assistant|AI|chatbot|"
                          r"language model|tutor)\b|Qwen\b|ChatGPT\b|Claude\b|Llama\b|Gemma\b|Phi\b|DeepSeek\b|"
                          r"Mistral\b|GPT)")
# End-of-turn tokens: what stands before one is finished ('<answer>14<|im_end|>' closed its value).
_END_OF_TURN = re.compile(r"<\|(?:im_end|endoftext|eot_id|end|end_of_sentence)\|>"
                          r"|<\uff5cend\u2581of\u2581sentence\uff5c>|</s>|<eos>|<end_of_turn>")


def _before_invented_turn(text):
    """The text up to the first turn the model invents after writing something of its own."""
    first = len(text) - len(text.lstrip()) + 1
    low = text.lower()
    found = [m for m in (_TURN_TOKEN.search(text, first) if "<" in text or "[" in text else None,
                         _TURN_ROLE.search(text, first) if any(w in low for w in _ROLE_WORDS) else None,
                         _TURN_PROMPT.search(text, first) if "you are" in low else None) if m]
    if not found:
        return text
    m = min(found, key=lambda x: x.start())
    cut = m.start() + (text[m.start()] in ".!?)")
    return text[:cut] + ("\n" if _END_OF_TURN.match(text, m.start()) else "")


_ANY_TAG = re.compile(r"<\s*(/?)\s*(answer|think)\s*>", re.IGNORECASE)
_CUT_CLOSE = re.compile(r"</(?:a(?:n(?:s(?:w(?:e(?:r)?)?)?)?)?)?\s*\Z", re.IGNORECASE)


def _answer_tags(text):
    """Answer tags as the model meant them: '<Answer>' is '<answer>'; after the thinking has closed, a '</think>' that
    closes an open answer block closes it ('</think> <answer>1004</think>'; inside the thinking, '... put it in
    <answer> tags </think>' is still the end of the thinking); a closing tag cut off at the very end closes it
    ('<answer>1004</', '</answ')."""
    out, depth, last, thought = [], 0, 0, False
    for m in _ANY_TAG.finditer(text):
        closing, name = m.group(1), m.group(2).lower()
        if name == "answer":
            tag, depth = ("</answer>", max(depth - 1, 0)) if closing else ("<answer>", depth + 1)
        elif closing and depth and thought:
            tag, depth = "</answer>", depth - 1
        else:
            tag, thought = m.group(0), thought or bool(closing)
        out += [text[last:m.start()], tag]
        last = m.end()
    text = "".join(out) + text[last:]
    cut = _CUT_CLOSE.search(text, max(0, len(text) - 20)) if depth else None
    return text[:cut.start()] + "</answer>" if cut else text


def _code_stand_in(m):
    return "\ncode omitted.\n" if m.group(0).endswith("```") and len(m.group(0)) >= 6 else "\ncode cut off\n"


def _closing_braces(text):
    """{index of '{': index of its matching '}'} in one linear pass (unmatched ones are absent)."""
    stack, match = [], {}
    for j, c in enumerate(text):
        if c == "{":
            stack.append(j)
        elif c == "}" and stack:
            match[stack.pop()] = j
    return match


def _boxes(text):
    """(start, end, content) of every \\boxed{...} / \\fbox{...} (and braceless '\\boxed 7'), in order."""
    out, match = [], None
    for m in re.finditer(r"\\(?:boxed|fbox)\b", text):
        j = m.end()
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            match = match if match is not None else _closing_braces(text)
            if j in match:
                out.append((m.start(), match[j] + 1, text[j + 1:match[j]]))
        elif j > m.end():                       # '\boxed 7': up to the next space or '$'
            tok = re.match(r"[^\s$]+", text[j:j + MAX_ANSWER])
            if tok:
                out.append((m.start(), j + tok.end(), tok.group(0)))
    return out


def boxed_all(text):
    """Contents of every \\boxed{...} / \\fbox{...} (and braceless '\\boxed 7'), in order."""
    return [c for _, _, c in _boxes(text)]


def _separates(gap):
    """Only list separators between two boxes: ',', ';', 'and', 'or', '\\quad', math delimiters, and at
    most a few words around a connector ('papers and'). Anything else ('then', prose) makes several
    different boxes a hedge."""
    g = re.sub(r"\\(?:quad|qquad|text|mathrm)|[$(){}\[\]\\]", " ", gap)
    words = re.findall(r"[A-Za-z]+", g)
    return len(words) <= 5 and (not words or re.search(r"[,;&]|\b(?:and|or)\b", g) is not None)


def last_boxed(text):
    found = boxed_all(text)
    return found[-1] if found else None


# Markdown emphasis, the default style of many instruct models ('**Answer:** 12', '*12*', '__12__'): stars or
# underscores at the edge of a word are dropped; between two characters of an expression ('2**3', 'a*b') they stay.
# (Each pattern begins with its literal star, which keeps the scan of a long text fast.)
_EMPHASIS = re.compile(r"(\*\*|__)(?:(?<![\w*)\]}\\]\1)(?=[^\s*_])|(?<=[^\s*_]\1)(?![\w*(\[{]))")
_ITALIC = re.compile(r"\*(?<![\w*)\]}\\]\*)(?=[^\s*])([^*\n]{0,200}?[^\s*(\[{])\*(?![\w*(\[{])")

# An answer statement: 'answer is', 'answer:', 'Answer $9$' (a math delimiter right after), '####', or a line
# that is only an answer heading ('### Final Answer', '**Final Answer**'): its statement is the next line.
# Zero-shot chain of thought asks 'Therefore, the answer (arabic numerals) is': a short parenthesis may stand
# between 'answer' and 'is' or ':'.
_MARKER = re.compile(r"####(?![ \t]*(?:final\s+)?answer[ \t]*$)|\banswer(?:(?:\s*\([^()\n]{0,40}\))?(?:\s+is\b\s*:?|\s*:)"
                     r"|(?=\s*(?:\$|\\\[|\\\())|(?P<heading>[ \t]*$))", re.IGNORECASE | re.MULTILINE)
_HEADING = re.compile(r"(?:^|\n)[ \t#>]*(?:the\s+)?(?:final\s+)?$", re.IGNORECASE)  # before 'answer' on its line
_SPAN = r"\$\$(.+?)\$\$|\$((?:\\\$|[^$])+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]"   # $$..$$, $..$ (\$ inside), \(..\), \[..\]
_DELIMITER = re.compile(r"\\[(\[)\]]|\$\$?")
_CLOSER = {"\\(": "\\)", "\\[": "\\]", "$$": "$$", "$": "$"}
# After its first answer, a few-shot model may go on into a new exercise of its own ('Problem 2.', 'Subproblem 2:',
# 'Exercise 3:'; a line that starts so before any answer may be the reply's own heading), or into a new 'Q:' after
# a sentence on its line ('The answer is 12. Q: ...', searched only where 'Q:' occurs; 'the point Q: (1, 2)' is no
# question): what follows is not part of its answer.
_INLINE_Q = re.compile(r"[.!?][ \t]+Q:[ \t]")
_RUN_ON = re.compile(r"\n[ \t#>*]*(?:(?:sub)?problem|exercise)[ \t]*\d*[ \t]*[:.]", re.IGNORECASE)
# Code is not a statement: a box or 'answer' printed by a code block is not the completion's answer.
_CODE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
# The R1-Zero template's container, '<think> ... </think> <answer> ... </answer>', also nested.
_TAG = re.compile(r"<(/?)answer>")
# The few-shot GSM8K style ends with a line 'A: 18'.
_A_LINE = re.compile(r"^[ \t]*A:[ \t]*([^\n]*)", re.MULTILINE)
# A final sentence that concludes ('So Josh made a profit of $70,000.'); 'so far', 'so that' do not conclude.
_CONCLUDES = re.compile(r"[ \t]*(?:so|therefore|thus|hence|finally|overall|altogether|consequently|in total|in all|"
                        r"in conclusion|in summary|all in all|as a result)\b(?![ \t]+(?:far|that|we|let)\b)[\s,:]*",
                        re.IGNORECASE)
# A number cut out of prose is a whole token: '2/5' (not its '5'), '-3', '1,000', '3.5'; '10^3' gives none.
_NUMBER = re.compile(r"(?<![\w.,/^_\\*+-])[-+]?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?(?![\w/^]|[.,]\d)")
# Words after a number that change its value ('5 squared', '2 thirds', '3 times 4', '5 thousand'): never dropped
# as if they were units, so such an answer is not cut down to its first number.
_VALUE_CHANGING = (r"(?:times|plus|minus|over|divided|squared|cubed|factorial|power|powers|roots?|choose|mod|modulo|"
                   r"halves|half|thirds?|quarters?|fourths?|fifths?|sixths?|sevenths?|eighths?|ninths?|tenths?|"
                   r"hundredths?|thousandths?|millionths?|hundreds?|thousands?|millions?|billions?|trillions?|dozens?)")
# Words that belong to a value written after an answer marker; any other word ends it ('12 in all').
_IN_VALUE = re.compile(rf"(?:and|or|pi|sqrt|infinity|percent|percentage|pct|{_VALUE_CHANGING}|"
                       r"(?:arc)?(?:sin|cos|tan)h?|sec|csc|cot|ln|log|exp)", re.IGNORECASE)
_SHORT_WORDS = {"in", "of", "at", "on", "as", "is", "if", "so", "by", "to", "it", "we", "be", "an", "or", "no"}
_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                      "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_WORDS.update({w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)})
_WORD = "(?:" + "|".join([*_WORDS, "hundred", "thousand", "million"]) + ")"
# A number in prose, in digits or in words ('Three trucks', 'twenty-five'); 'one' as a pronoun ('each one', 'one of
# them') is no number.
_LETTERS = re.compile(r"[A-Za-z]+")
_NUMBER_WORD_SET = {*_WORDS, "hundred", "thousand", "million"}
_JOINS_WORDS = re.compile(r"[ \t-]+(?:and[ \t]+)?")
_PRONOUN_ONE = re.compile(r"(?:each|every|any|no|the|this|that|which|some|another|a|the same)\s+\Z", re.IGNORECASE)
# What stands between a number and a later '=' in arithmetic: the number is working, not a result ('48 + 24 = 72').
_BEFORE_EQUALS = re.compile(r"(?:[\s\d.,+\-*/^()$%\u00d7\u00f7\u22c5]|\\(?:times|cdot|div)|x(?=\s*\$?\d))*=(?!=)")
# Two numbers offered as alternatives or a range ('5 or 6 cars', 'between 5 and 6', '5 to 6'), or a sentence that
# denies a value ('2 bags, not 14'): a prose sentence like that states no single value.
_ALTERNATIVES = re.compile(rf"(?:\d|\b{_WORD})\s*%?\s*(?:\bor\b|\bto\b|\u2013|~)\s*\$?\s*(?:\d|{_WORD}\b)"
                           r"|\b(?:between|either)\b", re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:not|never|instead|rather|except)\b|n't\b", re.IGNORECASE)
_BOUND_BEFORE = re.compile(r"(?:\b(?:more|less|fewer|greater|larger|smaller)\s+than|\bat\s+(?:least|most)|\b(?:about|"
                           r"approximately|roughly|nearly|almost|around|under|over|below|above|up\s+to))\s*\$?\s*\Z",
                           re.IGNORECASE)
_SCALED_BEFORE = re.compile(r"\b(?:twice|double|triple|thrice|half|times)\s+(?:of\s+)?\$?\s*\Z", re.IGNORECASE)
_SCALED_AFTER = re.compile(rf"\s*(?:{_VALUE_CHANGING}|percent\s+of|%\s*of|fold)\b", re.IGNORECASE)
_BOUND_AFTER = re.compile(r"\s*(?:or\s+(?:more|less|fewer|greater|so)|at\s+(?:most|least))\b", re.IGNORECASE)
# Words that join a number to the next one into one value: '1 in 4', '2 out of 5', '3 to 1', '5 per 2'.
_JOINS_NUMBERS = re.compile(r"\s*(?:in|out\s+of|of|to|per|for\s+every|over|by|times|x)\s+\$?\d", re.IGNORECASE)
# Words that begin an explanation: after them the value has ended, whatever numbers the explanation holds.
_EXPLAINS = re.compile(r"(?:because|since|as|so|which|where|when|while|given|thus|hence|therefore|i\.e|e\.g)\b",
                       re.IGNORECASE)
# Words that make a value a bound or an estimate ('12 or more', '12 less than x', '12 at most', '12 roughly').
_BOUNDS = re.compile(r"\b(?:than|more|less|fewer|greater|smaller|larger|least|most|about|approximately|roughly|"
                     r"nearly|almost|around|under|below|above|exceeding)\b", re.IGNORECASE)
_PIECE = re.compile(r"\s+|\$\$.*?\$\$|\$(?:\\\$|[^$])*?\$|\\[)\]]|\\\(.*?\\\)|\\\[.*?\\\]"
                    r"|\\(?:text|textbf|mathrm|mathbf|mbox|textit|textnormal|operatorname)\s*\{[^{}]*\}"
                    r"|\\[a-zA-Z]+|\\.|[A-Za-z]+|\d+|.", re.DOTALL)


def _math_spans(text):
    """(content start, content end, delimiter) of every math span ($..$, $$..$$, \\(..\\), \\[..\\]), in order."""
    spans, opened = [], None
    for m in _DELIMITER.finditer(text):
        d = m.group(0)
        if m.start() and text[m.start() - 1] == "\\":              # '\$' is a dollar sign; '\\[2pt]' a row break
            continue
        if opened is None:
            opened = (d, m.end()) if d in _CLOSER else None
        elif d == _CLOSER[opened[0]]:
            spans.append((opened[1], m.start(), opened[0]))
            opened = None
    return spans


def _starts_value(s):
    """Does the text begin with a value ('12', '-3/4', '\\frac', '$x$', '(G)', 'x = 3', 'G because ...')
    rather than with words ('The largest $n$ is 34', 'A total of 12')?"""
    if re.match(r"[A-J]\s+[A-Za-z]", s):                         # an option, then why: 'G because ...'
        return not re.search(r"\d", s)
    return re.match(r"[-+]?\s*\.?\d|[\\$(\[{|]|[A-Za-z](?![A-Za-z])\s*(?:[^A-Za-z\s.,]|$)|[A-J](?![A-Za-z])",
                    s) is not None


def _leading_value(s, question=None):
    """The value at the start of a sentence, up to the prose that follows it: '12, since both agree' -> '12',
    '12 in all' -> '12', '2/5 of the class' -> '2/5', '(G) none of these' -> '(G)', '280/7 = 40 Mack saw an
    average of 40 birds' -> '280/7 = 40' (the words restate it). Where the words after it go on with other numbers
    or make it a bound ('1 in 4', '12 in base 3', '12 or more', '40 Mack saw 41 birds') the value is not cut out:
    the whole sentence is returned (and then usually does not parse). Numbers the question gives are
    context, not other values ('12 apples after 3 days' -> '12' when the question says '3 days')."""
    depth, i = 0, 0
    while i < len(s):
        p = _PIECE.match(s, i).group(0)
        if p in ("\\)", "\\]"):                                     # the end of the math the marker was in
            return s[:i].strip()
        if depth == 0 and (i == 0 or not (s[i - 1].isalnum() or s[i - 1] in "\\_^")) and (
                p.isalpha() and (len(p) > 2 or p.lower() in _SHORT_WORDS) and not _IN_VALUE.fullmatch(p)
                or re.match(r"(?:i\.e|e\.g)\b", s[i:])):
            break                                                     # a word of prose: the value ended before it
        depth += (p == "{") - (p == "}")
        i += len(p)
    else:
        return s.strip()
    value = re.sub(r"(?:[\s,;:(\[]|\b(?:and|or)\b)+$", "", s[:i])   # '12, and that is all' -> '12'
    clause = re.split(r"[,;(]|\u2014|\s-+\s", s[i:], maxsplit=1)[0]
    if re.search(r"(?:[,;(]|\u2014|\s-+)\s*$", s[:i]) or _EXPLAINS.match(s, i) \
            or not (re.search(rf"\d|\b{_WORD}\b", clause, re.IGNORECASE) or _BOUNDS.search(clause)):
        return value or None
    return value if value and _restates(value, s[i:], question) else s.strip()


def _spans_first(s):
    """The math spans at the start of s as one list ('$x = 3$ or $x = 5$' -> 'x = 3, x = 5'), or None."""
    m = re.match(rf"(?:\s*(?:{_SPAN})\s*(?:,|\band\b|\bor\b)?)+", s, re.DOTALL)
    if m:
        return ", ".join(next(g for g in span if g).strip() for span in re.findall(_SPAN, m.group(0), re.DOTALL))
    return None


def _stated(text, mark, math_spans, question=None):
    """What one answer statement states: the math span right after the marker; else its sentence (up to '. ',
    a newline or 'I hope it is correct', and, for a marker inside math or a {group}, up to where that ends),
    from the value right after the marker up to the prose after it; a sentence in prose ('The largest $n$ is
    34') gives the value after its first ' is ' that is followed by one, else its last math span, else its
    last whole number. A chain with words in it ends on its last value ('40 hours x $10/hour = $460' -> '460'),
    and a statement that is the first of a few lines of working ends where they end ('4x + 12 = 48 / 4x = 36 /
    x = 9' -> 'x = 9')."""
    end = mark.end() + MAX_ANSWER * 4
    k = bisect.bisect_right(math_spans, (mark.start(), math.inf)) - 1
    if k >= 0 and math_spans[k][0] <= mark.start() < math_spans[k][1]:   # '\[ \text{Answer: } 12 \]', '\(Answer: 12\)'
        start, stop, delim = math_spans[k]
        # a '$' pair around prose is money ('costs $5. So the answer is $12'): only a '$' math span that opens
        # with the marker counts
        before = re.sub(r"\\[a-zA-Z]+\s*\{|\s|\b(?:the|final)\b", "", text[start:mark.start()], flags=re.IGNORECASE)
        if delim != "$" or not before:
            end = min(end, stop)
    tail = text[mark.end():end].lstrip(" \t:")
    if re.search(r"(?::|answer)[ \t]*$", mark.group(0), re.IGNORECASE):
        tail = tail.lstrip()                                          # 'Answer:\n12', '### Final Answer\n12'
    tail = re.sub(r"^(?:\}[\s:]*)+", "", tail)                     # '\text{Answer: } 12'
    tail = re.sub(r"^(?:(?:therefore|thus|hence|then|now|just|simply|clearly|indeed|exactly|actually|still|also|definitely|certainly|surely|"
                  r"equal to|given by)\b[\s,:]*)+", "", tail, flags=re.IGNORECASE)   # 'The answer is therefore 3'
    listed = _spans_first(tail)
    if listed:
        return listed
    sentence = re.split(r"\n|\.(?=\s|$)|\bI hope it is correct", tail, maxsplit=1)[0]
    # up to a '}' that closes a group the marker was in: '\textbf{Answer: 12}'
    sentence = sentence[:_closing_braces("{" + sentence + "}").get(0, len(sentence) + 1) - 1].strip()
    if len(sentence) > MAX_ANSWER:
        return None                                          # no answer is that long (and a cut one is a piece)
    if "=" in sentence:
        worked = _worked_value(tail, end >= len(text)) if _math_only(sentence) else None
        if worked is False:
            return None
        chain = worked or _chain_end(sentence)
        if chain:
            return chain
    if _starts_value(sentence):
        return _leading_value(sentence, question)
    bare = re.sub(r"\\text\{[^{}]*\}|" + _SPAN, " ", sentence, flags=re.DOTALL)
    if len(re.findall(r"[a-zA-Z]{3,}", bare)) < 2:       # not prose: 'either 3 or 5', 'twenty-five', 'Monday'
        return sentence.strip("$ ")
    for m in re.finditer(r" is ", sentence):                 # 'The largest $n$ is 34'
        rest = sentence[m.end():].lstrip()
        if _starts_value(rest):
            return _spans_first(rest) or _leading_value(rest, question)
    if " is " in sentence:
        return sentence.rsplit(" is ", 1)[1].strip("$ ")
    spans = re.findall(_SPAN, sentence, re.DOTALL)
    if spans:
        return next(g for g in spans[-1] if g).strip()
    numbers = _NUMBER.findall(sentence)                       # 'Jane started growing Sphere 3 hours ago'
    return numbers[-1] if numbers else None


def _parses(s):
    """Does an answer parse (to anything: a number, a word, a set, ...)?"""
    try:
        parse(s)
        return True
    except Exception:
        return False


def _states_value(s):
    """Is a statement a value (a number, an expression, an option) rather than words ('the answer is correct',
    '15 gallons * 8 pints / gallon = 120 pints')? Only values hedge or override each other."""
    return not re.search(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}", re.sub(r"\\(?:text|mathrm|mbox)\s*\{[^{}]*\}", "", s)) \
        and _parses(s)


def _boxed_answer(text, boxes):
    """The boxed answer: one value, or several different ones read as one list 'a, b' (is_equiv reads it as a
    set) when only separators stand between them; None for a hedge."""
    distinct = []
    for b in (c.strip() for _, _, c in boxes):
        if any(b == d or is_equiv(b, d) for d in distinct):
            continue
        rounded = next((j for j, d in enumerate(distinct) if _rounds(b, d) or _rounds(d, b)), None)
        if rounded is not None:                                  # '\boxed{\frac{\sqrt2}{2}} \approx \boxed{0.707}'
            distinct[rounded] = b if _rounds(distinct[rounded], b) else distinct[rounded]   # keep the exact one
            continue
        distinct.append(b)
        if len(distinct) > MAX_ITEMS:
            return None
    if len(distinct) > 1 and not all(_separates(text[e:s]) for (_, e, _), (s, _, _) in zip(boxes, boxes[1:])):
        return None                                              # 'first \boxed{3} then \boxed{5}': a hedge
    return ", ".join(distinct)


_DECIMALS = re.compile(r"\(?\s*-?\d+\.\d+(?:\s*,\s*-?\d+\.\d+)*\s*\)?")


def _rounds(decimal, exact):
    """Is `decimal` the value of `exact` (not itself a decimal) rounded to the digits it shows, a number or a tuple
    of numbers ('0.707' for '\\frac{\\sqrt2}{2}', '(0.5, 0.866)')? Then the two boxes state one value."""
    if not _DECIMALS.fullmatch(decimal) or _DECIMALS.fullmatch(exact) or len(exact) > MAX_ANSWER:
        return False
    try:
        d, e = parse(decimal)[0], parse(exact)[0]
        ds, es = (d[2], e[2]) if _kind(d) == _kind(e) == "seq" and d[1:4:2] == e[1:4:2] else ([d], [e])
        places = [len(x.split(".")[1]) for x in re.findall(r"\d+\.\d+", decimal)]
        return len(ds) == len(es) == len(places) and all(
            _kind(x) == _kind(y) == "expr" and y.is_number and not y.free_symbols
            and abs(complex(sp.N(y, 30)) - float(x)) <= 0.5 * 10.0 ** -k * (1 + 1e-9) for x, y, k in zip(ds, es, places))
    except Exception:
        return False


def _stated_answer(text, marks, question=None):
    """The answer of the answer statements: the value they state; None if they state different values, or if
    a worked value ('280/7 = 40', 'x = 9') is followed by a final sentence that names another one ('Mack saw an
    average of 41 birds per day.')."""
    math_spans = _math_spans(text)
    value = _agreed([s for s in (_stated(text, m, math_spans, question) for m in marks) if s])
    if value is not None and "=" in value:
        last = _last_statement(text)
        if last and last[0] > marks[-1].end() and _is_prose(last[1]):
            other = _only_number(last[1], question)
            if other is not None and not is_equiv(other, value.rsplit("=", 1)[1]):
                return None
    return value


def _agreed(stated):
    """The value several statements agree on, the first as written ('25%. The answer (as a fraction) is 1/4'
    keeps '25%', as the first of equal boxes is kept); None if they state different values."""
    values = [s for s in stated if _states_value(s)] if len(set(stated)) > 1 else stated
    if any(s != values[0] and not is_equiv(s, values[0]) for s in values[1:]):
        return None                                              # 'The answer is 3. ... The answer is 5.': a hedge
    return values[0] if values else (stated[-1] if stated else None)


def _run_on(text, firsts, question=None):
    """Where the text runs on, after its first answer (the least of firsts, the ends of the first box, answer
    statement, answer block and 'A:' line), into a new exercise or problem of its own (len(text) if it does
    not)."""
    first = min(firsts, default=None)
    if first is None:
        return len(text)
    m = _RUN_ON.search(text, first)
    stop = m.start() if m else len(text)
    q = _INLINE_Q.search(text, first, stop) if "Q:" in text else None
    stop = q.start() if q else stop
    return _new_problem(text, first, stop, question)


def _answer_blocks(text):
    """(start, end, content) of every outermost <answer>...</answer>, inner tags dropped. A block left open at
    the end is read when what it holds is complete: a nested block that ends the text is its answer ('<answer> So
    ... (3000 / 1000) <answer> 3 </answer>'), and so is content that ends in a full stop, a closed box or math, or
    a line break ('<answer> The answer is 1004.'). Else None: '<answer>14' was cut before its answer ended."""
    blocks, depth, start, inner, opened = [], 0, None, [], None
    for m in _TAG.finditer(text):
        if not m.group(1):
            start, inner = (m, []) if depth == 0 else (start, inner)
            opened = m if depth == 1 else opened
            depth += 1
        elif depth:                                            # a stray closing tag closes nothing
            depth -= 1
            if depth == 0:
                blocks.append((start.start(), m.end(), _TAG.sub(" ", text[start.end():m.start()])))
            elif depth == 1:
                inner.append((opened.start(), m.end(), _TAG.sub(" ", text[opened.end():m.start()])))
    if not depth:
        return blocks
    if depth > 1 or inner and text[inner[-1][1]:].strip():
        return None
    if inner:
        return blocks + inner
    content = text[start.end():]
    if len(content) > 4 * MAX_ANSWER or not re.search(
            r"(?:[.!]|\$|\\[)\]]|\\(?:boxed|fbox)\s*\{[^\n]*\})\s*\Z|\S[ \t]*\n\s*\Z", content):
        return None
    return blocks + [(start.start(), len(text), _TAG.sub(" ", content))]


def _one_value(s, question=None):
    """The value a short statement states, or None: all of it when it begins with a value ('14 bags' -> 14,
    '= $460' -> 460, '5800+3600=9400'), a word or two ('Monday'); the last value of a chain that ends it ('40 hours
    x $10/hour = $460.' -> 460); in a sentence, the value after its first ' is ' / ' are ' / ' equals ' that has
    one, else its only math span, else its only number ('She can fill 14 bags' -> 14, 'Three trucks are needed'
    -> 3). Two numbers without such a verb ('12 apples after 3 days') are no answer: which one is meant? With the
    question, the numbers it gives are context ('14 bags with 2 lollipops in each' -> 14 when it gives 2)."""
    s = s.strip().rstrip(".!").strip().lstrip("=:").strip()
    if not s or len(s) > MAX_ANSWER:
        return None
    whole = re.fullmatch(rf"(?:{_SPAN})", s, re.DOTALL)               # '\[ \frac{14}{3} \]'
    if whole:
        return next(g for g in whole.groups() if g).strip()
    chain = _chain_end(s) if "=" in s else None
    if chain:
        return chain
    if _starts_value(s):
        return _ends(_leading_value(s, question), s, question)
    for m in re.finditer(r" (?:is|are|was|equals|=) ", s):
        rest = s[m.end():].lstrip()
        if _starts_value(rest):
            return _ends(_spans_first(rest) or _leading_value(rest, question), rest, question)
    bare = re.sub(r"\\text\{[^{}]*\}|" + _SPAN, " ", s, flags=re.DOTALL)
    if len(re.findall(r"[a-zA-Z]{3,}", bare)) < 2:           # not prose: 'Monday', 'either 3 or 5'
        return s.strip("$ ")
    spans = re.findall(_SPAN, s, re.DOTALL)
    if spans:
        return next(g for g in spans[0] if g).strip() if len(spans) == 1 else None
    return _only_number(s, question)


def _ends(value, rest, question=None):
    """The value, if nothing after it in its sentence holds another number: not 'x = 3, then y = 5', nor 'which is
    16 ounces, ... a total of 6+8+16=30 ounces' (the value read there would be an intermediate one)."""
    if not value or len(re.findall(r"\d+", rest)) <= len(re.findall(r"\d+", value)):
        return value
    at = rest.find(value)
    return value if at >= 0 and _restates(value, rest[at + len(value):], question) else None


def _container_value(content, question=None):
    """What an <answer> block without a box or answer line inside states: its last sentence that holds a number
    or math ('<answer>She can fill 14 bags</answer>' -> 14), read by _one_value."""
    if len(content) > 4 * MAX_ANSWER:
        return None
    parts = [x for x in re.split(r"(?<=[.!?])\s+|\n", content) if x.strip()]
    for k in range(len(parts) - 1, 0, -1):                  # 'Mr. Sylas', '80 lbs. of carrots' end no sentence
        if _ABBREVIATION.search(parts[k - 1][:-1]) and parts[k - 1].endswith("."):
            parts[k - 1:k + 1] = [parts[k - 1] + " " + parts[k]]
    valued = [x for x in parts if _holds_number(x)]
    last = (valued or parts or [""])[-1]
    concludes = _CONCLUDES.match(last)
    return _one_value(last[concludes.end():] if concludes else last, question)


def _concluding(text, question=None):
    """The value of a final sentence that concludes without a marker ('So Josh made a profit of $70,000.',
    'Thus the value of $x$ is $\\frac{14}{3}$'), read by _one_value. With the question, a final
    sentence in prose need not begin with 'So': its one number that the question does not give is its value ('5
    cars drove through the traffic jam in the first 15 minutes.' -> 5 when the question asks about 'the first 15
    minutes'). None unless the text ends there (or in a note, a courtesy or code after it) with a full stop or
    closed math: a completion cut off mid-sentence has no answer."""
    last = _last_statement(text)
    if last is None or len(last[1]) > MAX_ANSWER:
        return None
    sentence = last[1]
    concludes = _CONCLUDES.match(sentence)
    if concludes:
        return _one_value(sentence[concludes.end():], question)
    if question is None or not _is_prose(sentence):
        return None
    return (_chain_end(sentence) if "=" in sentence else None) or _only_number(sentence, question)


# What may follow the final statement without changing it: code, a note or caveat, a courtesy (and none of them
# holds a number: 'Note: if 3 were lost he would have 9.' is another statement).
_TRAILING = re.compile(r"\s*(?:code omitted|notes?\b|remark|caveat|this (?:assumes|is assuming)|assuming\b|"
                       r"(?:I\s+)?hope\s+(?:this|that|it)|let me know|feel free|if you have|please let|good luck|"
                       r"thanks?\b|have a (?:nice|great|good))", re.IGNORECASE)


# A full stop after these ends no sentence: 'Mr. Sylas adds four', '80 lbs. of carrots', 'J. K. Rowling'.
_ABBREVIATION = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|vs|etc|approx|lbs?|oz|ft|yds?|hrs?|mins?|secs?|yrs?|"
                           r"sq|cu|No|Fig|Eq|e\.g|i\.e)|(?<![A-Za-z])[A-Z])\Z")


def _holds_number(s):
    return re.search(r"[\d\\$]", s) is not None or any(w.lower() in _NUMBER_WORD_SET for w in _LETTERS.findall(s))


def _last_statement(text):
    """(start, sentence) of the text's final statement: its last sentence that holds a number or math, where
    what follows it is only a note, a courtesy or code without numbers ('So Sam has 12 marbles.\n\nNote: this
    assumes none were lost.'). None unless the text ends with a full stop or closed math (a completion cut off
    mid-sentence has no answer), or where the sentence is thousands of characters long."""
    t = text.rstrip()
    if not re.search(r"(?:[.!]|\$|\\[)\]])$", t):
        return None
    tail = t[-4 * MAX_ANSWER:]
    spans = _math_spans(tail)
    starts = [a for a, _, _ in spans]

    def in_math(i):                                           # '$3.5 \text{ m}. $' does not end a sentence
        k = bisect.bisect_right(starts, i) - 1
        return k >= 0 and i < spans[k][1]
    ends = [0] + [m.end() for m in re.finditer(r"\n|[.!?](?=\s)", tail) if not in_math(m.start())
                  and not _ABBREVIATION.search(tail, max(0, m.start() - 8), m.start())] + [len(tail)]
    pieces = [(a, b) for a, b in zip(ends, ends[1:]) if tail[a:b].strip()]
    k = len(pieces) - 1
    while k >= 0 and not _holds_number(tail[pieces[k][0]:pieces[k][1]]):
        k -= 1
    if k < 0 or pieces[k][0] == 0 and len(t) > len(tail):
        return None                                            # no number, or a 'sentence' thousands of characters long
    a, b = pieces[k]
    if tail[b:].strip() and not _TRAILING.match(tail, b):
        return None                                            # 'So she has 12 apples. Next we find how many ...'
    return len(t) - len(tail) + a, tail[a:b].strip()


def _is_prose(s):
    """A sentence in words (at least two of three letters or more outside math), not a formula or a bare value."""
    words = re.sub(r"\\[a-zA-Z]+(?:\{[^{}]*\})?|" + _SPAN, " ", s, flags=re.DOTALL)
    return len(re.findall(r"[a-zA-Z]{3,}", words)) >= 2


def _math_only(s):
    """No words in it, only numbers, operators, single-letter names and LaTeX: '4x + 12 = 48', '$x = 9$'."""
    return re.search(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}", re.sub(r"\\text\s*\{[^{}]*\}", " ", s)) is None


def _number_value(token):
    """The exact value of a number written in prose ('1,000', '3.5', '2/5', 'twenty-five'), or None."""
    t = token.strip().replace(",", "")
    try:
        if re.fullmatch(r"[-+]?\d+(?:\.\d+)?", t):
            return Fraction(t)
        if "/" in t:
            n, d = (Fraction(x.strip()) for x in t.split("/"))
            return n / d if d else None
        m = _NUMBER_WORDS.match(t)
        return Fraction(int(_number_words(t))) if m and m.end() == len(t) else None
    except (ValueError, ZeroDivisionError):
        return None


def _numbers_in(s):
    """[(start, end, text, value, working)] for every number in a prose sentence, in digits or in words ('twenty-five',
    'one hundred and three'); working: followed by more arithmetic and an '=' ('48 + 24 = 72': 48 and 24 are
    working, 72 is the result). 'one' as a pronoun is not a number."""
    spans, run = [(m.start(), m.end()) for m in _NUMBER.finditer(s)], None
    for m in _LETTERS.finditer(s):                  # words by a set lookup: a regex of every number word is slow
        if m.group(0).lower() not in _NUMBER_WORD_SET:
            continue
        if run and _JOINS_WORDS.fullmatch(s, run[1], m.start()):
            run[1] = m.end()
            continue
        if run:
            spans.append(tuple(run))
        run = [m.start(), m.end()]
    if run:
        spans.append(tuple(run))
    out = []
    for a, b in sorted(spans):
        if s[a:b].lower() == "one" and (_PRONOUN_ONE.search(s, max(0, a - 12), a)
                                        or re.match(r"\s+(?:of|another|by)\b", s[b:b + 12], re.IGNORECASE)):
            continue
        value = _number_value(s[a:b])
        if value is not None:
            out.append((a, b, s[a:b], value, _BEFORE_EQUALS.match(s, b, b + 200) is not None))
    return out


@functools.lru_cache(maxsize=256)     # the G replies of a group share their question
def _given(question):
    """The question's numbers, context for a prose answer: (all of them, those of its sentence that asks)."""
    sentences = [x for x in re.split(r"(?<=[.!?])\s+|\n", question) if x.strip()]
    ask = next((x for x in reversed(sentences) if "?" in x), sentences[-1] if sentences else "")
    return frozenset(n[3] for n in _numbers_in(question)), frozenset(n[3] for n in _numbers_in(ask))


def _only_number(s, question=None):
    """The one number a prose sentence states, or None: 'She can fill 14 bags' -> '14', 'Three trucks are
    needed.' -> '3'. Numbers that an '=' follows are working ('48 + 24 = 72 clips' -> '72'). With the question,
    a number it gives is context: '14 bags with 2 lollipops in each' -> '14' when it gives the 2;
    if the question gives every number of the sentence, the one that the question's own asking sentence does not
    hold ('5 cars drove through in the first 15 minutes' -> '5' for '... how many cars drove through in the first
    15 minutes?'). Alternatives or a range ('5 or 6 cars'), a denial ('2 bags, not 14') and a bound next to the
    number ('at least 5') state no single value."""
    if len(s) > MAX_ANSWER or _ALTERNATIVES.search(s) or _NEGATION.search(s) or question is not None and " or " in s:
        return None
    found = [n for n in _numbers_in(s) if not n[4]]
    if question is not None:
        known, asked = _given(question)
        fresh = [n for n in found if n[3] not in known]
        echoes = any(n[3] in asked for n in found)              # it restates the asking sentence's numbers
        found = fresh or echoes and [n for n in found if n[3] not in asked]
    if not found or len({n[3] for n in found}) != 1:
        return None
    start, end, text, value, _ = found[0]
    if _BOUND_BEFORE.search(s, max(0, start - 30), start) or _BOUND_AFTER.match(s, end) \
            or _SCALED_BEFORE.search(s, max(0, start - 30), start) or _SCALED_AFTER.match(s, end):
        return None                                            # 'at least 5', '5 or more', 'twice 6', '6 times'
    number = text if re.match(r"[-+\d]", text) else str(value)
    return number + "%" if re.match(r"\s*(?:\\?%|percent\b)", s[end:end + 12]) else number


def _restates(value, rest, question=None):
    """Do the words after a value restate it rather than state another one? Every number in them is the value
    itself or one the question gives ('280/7 = 40' then 'Mack saw an average of 40 birds'; '12' then 'apples
    after 3 days' when the question says 3 days). Never when they join a number to it ('1 in 4', '2 out of 5'),
    bound it, offer an alternative or deny something."""
    if _JOINS_NUMBERS.match(rest) or _BOUNDS.search(rest) or _ALTERNATIVES.search(rest) or _NEGATION.search(rest) \
            or re.search(rf"\b{_VALUE_CHANGING}\b", rest, re.IGNORECASE):
        return False                                           # '9 eggs times 2 dollars' goes on computing
    last = _numbers_in(value.rsplit("=", 1)[-1])
    own = last[-1][3] if last else None
    found = [n[3] for n in _numbers_in(rest)]
    return bool(found) and all(v == own or question is not None and v in _given(question)[0] for v in found)


# The value a chain ends its statement on: '= $460.', '= 14 bags', '= 129,200', '= 25%'; after it only up to four
# words (a unit, 'in total'), none of which goes on with the value ('or', 'more', 'times', ...).
_CHAIN_END = re.compile(r"=\s*(?:\\?\$)?\s*(-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?)\s*(\\?%|percent\b)?"
                        r"((?:\s*[A-Za-z][A-Za-z'-]*\.?){0,4})\s*\Z")
_SEPARATOR = re.compile(r"[,;](?=\s)|\b(?:and|or|then|so|but|while)\b", re.IGNORECASE)


def _chain_end(s):
    """The value an arithmetic chain ends a statement on, or None. A chain of numbers and names only is returned
    whole, so that the parser checks it ('76,000 + 53,200 = 129,200' -> 129200; '5 + 7 = 13' is refused); one with
    words in it ('40 hours x $10 / hour + 5 hours x 1.2 x $10/hour = $460') gives its last value. Two equations
    are two values ('x = 3, y = 5', '40 x 10 = 400 and 5 x 12 = 60'), unless the second computes on from the
    first's result ('30 - 2 = 28, and 28 / 2 = 14' -> 14)."""
    j = s.rfind("=")
    m = _CHAIN_END.match(s, j) if j >= 0 else None
    if not m or any(w.lower() in ("or", "and", "to", "plus", "minus", "times", "over") or _BOUNDS.fullmatch(w)
                    for w in m.group(3).split()):
        return None
    first = j                                                   # the first '=' of the last chain
    while True:
        k = s.rfind("=", 0, first)
        if k < 0 or _SEPARATOR.search(s, k + 1, first):
            break
        first = k
    cut = [x.end() for x in _SEPARATOR.finditer(s, 0, first)]
    start = cut[-1] if cut else 0
    if "=" in s[:start]:                                        # an earlier equation in the same sentence
        previous = re.match(r"=\s*(?:\\?\$)?\s*(-?\d+(?:,\d{3})*(?:\.\d+)?)", s[s.rfind("=", 0, start):start])
        lhs = re.sub(r"(?<=\d)\s*[x\u00d7]\s*(?=\$?\d)", "*", s[start:first])      # '9 x $2': x is times
        if not previous or re.search(r"[A-Za-z]", lhs) \
                or previous.group(1) not in re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?", lhs):
            return None
    chain = s[start:].strip()
    if _math_only(chain.replace("$", "")) and not m.group(3).strip():
        return re.sub(r"(?<=\d)\s*[x\u00d7]\s*(?=\$?\d)", r" \\times ", chain)
    return m.group(1) + ("%" if m.group(2) else "")


def _worked_value(tail, ends_text):
    """A statement that is the first of a few lines of working ends where they end: '4x + 12 = 48', '4x = 36',
    'x = 9' -> 'x = 9'; '2 + 3 = 5', '5 + 4 = 9' -> '5 + 4 = 9'. Only where the working runs to the end of the
    text or to one last sentence (which _stated_answer checks); False (no answer at all) for working that ends on
    two values ('x = 9', 'y = 4'; 'x = 3', 'x = 5'); None where the statement is not followed by working."""
    lines, rest = [], ""
    for k, line in enumerate(tail.split("\n")):
        bare = line.strip().strip("$").strip()
        bare = re.sub(r"^\\\[|\\\]$|^\\\(|\\\)$", "", bare).strip()
        if not bare:
            continue
        if "=" in bare and _math_only(bare) and len(bare) <= 200 and len(lines) < 12:
            lines.append(bare.rstrip("."))
            continue
        rest = "\n".join(tail.split("\n")[k:])
        break
    else:
        if not ends_text:
            return None
    if len(lines) < 2 or len(re.findall(r"(?<=[.!?])\s|\n", rest.strip())) > 1:
        return None
    named = [re.fullmatch(r"((?:\\[a-zA-Z]+|[A-Za-z])(?:_\{?\w+\}?)?)\s*=\s*-?[\d.]+(?:\s*/\s*\d+)?", x) for x in lines]
    final = named[-1]
    if final is None and not re.fullmatch(r"[-+*/()\d.\s=\\a-z{}^]*=\s*-?[\d.]+", lines[-1]):
        return None
    if final is not None and any(n is not None and (n.group(1) != final.group(1)
                                                    or not is_equiv(n.group(0), final.group(0))) for n in named[:-1]):
        return False                                           # 'x = 9', 'y = 4' or 'x = 3', 'x = 5': two values
    if final is None and any(n is not None for n in named):
        return False
    return lines[-1]


# A paragraph that opens a new problem of the model's own after its first answer: it starts with a word that is
# not a reflection on the answer ('Wait', 'Let me check', 'So', ...), it asks something ('How many ...?', 'Find
# ...'), and most of its words are new to the reply and the question (a re-check reuses them).
_REFLECTS = re.compile(r"(?:wait|but|however|hmm+|let|let's|check|checking|verify|verifying|verification|so|therefore|"
                       r"thus|hence|note|actually|alternatively|also|now|since|because|this|that|these|those|it|i|i'm|"
                       r"we|our|my|yes|no|oh|oops|double|correct|final|answer|step|first|then|next|to|here|recall|"
                       r"remember|looking|again|well|okay|ok|great|sure|indeed|in|on|for|from|after|before|using|with|"
                       r"by|as|explanation|reasoning|solution|proof|summary|is|are|does|did|do|was|can|could|should|"
                       r"would|will|if|what|how|why)\b", re.IGNORECASE)
_ASKS = re.compile(r"\?|\b(?:Find|Compute|Calculate|Determine|Evaluate|Simplify|Solve|Express|Show|Prove)\b")
_COMMON = set("that this with from have does much many what when which will would there their they them each then "
              "than into more some total what your were been also only just like make made find many much".split())


def _new_problem(text, first, stop, question):
    """Where the text starts a new problem of its own after its first answer (ends at `first`), before `stop`;
    `stop` if it does not."""
    start = text.find("\n", first, stop)
    if start < 0:
        return stop
    window = text[start:min(stop, start + 20 * MAX_ANSWER)]
    seen = {w[:4] for w in re.findall(r"[a-z]{4,}", (text[max(0, first - 20 * MAX_ANSWER):first]
                                                      + " " + (question or "")).lower())}
    for k, m in enumerate(re.finditer(r"\n[ \t]*(?=([A-Z][A-Za-z']*))", window)):
        if k >= 30:
            break
        if _REFLECTS.fullmatch(m.group(1)):
            continue
        para = window[m.end():m.end() + MAX_ANSWER].split("\n\n")[0]
        if not _ASKS.search(para):
            continue
        words = [w[:4] for w in re.findall(r"[a-z]{4,}", para.lower()) if w not in _COMMON]
        if len(words) >= 4 and sum(w not in seen for w in words) >= 0.6 * len(words):
            return start + m.start()
    return stop


def _marks(text):
    return [m for m in _MARKER.finditer(text)
            if m.group("heading") is None or _HEADING.search(text, max(0, m.start() - 80), m.start())]


# -----------------------------------------------------------------------------
# Normalisation of answer strings (plain string rewriting; nothing is evaluated)

_UNICODE = {"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": r"\times ", "\u00f7": r"\div ",
            "\u03c0": r"\pi ", "\u221e": r"\infty ", "\u221a": r"\sqrt", "\u00b7": r"\cdot ", "\u2264": r"\le ",
            "\u2265": r"\ge ", "\u2260": r"\ne ", "\u222a": r"\cup ", "\u2208": r"\in ", "\u00b0": "",
            "\u2248": r"\approx "}
_UNICODE.update({c: f"\\{name} " for c, name in zip(
    "\u03b1\u03b2\u03b3\u03b4\u03b5\u03b6\u03b7\u03b8\u03b9\u03ba\u03bb\u03bc\u03bd\u03be\u03c1\u03c3\u03c4\u03c5\u03c6\u03c7\u03c8\u03c9"
    "\u0393\u0394\u0398\u039b\u039e\u03a3\u03a5\u03a6\u03a8\u03a9",
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi rho sigma tau upsilon phi chi psi "
    "omega Gamma Delta Theta Lambda Xi Sigma Upsilon Phi Psi Omega".split())})
_SUPERSCRIPT = re.compile("[\u2070\u00b9\u00b2\u00b3\u2074-\u2079\u207b]+")     # 'ω²', 'x⁻¹'
_SUPERSCRIPT_DIGITS = str.maketrans("\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207b", "0123456789-")
# A side condition on where a value holds ('A = 1/(4 - ω^2), for ω^2 ≠ 4') is not part of the value.
_CONDITION = re.compile(r"\b(?:for|where|if|when|provided|assuming)\b")
_INEQUALITY = re.compile(r"\\(?:ne|neq|le|leq|ge|geq|in)\b|[<>]")
# ... but a condition followed by more ('3 for x > 0, and 5 for x < 0') is a piecewise answer, not a condition.
_GOES_ON = re.compile(r"[=,;]|\\\\|\b(?:and|or|otherwise|else)\b")
_SIZING = re.compile(r"\\q?quad|\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|displaystyle|textstyle|limits)"
                     r"(?![a-zA-Z])")
_UNITS = (r"(?:dollars?|cents?|units?|degrees?|cm|mm|km|m|meters?|inches|inch|feet|foot|ft|miles?|"
          r"hours?|minutes?|seconds?|days?|years?|kg|g|grams?|pounds?|lbs?|square|sq|cubic|mph)")
# A doubled backslash before a command is an escaping accident ('\\frac' for '\frac'), not a row break.
_DOUBLED = re.compile(r"(?<!\\)\\\\(?=(?:frac|dfrac|tfrac|sqrt|left|right|boxed|pi|le|ge|leq|geq|lt|gt|cdot|"
                      r"times|text|mathrm|infty|in|cup|pm|sin|cos|tan|log|ln|begin|end)(?![a-zA-Z]))")
_NUMBER_WORDS = re.compile(rf"^{_WORD}(?:[\s-]+(?:and\s+)?{_WORD})*\b", re.IGNORECASE)


def _number_words(s):
    """A leading spelled-out number as digits: 'twenty-five apples' -> '25 apples', 'one hundred and
    three' -> '103'."""
    m = _NUMBER_WORDS.match(s)
    if not m:
        return s
    total, part = 0, 0
    for w in re.split(r"[\s-]+", m.group(0).lower()):
        if w in _WORDS:
            part += _WORDS[w]
        elif w == "hundred":
            part = max(part, 1) * 100
        elif w != "and":
            total, part = total + max(part, 1) * (1000 if w == "thousand" else 1_000_000), 0
    return str(total + part) + s[m.end():]


def _list_words(s):
    """'1 and 2', '3 or 5', 'either 3 or 5', '19, 46, and 82' -> comma lists; words inside \\text{...}
    and answers without any math ('odd or even') stay as they are."""
    if not re.search(r"[\d\\]", s):
        return s
    parts = re.split(r"(\\text\{[^{}]*\})", s)
    for j, p in enumerate(parts):
        if j % 2:
            parts[j] = ", " if re.fullmatch(r"\\text\{\s*(?:and|or)\s*\}", p) else p
        else:
            parts[j] = re.sub(r"(?:,\s*)?\b(?:and|or)\b|\beither\b", ", ", p)
    return re.sub(r"^\s*,|,\s*(?=,)|,\s*$", "", "".join(parts).strip())


def _repeating(m):
    """'1.2\\overline{34}' -> the exact fraction it names."""
    whole, fixed, rep = m.group(1) or "0", m.group(2), m.group(3)
    f = Fraction(int(whole + fixed + rep) - int(whole + fixed), 10 ** len(fixed) * (10 ** len(rep) - 1))
    return f"\\frac{{{f.numerator}}}{{{f.denominator}}}"


def normalize(s):
    """Surface normalisation: spacing commands, unicode, units, degrees, dollars, thousands separators,
    list words. Returns (string, had_percent)."""
    s = _DOUBLED.sub(r"\\", _unwrap(s.strip()))
    if not s.isascii():
        for k, v in _UNICODE.items():
            s = s.replace(k, v)
        s = _SUPERSCRIPT.sub(lambda m: "^{" + m.group(0).translate(_SUPERSCRIPT_DIGITS) + "}", s)
    s = re.sub(r"(\d)\s*,?\s*\\[,!]\s*(?=\d{3}\b)", r"\1", s)        # 1\,000   10,\!000
    s = re.sub(r"(\d)\s*\{\s*,\s*\}\s*(?=\d{3})", r"\1", s)            # 1{,}000
    s = _SIZING.sub("", s)
    s = re.sub(r"\bnp\.(?=[a-z])", "", s)                                  # numpy spelling: np.arcsin
    s = re.sub(r"(?<!\\)\\[,;:! ]|~", " ", s)                     # thin spaces, not the row break '\\ '
    s = re.sub(r"\\[dtc]frac", r"\\frac", s)
    s = re.sub(r"\\(?:mathrm|mathbf|textbf|textit|mathit|boldsymbol|mbox|operatorname|textrm|textnormal|mathsf|"
               r"textsf)\s*\{", r"\\text{", s)
    s = re.sub(r"\\text\s+\{", r"\\text{", s)
    s = s.replace("\\$", "").replace("$", "")
    if "," in s:
        s = _thousands_in_arithmetic(s)
    if "d" in s:
        s = _leibniz(s)
    s = re.sub(r">=|\\geqslant", r"\\ge ", s)
    s = re.sub(r"<=|\\leqslant", r"\\le ", s)
    s = s.replace("!=", r"\ne ").replace(r"\lt", "<").replace(r"\gt", ">")
    if _INEQUALITY.search(s):
        s = _without_condition(s)
    # degrees inside a trigonometric function are an angle in degrees; elsewhere a unit
    s = re.sub(r"(\\(?:sin|cos|tan|sec|csc|cot)\s*\(?\s*)(\d+(?:\.\d+)?)\s*\^\s*\{?\s*\\circ\s*\}?",
               r"\1(\2 \\pi / 180)", s)
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree", "", s)
    percent = bool(re.search(r"%|\\text\{\s*percent\s*\}|\b(?:percent|percentage|pct)\b", s))
    s = re.sub(r"\\?%|\\text\{\s*percent\s*\}|\b(?:percent|percentage|pct)\b", "", s)
    s = re.sub(r"(?<=[\d})])\s*\\(?:approx|sim)\s*-?[\d.,\s]+(?:\\times\s*10\^\{?-?\d+\}?)?$", "", s)  # '.. \approx 0.577'
    s = re.sub(r"^\\text\{\s*(" + _WORD + r"\b[^{}]*)\}$", r"\1", s, flags=re.IGNORECASE)
    s = _list_words(_number_words(s))
    s = re.sub(r"\\text\{\s*(-?[\d.,/]+)\s*([a-zA-Z ]*)\}", r"\1 \2", s)  # \text{5 cm}
    # units and words after a number: '5 \text{ cm}', '12 dollars', '3\text{ units}^2', '3 hours ago'
    if "\\pi" in s:                                              # '4\pi \text{ cm}^2': a unit after pi, as after 4
        s = re.sub(r"(?<=\\pi)\s*\\text\{\s*[a-zA-Z][a-zA-Z\s.]*\}(\^\{?-?\d+\}?)?\s*$", "", s)   # not '2\pi m'
    s = re.sub(r"(?<=[\d}])\s*\\text\{\s*[a-zA-Z][a-zA-Z\s.]*\}(\^\{?-?\d+\}?)?\s*$", "", s)
    if "\\text{" in s and ("(" in s or "[" in s):                 # a unit inside a tuple: '(10^{3} \text{ kg}, 5)'
        s = re.sub(r"(?<=[\d}])\s*\\text\{\s*[a-zA-Z][a-zA-Z\s.]*\}(\^\{?-?\d+\}?)?(?=\s*[,)\]])", "", s)
    s = re.sub(r"(?<=[\d}])\s*(?:\b" + _UNITS + r"\b\s*)+(\^\{?-?\d+\}?)?\.?\s*$", "", s)
    s = re.sub(rf"^(-?\d[\d,]*(?:\.\d+)?)\s+(?!{_VALUE_CHANGING}\b)(?:[a-zA-Z]{{3,}}\.?\s*){{1,4}}$", r"\1", s)
    s = _GLUED_UNIT.sub(r"\1", s)                                       # '72Mb', '5kg', '60 mph'
    s = re.sub(r"\\AA\b", "", s)
    if re.fullmatch(r"\s*-?\d{1,3}(,\d{3})+(\.\d+)?\s*", s):            # 1,000 (a bare number only)
        s = s.replace(",", "")
    if re.fullmatch(r"\s*-?\d{1,3}( \d{3})+(\.\d+)?\s*", s):            # 1 000
        s = s.replace(" ", "")
    s = re.sub(r"^(-?\d+)\s+(\d+)\s*/\s*(\d+)$", r"\1\\frac{\2}{\3}", s)   # 2 1/3
    s = re.sub(r"(\d*)\.(\d*)\\overline\{(\d+)\}", _repeating, s)           # 0.\overline{3}
    s = s.replace("\\{", "\\lbrace ").replace("\\}", "\\rbrace ")
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)          # \frac12
    s = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\s*(\{[^{}]*\})\s*(\d)", r"\\frac\1{\2}", s)
    s = re.sub(r"\\sqrt\s*(\d)", r"\\sqrt{\1}", s)                     # \sqrt2
    return _unwrap(s.strip().rstrip(".\\").strip()), percent


# A unit abbreviation of two or more letters right after a number ('72Mb', '5kg', '3 km'): single letters ('2x',
# '5m') stay, as they may be variables.
_GLUED_UNIT = re.compile(r"^(-?\d[\d,]*(?:\.\d+)?)\s*(?:[kMGT]?[bB](?:ps)?|[kMGT]B|[kmcnµu]?m|[kmµ]?g|mL|ml|[kmµn]?s|"
                         r"hrs?|mins?|secs?|mph|kph|km/h|m/s|ft|yds?|lbs?|oz|gal|[kMG]?Hz|[kMG]?W|kWh|mAh|[kM]?J|kN|"
                         r"[kM]?Pa|atm|mol|[kMG]?eV|k?cal)(?<=[a-zA-Z]{2}|/[a-z])(?:\^\{?-?\d\}?)?\.?$")
_GROUPED = re.compile(r"\d+(?:,\d+)+")


def _thousands_in_arithmetic(s):
    """'76,000 + 53,200 = 129,200' -> '76000 + 53200 = 129200': in arithmetic every comma between digit groups of
    three is a thousands separator, when no other comma stands in the answer (a list '1,000, 2' is left alone)."""
    groups = _GROUPED.findall(s)
    if groups and all(re.fullmatch(r"\d{1,3}(?:,\d{3})+", g) for g in groups) and "," not in _GROUPED.sub("", s) \
            and re.search(r"[=+*/]|\\times|\\cdot|\d\s*-\s*\d", s):
        return _GROUPED.sub(lambda m: m.group(0).replace(",", ""), s)
    return s


_LEIBNIZ_FRAC = re.compile(r"\\frac\s*\{\s*(?:d|\\text\{d\})\s*(?:\^\s*\{?\s*(2)\s*\}?)?\s*(\\[a-zA-Z]+|[A-Za-z])"
                           r"\s*\}\s*\{\s*(?:d|\\text\{d\})\s*([a-z])\s*(?:\^\s*\{?\s*2\s*\}?)?\s*\}")
_LEIBNIZ_SLASH = re.compile(r"(?<![A-Za-z\\])d\s*(?:\^\s*\{?(2)\}?)?\s*(\\[a-zA-Z]+|[A-Za-z])\s*/\s*d\s*([a-z])"
                            r"(?:\^\s*\{?2\}?)?(?![A-Za-z])")


def _leibniz(s):
    """A derivative in Leibniz notation as the parser's derivative names: '\\frac{d\\omega}{dt}' and 'd\\omega/dt'
    are '\\dot{\\omega}', '\\frac{d^2x}{dt^2}' is '\\ddot{x}', '\\frac{dy}{dx}' is y'."""
    def name(m):
        order, f, t = m.group(1), m.group(2), m.group(3)
        return (f"\\{'dd' if order else 'd'}ot{{{f}}}" if t == "t" else f + ("''" if order else "'")) + " "
    return _LEIBNIZ_SLASH.sub(name, _LEIBNIZ_FRAC.sub(name, s))


def _without_condition(s):
    """'A = 1/(4 - w^2), for w^2 \\ne 4', 'A = ... \\text{ if } w \\ne 2', 'A = ..., w \\ne 2' -> 'A = ...': an
    inequality after a value, introduced by 'for', 'where', 'if', ... or by a comma after 'name = value'."""
    m = _CONDITION.search(s)
    if m and _INEQUALITY.search(s, m.end()) and not _GOES_ON.search(s, m.end()):
        head, cut = s[:m.start()], None
        while cut != head:                                      # drop what introduces it: ', ', '\text{ ', '\quad'
            cut, head = head, head.rstrip(" ,;")
            head = head[:-len("\\text{")] if head.endswith("\\text{") else head
            head = head[:-len("\\quad")] if head.endswith("\\quad") else head
        if head:
            return head
    head, comma, tail = s.rpartition(",")
    if comma and "=" in head and not _INEQUALITY.search(head) and re.search(r"\\neq?\b", tail) \
            and not _GOES_ON.search(tail):
        return head.rstrip()
    return s


def _unwrap(s):
    while s.startswith("{") and _closing_braces(s).get(0) == len(s) - 1:   # {x} is just x
        s = s[1:-1].strip()
    return s


# -----------------------------------------------------------------------------
# Tokens and the parser

_FUNCS = {"sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "sec": sp.sec, "csc": sp.csc, "cot": sp.cot,
          "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan, "sinh": sp.sinh, "cosh": sp.cosh,
          "tanh": sp.tanh, "ln": sp.log, "log": sp.log, "lg": lambda x: sp.log(x, 10), "exp": sp.exp}
_INVERSE = {"sin": sp.asin, "cos": sp.acos, "tan": sp.atan}            # \sin^{-1} x is arcsin x
_TOKEN = re.compile(r"""
    (?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+(?![a-zA-Z]))?|\.\d+)
  | (?P<cmd>\\[a-zA-Z]+|\\\\|(?:arc)?(?:sin|cos|tan)h?(?![a-zA-Z])|(?:sec|csc|cot|ln|log|exp|sqrt)(?![a-zA-Z])
          |(?<![a-zA-Z])pi(?![a-zA-Z]))
  | (?P<letter>[a-zA-Z])
  | (?P<sym>[-+*/^_()\[\]{},=<>!|&;:'])
  | (?P<space>\s+)
""", re.VERBOSE)
_GREEK = set("alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi rho "
             "varrho sigma varsigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma "
             "Upsilon Phi Psi Omega hbar ell".split())
_ACCENTS = {"dot", "ddot", "hat", "bar", "vec", "tilde", "overline", "widehat", "widetilde"}
_RELATIONS = {"=": "=", "<": "<", ">": ">", "\\le": "<=", "\\leq": "<=", "\\ge": ">=", "\\geq": ">=",
              "\\ne": "!=", "\\neq": "!=", "\\approx": "="}
_NOT_ATOMS = {"\\cup", "\\times", "\\cdot", "\\div", "\\pm", "\\mp", "\\\\", "\\end", "\\rbrace", "\\in",
              "\\rfloor", "\\rceil", *_RELATIONS}


def tokenize(s):
    if len(s) > MAX_ANSWER:
        raise Refuse("answer too long")
    out, i = [], 0
    while i < len(s):
        m = _TOKEN.match(s, i)
        if not m:
            raise Refuse(f"character {s[i]!r} is not allowed")
        if m.lastgroup != "space":
            v = m.group(0)
            out.append(("cmd", "\\" + v) if m.lastgroup == "cmd" and not v.startswith("\\") else (m.lastgroup, v))
        i = m.end()
        if len(out) > MAX_TOKENS:
            raise Refuse("too many tokens")
    return out


class _Parser:
    """Recursive descent over tokens. A value is a sympy expression or matrix, or a tagged tuple:
    ('eq', lhs, rhs), ('rel', members, ops) for inequalities and their chains, ('in', lhs, set),
    ('seq', open, items, close) for tuples and intervals, ('set', items), ('list', items) for bare
    'a, b', ('union', items), ('ratio', items), ('pm', a, b) for a ± b, ('text', words)."""

    def __init__(self, tokens):
        self.t, self.i, self.depth, self.in_abs = tokens, 0, 0, False
        self.mixed = False      # an integer literal directly followed by \frac: a mixed number

    def peek(self, k=0):
        return self.t[self.i + k] if self.i + k < len(self.t) else (None, None)

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

    def separated(self, sep, parse_item, tag):
        """item (sep item)* -> the item alone, or (tag, [items])."""
        xs = [parse_item()]
        while self.at(sep):
            self.take()
            xs.append(parse_item())
            if len(xs) > MAX_ITEMS:
                raise Refuse("too many items")
        return xs[0] if len(xs) == 1 else (tag, xs)

    def items(self):
        """'a; b' separates groups (solutions), 'a, b' items."""
        return self.separated(";", lambda: self.separated(",", self.relation, "list"), "list")

    def relation(self):
        members, ops = [self.ratio()], []
        while self.peek()[1] in _RELATIONS or self.at("\\in"):
            if self.at("\\in"):
                self.take()
                if ops:
                    raise Refuse("\\in inside a chain")
                return ("in", members[0], self.ratio())
            ops.append(_RELATIONS[self.take()])
            members.append(self.ratio())
            if len(ops) > 4:
                raise Refuse("chain too long")
        if not ops:
            return members[0]
        if all(op == "=" for op in ops):
            return _equation_chain(members)
        if "=" in ops or ("!=" in ops and len(ops) > 1):
            raise Refuse("a chain that mixes = or != with inequalities")
        return ("rel", members, ops)

    def ratio(self):
        return self.separated(":", self.union, "ratio")

    def union(self):
        return self.separated("\\cup", self.expr, "union")

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
        signed = [t if s == "+" else -t for s, t in terms if s in "+-"]
        base = signed[0] if signed else sp.Integer(0)
        for t in signed[1:]:
            base = base + t
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
                    if rhs == 0 or isinstance(rhs, sp.MatrixBase):
                        raise Refuse("division by zero or by a matrix")
                    value = value / rhs
                else:
                    value = value * rhs
            elif self.starts_atom():                # implicit product: 2x, 3\sqrt{2}, x(x+1)
                mixed = self.mixed
                rhs = self.power()
                _need_expr(value, rhs)
                value = _mixed_number(value, rhs) if mixed and getattr(rhs, "is_Rational", False) else value * rhs
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
            if self.at("{") and self.peek(1)[1] == "\\prime" and self.peek(2)[1] == "}":
                self.i += 3
                return _prime(base)                             # y^{\prime}
            if self.at("\\prime"):
                self.take()
                return _prime(base)
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
        while self.at("!", "'"):
            value = _factorial(value) if self.take() == "!" else _prime(value)
        return value

    def group(self, open_, close):
        self.take(open_)
        v = self.items()
        self.take(close)
        return v

    def arg(self):
        """A macro argument: {group} or one atom."""
        return self.nested(self.group, "{", "}") if self.at("{") else self.atom()

    def raw_arg(self):
        """A subscript or environment name as text: {tokens} or one token, spaces dropped."""
        return "".join(self.raw_group()) if self.at("{") else self.take()

    def name(self, base):
        """A letter or Greek letter, with its subscript ('x_1', 'm_{\\max}': the subscript is part of the name)."""
        if self.at("_"):
            self.take()
            base += "_" + self.raw_arg()
        return sp.Symbol(base)

    def atom(self):
        kind, v = self.peek()
        if kind == "num":
            self.take()
            if self.at("_"):                                        # 52_8: the numeral 52 in base 8
                self.take()
                base = self.arg()
                if not (v.isdigit() and getattr(base, "is_Integer", False) and 2 <= base <= 36):
                    raise Refuse("bad base")
                return ("based", v.lstrip("0") or "0", int(base))
            return _number(v)
        if kind == "letter":
            self.take()
            if self.at("_"):
                return self.name(v)
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
        if name in _GREEK:
            return self.name(name)
        if name in _ACCENTS:
            return self.name(f"{name}({self.raw_arg().lstrip(chr(92))})")
        if name == "angle":                     # \angle ABC: the angle's name
            return self.atom()
        if name == "binom":
            n, k = self.arg(), self.arg()
            _need_expr(n, k)
            if k.is_number and not (k.is_Integer and 0 <= k <= MAX_FACTORIAL) or n.is_number and k.is_number and \
                    k * math.log10(max(abs(complex(sp.N(n, 15))), 2)) > MAX_DIGITS:
                raise Refuse("binomial out of range")
            return sp.binomial(n, k)
        if name in ("lfloor", "lceil"):
            inner = self.nested(self.expr)
            self.take("\\rfloor" if name == "lfloor" else "\\rceil")
            _need_expr(inner)
            return (sp.floor if name == "lfloor" else sp.ceiling)(inner)
        if name in _FUNCS:
            base = None
            if name == "log" and self.at("_"):                      # \log_2 8
                self.take()
                base = self.arg()
            power = self.power_arg()
            x = self.nested(self.group, "(", ")") if self.at("(") else self.nested(self.function_arg)
            _need_expr(x, base if base is not None else x)
            if power == -1 and name in _INVERSE:
                return _INVERSE[name](x)
            value = sp.log(x, base) if base is not None else _FUNCS[name](x)
            return _pow(value, power) if power is not None else value
        if name == "begin":
            return self.matrix()
        raise Refuse(f"command \\{name} is not supported")

    def function_arg(self):
        """A bracketless function argument: {group}, or the numbers and letters that follow ('\\sin 2x')."""
        if self.at("{"):
            return self.arg()
        value = self.power()
        while self.peek()[0] in ("num", "letter"):
            rhs = self.power()
            _need_expr(value, rhs)
            value = value * rhs
        return value

    def power_arg(self):
        if not self.at("^"):
            return None
        self.take()
        return self.arg()

    def raw_group(self):
        """The tokens of a {...} group as text (for \\text, subscripts and environment names)."""
        self.take("{")
        words, depth = [], 0
        while depth or not self.at("}"):
            if self.peek()[0] is None or len(words) > 50:
                raise Refuse("unbalanced group")
            depth += self.at("{") - self.at("}")
            words.append(self.take())
        self.take("}")
        return words

    def matrix(self):
        env = "".join(self.raw_group())
        if env not in ("pmatrix", "bmatrix", "matrix", "vmatrix", "Bmatrix", "Vmatrix", "smallmatrix", "array"):
            raise Refuse(f"environment {env}")
        if env == "array" and self.at("{"):
            self.raw_group()                        # the column specification, e.g. {cc}
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
        return sp.ImmutableMatrix(rows)


def _need_expr(*xs):
    for x in xs:
        if isinstance(x, tuple):
            raise Refuse("arithmetic on a compound answer")


def _prime(x):
    if not isinstance(x, sp.Symbol):
        raise Refuse("a prime on something that is not a variable")
    return sp.Symbol(x.name + "'")


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
    if isinstance(base, sp.MatrixBase) or isinstance(exp, sp.MatrixBase):
        raise Refuse("power of a matrix")
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
    if isinstance(n, sp.MatrixBase) or (n.is_number and not (n.is_Integer and 0 <= n <= MAX_FACTORIAL)):
        raise Refuse("factorial out of range")
    return sp.factorial(n)


def _equation_chain(members):
    """'x = 3' -> ('eq', x, 3); 'x = 1 + 1 = 2' -> ('eq', x, 2); '3 + 4 = 7' -> 7; a chain whose
    members differ ('z = 3 + 3 = 2') is refused."""
    values = members[1:] if _is_name(members[0]) or _computes(members) else members
    rng = _Probes(0)
    if any(not _equal(v, values[-1], rng) for v in values[:-1]):
        if len(members) == 2 and not any(isinstance(m, tuple) for m in members):
            return ("eq", members[0], members[1])           # an equation in unknowns: 2x - y = 1
        raise Refuse("a chain of unequal members")
    if values is members or not _is_name(members[0]):
        return values[-1]
    return ("eq", members[0], values[-1])


def _computes(members):
    """'p + q = 12 + 7 = 19': a left side in unknowns, then numbers. The chain computes the left side, so
    its value is the last member (an equation of two members, 'x + y + z = 0', stays an equation)."""
    return len(members) > 2 and not isinstance(members[0], tuple) and bool(members[0].free_symbols) and all(
        not isinstance(m, tuple) and not isinstance(m, sp.MatrixBase) and m.is_number for m in members[1:])


_PROSE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}\s+[A-Za-z]{3,}\s+[A-Za-z]{3,}(?![A-Za-z])")


@functools.lru_cache(maxsize=4096)   # the same answer is parsed again and again: a gold once per sample of its
def parse(s):                        # group, a box once to see that it holds a value and once to compare it
    """Answer string -> (value, had_percent); value as in _Parser, ('choice', letter) or ('letters', text,
    product). Raises Refuse. The value is shared between calls (cached), so nothing may change it."""
    s, percent = normalize(s)
    if not s:
        raise Refuse("empty")
    bare = re.sub(r"\\text\{\s*([^{}]*?)\s*\}", r"\1", s)
    letter = re.fullmatch(r"\(\s*([A-J])\s*\)(?:\s.*)?|([A-J])(?:\s*[.:)](?:\s.*)?)?", bare, re.DOTALL)   # MMLU-Pro
    if letter and not _ANOTHER_OPTION.search(bare, letter.end(letter.lastindex) + 1):    # not '(A) or (B)'
        # 'B', '(B)', '\text{G: none}', '(G) none', 'G) x'
        return ("choice", letter.group(1) or letter.group(2)), False
    word = re.fullmatch(r"\\text\{([A-Za-z][A-Za-z ,'-]*)\}|([A-Za-z][A-Za-z ]*[A-Za-z])", s)
    if word:                                                       # 'Monday', '\text{no solution}'
        text = ("text", "".join((word.group(1) or word.group(2)).lower().split()))
        if word.group(2) and re.fullmatch(r"[A-Za-z]+|[A-Za-z](?: [A-Za-z])+", s):   # 'pq', 'p q': also a product
            return ("letters", text, sp.Mul(*(sp.Symbol(c) for c in s if c != " "))), False
        return text, False
    if _PROSE.search(s):
        raise Refuse("prose")                 # '12 distinct arithmetic sequences that ...': not a product of letters
    return _Parser(tokenize(s)).parse(), percent


# -----------------------------------------------------------------------------
# Equivalence


def is_equiv(pred, gold):
    """Are two final answers mathematically the same (the policies: docs/checker.md)."""
    if not isinstance(pred, str) or not isinstance(gold, str) or "\x00" in pred + gold:
        return False
    if len(pred) > MAX_ANSWER or len(gold) > MAX_ANSWER:
        return False
    if pred.strip() == gold.strip():
        return True
    options = _option(pred), _option(gold)
    if all(options) and not (options[0][1] and options[1][1]):      # '(d) $\theta^{-2}$' for the gold '(d)'
        return options[0][0] == options[1][0]
    try:
        a, pa = parse(pred)
        b, pb = parse(gold)
        rng = _Probes(0)                        # probing points are fixed: the same call, the same verdict
        if _equal(a, b, rng):
            return True
        renamed = _renamed_constant(a, b)       # 'y = Ce^{2x} + x' for 'y = x + ce^{2x}'
        if renamed is not None and _equal(renamed, b, rng):
            return True
        # percent: '50\%' may stand for 50 (done above) or for 50/100; a bare number is never rescaled.
        if pa and _kind(a) == "expr" and _equal(a / 100, b, rng):
            return True
        return bool(pb and _kind(b) == "expr" and _equal(a, b / 100, rng))
    except Exception:                 # Refuse, or one of sympy's many errors on odd input: no parse
        try:
            return re.sub(r"\s+", "", normalize(pred)[0]) == re.sub(r"\s+", "", normalize(gold)[0])
        except Exception:
            return False


# An option letter, bare ('D', '(d)', '\\text{(D)}') or with its content ('(d) \\theta^{-2}'); lower case only
# in parentheses ('d' alone is a variable). Content that names another option ('(A) or (B)') is a hedge, not one.
_OPTION = re.compile(r"\s*(?:\\text(?:bf)?\s*\{\s*)?(?:\(\s*([A-Ja-j])\s*\)|([A-J]))\s*\}?(?:(?<=\))\s+(\S.*?))?\s*",
                     re.DOTALL)
_ANOTHER_OPTION = re.compile(r"\(\s*[A-Ja-j]\s*\)|(?:^|\s)[A-J][.)](?:\s|$)|\bor\s+\(?[A-Ja-j]\b")


def _option(s):
    """(letter, whether content follows it) for an option answer, else None."""
    m = _OPTION.fullmatch(s)
    if not m or m.group(3) and _ANOTHER_OPTION.search(m.group(3)):
        return None
    return (m.group(1) or m.group(2)).upper(), bool(m.group(3))


def _kind(v):
    if isinstance(v, tuple):
        return v[0]
    return "matrix" if isinstance(v, sp.MatrixBase) else "expr"


def _is_name(v):
    """A variable, a product or quotient of variables (AB, NO/BO), a function value f(x), |name|, or a
    tuple or ratio of names: what may stand on the left of '=' to name the value on the right."""
    if isinstance(v, tuple):
        return v[0] in ("seq", "ratio") and all(_is_name(x) for x in (v[2] if v[0] == "seq" else v[1]))
    if isinstance(v, sp.Symbol):
        return True
    if isinstance(v, sp.Abs):
        return _is_name(v.args[0])
    if isinstance(v, sp.Pow):
        return v.exp == -1 and isinstance(v.base, sp.Symbol)
    return isinstance(v, sp.Mul) and all(_is_name(a) for a in v.args)


def _value(v):
    """What an answer states: the right side of 'name = value'."""
    return _value(v[2]) if _kind(v) == "eq" and _is_name(v[1]) else v


def _assignment(v):
    """'x = 1, y = 2' (distinct variables) as the tuple (1, 2), or None."""
    if _kind(v) == "list" and all(_kind(x) == "eq" and isinstance(x[1], sp.Symbol) for x in v[1]) \
            and len({x[1] for x in v[1]}) == len(v[1]) > 1:
        return ("seq", "(", [x[2] for x in v[1]], ")", )
    return None


def _real_set(v):
    """(variable, the set of reals it describes) for an interval, a union, an inequality or chain in one
    name, or 'name \\in set'; None for anything else. A set is a tuple of disjoint intervals (see _pieces):
    sympy's own sets and solveset took tens of milliseconds for 'x \\ne 3' or '-x > -1'."""
    k = _kind(v)
    if k == "seq" and len(v[2]) == 2 and all(_kind(x) == "expr" and x.is_number for x in v[2]):
        lo, hi = v[2]
        if not (lo.is_extended_real and hi.is_extended_real):
            return None
        return None, _pieces(lo, hi, v[1] == "[", v[3] == "]")
    if k == "union":
        parts = [_real_set(x) for x in v[1]]
        return (None, _union([p[1] for p in parts])) if all(p and p[0] is None for p in parts) else None
    if k == "in":
        inner = _real_set(v[2])
        return (v[1], inner[1]) if inner and inner[0] is None and _is_name(v[1]) else None
    if k != "rel":
        return None
    members, ops = v[1], v[2]
    if any(isinstance(m, tuple) for m in members):
        return None
    names = [m for m in members if not m.is_number]
    if len(names) != 1:
        return None
    name, result = names[0], _REALS
    if _is_name(name) and not isinstance(name, sp.Abs):       # a named quantity's range: bounds on the name
        for a, op, b in zip(members, ops, members[1:]):
            c, op = (b, op) if a is name else (a, _FLIP[op])
            if not c.is_extended_real:
                return None
            result = _intersection(result, _signs_true(((-sp.oo, c), (c, c), (c, sp.oo)), (-1, 0, 1), op))
        return name, result
    if len(name.free_symbols) != 1 or not _solvable(name, members):    # one variable inside: -x > -1, 1 <= |z|
        return None
    x = next(iter(name.free_symbols))
    for a, op, b in zip(members, ops, members[1:]):
        solved = _solved(sp.expand(a - b), op, x)
        if solved is None:
            return None
        result = _intersection(result, solved)
    return x, result


def _solvable(e, members):
    """A polynomial of degree <= 2 in one variable, possibly inside |...|, with small numbers: it is then solved
    quickly and exactly."""
    try:
        return _cheap(e) and sp.Poly(e.replace(sp.Abs, lambda u: u), *e.free_symbols).total_degree() <= 2 and all(
            abs(n) < 10 ** 50 for m in members for n in m.atoms(sp.Number) if n.is_finite)
    except sp.PolificationFailed:
        return False


# Sets of reals: a tuple of disjoint intervals (lo, hi, lo_closed, hi_closed), in order, none touching another.
_REALS = ((-sp.oo, sp.oo, False, False),)


def _cmp(a, b):
    """-1, 0 or 1 as the extended real a is below, equal to or above b (equal within 30 digits: endpoints are
    roots of small polynomials, which sympy may write in two forms)."""
    if a == b:
        return 0
    if a.is_Rational and b.is_Rational:                       # exact, and much faster than sympy's comparison
        d = a.p * b.q - b.p * a.q
        return (d > 0) - (d < 0)
    if a in (sp.oo, -sp.oo) or b in (sp.oo, -sp.oo):
        return -1 if a == -sp.oo or b == sp.oo else 1
    d = sp.N(a - b, 30)
    if not d.is_real:
        raise Refuse("a complex bound")
    return 0 if abs(d) < 1e-25 else (-1 if d < 0 else 1)


def _pieces(lo, hi, lo_closed, hi_closed):
    """The interval from lo to hi as a set (empty where lo > hi; an infinite end is open)."""
    lo_closed, hi_closed = lo_closed and lo != -sp.oo, hi_closed and hi != sp.oo
    c = _cmp(lo, hi)
    return ((lo, hi, lo_closed, hi_closed),) if c < 0 or c == 0 and lo_closed and hi_closed else ()


def _intersection(xs, ys):
    out, i, j = [], 0, 0
    while i < len(xs) and j < len(ys):
        a, b = xs[i], ys[j]
        c = _cmp(a[0], b[0])
        lo = (a[0], a[2]) if c > 0 else (b[0], b[2]) if c < 0 else (a[0], a[2] and b[2])
        c = _cmp(a[1], b[1])
        hi = (a[1], a[3]) if c < 0 else (b[1], b[3]) if c > 0 else (a[1], a[3] and b[3])
        out += _pieces(lo[0], hi[0], lo[1], hi[1])
        i, j = (i + 1, j) if c < 0 else (i, j + 1) if c > 0 else (i + 1, j + 1)
    return tuple(out)


def _union(sets):
    pieces = sorted((p for s in sets for p in s), key=functools.cmp_to_key(
        lambda a, b: _cmp(a[0], b[0]) or (b[2] - a[2])))
    out = []
    for p in pieces:
        if out:
            c = _cmp(p[0], out[-1][1])
            if c < 0 or c == 0 and (p[2] or out[-1][3]):          # overlapping or touching: one interval
                last, k = out[-1], _cmp(p[1], out[-1][1])
                out[-1] = (last[0], p[1] if k > 0 else last[1], last[2], p[3] if k > 0 else last[3] or k == 0 and p[3])
                continue
        out.append(p)
    return tuple(out)


def _same_set(xs, ys):
    return len(xs) == len(ys) and all(_cmp(a[0], b[0]) == 0 and _cmp(a[1], b[1]) == 0 and a[2:] == b[2:]
                                      for a, b in zip(xs, ys))


def _signs_true(regions, signs, op):
    """The union of the regions (lo, hi) of the line, in order, on which an expression of the given sign makes
    'expression op 0' true; a region (c, c) is the point c."""
    truth = {"<": lambda g: g < 0, "<=": lambda g: g <= 0, ">": lambda g: g > 0, ">=": lambda g: g >= 0,
             "!=": lambda g: g != 0}[op]
    return _union([_pieces(lo, hi, lo == hi, lo == hi) for (lo, hi), g in zip(regions, signs) if truth(g)])


def _solved(e, op, x):
    """{x real : e op 0} for e a polynomial of degree <= 2 in x, or one with |...| of such polynomials inside
    (split where each argument changes sign); None for anything else."""
    inner = [a.args[0] for a in e.atoms(sp.Abs)]
    if not inner:
        return _polynomial_solved(e, op, x)
    if any(u.has(sp.Abs) for u in inner) or len(inner) > 2:
        return None
    roots = [_real_roots(u, x) for u in inner]
    if any(r is None for r in roots):
        return None
    cuts = sorted({r for rs in roots for r in rs[0]}, key=functools.cmp_to_key(_cmp))
    bounds = [-sp.oo, *cuts, sp.oo]
    out = []
    for lo, hi in zip(bounds, bounds[1:]):                   # on [lo, hi] every argument keeps its sign
        t = (lo + hi) / 2 if lo != -sp.oo and hi != sp.oo else hi - 1 if hi != sp.oo else lo + 1 if lo != -sp.oo \
            else sp.S.Zero
        flat = e.replace(sp.Abs, lambda u: u if _cmp(u.subs(x, t), sp.S.Zero) >= 0 else -u)
        part = _polynomial_solved(sp.expand(flat), op, x)
        if part is None:
            return None
        out.append(_intersection(part, _pieces(lo, hi, True, True)))
    return _union(out)


def _real_roots(e, x):
    """(the real roots in order, a double root once; the coefficients) of a polynomial of degree <= 2 in x with
    real numbers for coefficients; None for anything else."""
    try:
        coeffs = sp.Poly(e, x).all_coeffs()
    except sp.PolificationFailed:
        return None
    if len(coeffs) > 3 or not all(c.is_number and c.is_extended_real for c in coeffs):
        return None
    if len(coeffs) == 3:
        a, b, c = coeffs
        d = b * b - 4 * a * c
        sign = _cmp(d, sp.S.Zero)
        if sign <= 0:
            return ([] if sign < 0 else [-b / (2 * a)]), coeffs
        roots = [(-b - sp.sqrt(d)) / (2 * a), (-b + sp.sqrt(d)) / (2 * a)]
        return sorted(roots, key=functools.cmp_to_key(_cmp)), coeffs
    return ([-coeffs[1] / coeffs[0]] if len(coeffs) == 2 else []), coeffs


def _polynomial_solved(e, op, x):
    """{x real : e op 0} for a polynomial e of degree <= 2, from its roots and the sign of its leading coefficient
    (no sampling, exact)."""
    found = _real_roots(e, x)
    if found is None:
        return None
    roots, coeffs = found
    lead = _cmp(coeffs[0], sp.S.Zero)
    degree = len(coeffs) - 1
    bounds = [-sp.oo, *roots, sp.oo]
    regions, signs = [], []
    for k, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        # the sign on an open stretch: the leading coefficient's on the right, flipped at each simple root
        flips = len(roots) - k if not (degree == 2 and len(roots) == 1) else 0
        regions.append((lo, hi))
        signs.append(lead * (-1) ** flips)
        if hi != sp.oo:
            regions.append((hi, hi))
            signs.append(0)
    return _signs_true(regions, signs, op)


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "!=": "!="}


def _numbers_equal(a, b, rng):
    if a == b:
        return True
    if a.is_Rational and b.is_Rational:
        return False                       # both exact numbers, already compared exactly
    if any(x.has(sp.oo, -sp.oo, sp.zoo, sp.nan) for x in (a, b)):
        return False
    if _cheap(a) and _cheap(b):
        d = sp.expand(a - b)
        if d == 0:
            return True
        if d.free_symbols and d.is_polynomial() and not d.atoms(sp.Function) and not d.has(sp.pi, sp.E, sp.I) \
                and all(n.is_Rational for n in d.atoms(sp.Number)):
            return False                   # a nonzero polynomial with rational coefficients: not an identity
    rng.budget -= 1
    if rng.budget < 0:
        raise Refuse("too many comparisons")
    syms = sorted(a.free_symbols | b.free_symbols, key=lambda x: x.name)
    for k in range(4 if syms else 1):      # probe at random points of both signs: simplify misses identities
        env = {x: (-1) ** (j + k) * sp.Rational(rng.randint(300, 2100), 1000) for j, x in enumerate(syms)}
        try:                               # evalf(subs=...): five times faster than subs, then N
            fa, fb = a.evalf(40, subs=env), b.evalf(40, subs=env)
            va, vb, diff = complex(fa), complex(fb), abs(complex(fa - fb))
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
    """Views of a value as an unordered collection: sets, bare lists and a ± b; a ± b inside a list or set
    stands for both of its values ('\\pm 1, \\pm 7' is 1, -1, 7, -7)."""
    items = [v] if v[0] == "pm" else v[1] if v[0] in ("list", "set") else None
    if items is None:
        return v
    return ("set", [y for x in items for y in ([x[1] + x[2], x[1] - x[2]] if _kind(x) == "pm" else [x])])


def _equal(a, b, rng):
    if "letters" in (_kind(a), _kind(b)):                  # 'pq': the word pq, or the product p*q
        a2, b2 = (x[1] if _kind(x) == "letters" else x for x in (a, b))
        if _kind(a2) == _kind(b2) == "text" and a2[1] == b2[1]:
            return True
        a, b = (x[2] if _kind(x) == "letters" else x for x in (a, b))
    ka, kb = _kind(a), _kind(b)
    if ka == kb == "expr":
        return _numbers_equal(a, b, rng)
    if ka == kb == "matrix":
        return a.shape == b.shape and all(_numbers_equal(x, y, rng) for x, y in zip(a, b))
    if ka == kb == "eq":
        if _is_name(a[1]) and _equal(a[1], b[1], rng):                # same name: compare the values
            return _equal(a[2], b[2], rng)
        return not isinstance(a[2], tuple) and not isinstance(b[2], tuple) and _equations_equal(a, b, rng)
    a2, b2 = _value(a), _value(b)                                      # 'x = 3' vs '3', '(p, q) = (3, 2)'
    if a2 is not a or b2 is not b:
        return _equal(a2, b2, rng)
    if {ka, kb} == {"list", "seq"}:                                    # 'x = 1, y = 2' vs '(1, 2)'
        t = _assignment(a if ka == "list" else b)
        if t:
            return _equal(t, b, rng) if ka == "list" else _equal(a, t, rng)
        seq, bare = (a, b) if ka == "seq" else (b, a)
        if seq[1] == "(" and seq[3] == ")":                            # '(1000, 10)' = '10^{3}, 10', in that order
            return len(seq[2]) == len(bare[1]) and all(_equal(x, y, rng) for x, y in zip(seq[2], bare[1]))
    if "list" in (ka, kb) and ka != kb and not {ka, kb} & {"set", "pm", "seq"}:
        once = _said_twice(a if ka == "list" else b, rng)              # '0.5 or 0.50' is one value
        if once is not None:
            return _equal(once, b, rng) if ka == "list" else _equal(a, once, rng)
    if ka == "seq" and kb in ("set", "list", "pm") and not _interval_like(a):
        a, ka = ("set", a[2]), "set"                                   # '[4, 1]' is a list, not an interval
    if kb == "seq" and ka in ("set", "list", "pm") and not _interval_like(b):
        b, kb = ("set", b[2]), "set"
    if {ka, kb} == {"based", "expr"}:                                  # '52' for '52_8': the base left implicit
        based, plain = (a, b) if ka == "based" else (b, a)
        return plain.is_Integer and str(plain) == based[1]
    sa, sb = (_real_set(x) if _kind(x) in ("rel", "in", "union", "seq") else None for x in (a, b))
    if sa and sb and (ka in ("rel", "in") or kb in ("rel", "in")):    # inequalities: the sets they describe
        return _same_set(sa[1], sb[1]) and (sa[0] is None or sb[0] is None or sa[0] == sb[0])
    a = _as_set(a) if ka in ("pm", "list", "set") else a
    b = _as_set(b) if kb in ("pm", "list", "set") else b
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        return False
    if ka in ("set", "union"):
        return _same_elements(a[1], b[1], rng)
    if ka == "seq":
        return (a[1], a[3], len(a[2])) == (b[1], b[3], len(b[2])) and all(
            _equal(x, y, rng) for x, y in zip(a[2], b[2]))
    if ka == "ratio":                               # up to a common factor; with a zero ('12:00'), as written
        if len(a[1]) != len(b[1]) or any(isinstance(x, tuple) for x in a[1] + b[1]):
            return False
        if any(x == 0 for x in a[1] + b[1]):
            return all(_numbers_equal(x, y, rng) for x, y in zip(a[1], b[1]))
        return all(_numbers_equal(x * b[1][0], y * a[1][0], rng) for x, y in zip(a[1], b[1]))
    if ka in ("text", "choice"):
        return a[1] == b[1]
    if ka == "based":
        return a[1:] == b[1:]
    if ka == "rel":                                                    # several variables: x + y < 1
        return a[2] == b[2] and all(_equal(x, y, rng) for x, y in zip(a[1], b[1]))
    return False


def _said_twice(v, rng):
    """The one value a list writes in several forms ('0.5 or 0.50', '1/2, 0.5'), or None if its items differ."""
    items = v[1]
    return items[0] if all(_equal(x, items[0], rng) for x in items[1:]) else None


def _interval_like(v):
    """Could a bracketed pair be an interval? '(1, 4)', '[1, 4]', '[a, b]' can; '[4, 1]' and '[1, 2, 3]' cannot."""
    if len(v[2]) != 2:
        return False
    lo, hi = v[2]
    try:
        return not (_kind(lo) == _kind(hi) == "expr" and lo.is_number and hi.is_number and bool(lo > hi))
    except TypeError:
        return True


def _same_elements(xs, ys, rng):
    """As sets: every element of one has an equal element in the other (repeats do not count). Equal
    written forms are matched first, so only the rest need a real comparison."""
    def covered(us, vs):
        return all(any(u == v for v in vs) or any(_equal(u, v, rng) for v in vs) for u in us)
    return covered(xs, ys) and covered(ys, xs)


def _equations_equal(a, b, rng):
    """Two equations are the same if (l1 - r1) is a nonzero constant multiple of (l2 - r2)."""
    _need_expr(a[1], a[2], b[1], b[2])
    f, g = a[1] - a[2], b[1] - b[2]
    if isinstance(f, sp.MatrixBase) or isinstance(g, sp.MatrixBase):
        return False
    syms = sorted(f.free_symbols | g.free_symbols, key=lambda x: x.name)
    if f.free_symbols != g.free_symbols or not syms:
        return False
    ratios = []
    for _ in range(4):
        env = {x: sp.Rational(rng.randint(300, 2100), 1000) for x in syms}
        gv = complex(g.evalf(30, subs=env))
        if abs(gv) < 1e-20:
            return False
        ratios.append(complex(f.evalf(30, subs=env)) / gv)
    if abs(ratios[0]) > 1e-12 and all(abs(r - ratios[0]) < 1e-10 * abs(ratios[0]) for r in ratios):
        return True
    return _scaled_by_parameters(f, g)


def _scaled_by_parameters(f, g):
    """A differential equation rearranged and multiplied by a nonzero expression free of the unknown function
    ('\\ddot{x} = -kx/m' against 'm\\ddot{x} + kx = 0'; 'd\\omega/dt = T/I - 2B\\omega/I' against
    'I d\\omega/dt + 2B\\omega = T') is the same equation. Only where there is a derivative (y', \\dot{x}) can the
    unknown be told from the parameters, and the factor may not hold the unknown: 'x\\ddot{x} + kx^2 = 0' is not
    '\\ddot{x} + kx = 0', and 'x^2 = x' is not 'x = 1'."""
    names = set()
    for x in f.free_symbols | g.free_symbols:
        m = re.fullmatch(r"d+ot\((.+)\)|(.+?)'+", x.name)
        if m:
            names |= {x.name, m.group(1) or m.group(2)}
    if not names or not (_cheap(f) and _cheap(g)):
        return False
    r = sp.cancel(f / g)
    return r != 0 and not r.has(sp.zoo, sp.nan, sp.oo) and not any(x.name in names for x in r.free_symbols)


# The usual names of one arbitrary constant (of integration, of an ODE's solution): C, c, C_1, c_0, K.
_CONSTANT_NAME = re.compile(r"[Cc](?:_\d)?|K")


def _renamed_constant(a, b):
    """a with its one arbitrary constant named as b's ('y = Ce^{2x} + x' for 'y = x + ce^{2x}', 'x^2 + C_1' for
    'x^2 + c'), or None: only where each answer has exactly one symbol the other lacks, both are usual names of a
    constant, and something else is a variable too ('C' alone is an option letter). Two constants against one
    ('C_1 e^x + C_2 e^{-x}' for 'c e^x + c e^{-x}') stay different."""
    sa, sb = _symbols(a), _symbols(b)
    if not sa or not sb:
        return None
    only_a, only_b = sa - sb, sb - sa
    if len(only_a) != 1 or len(only_b) != 1 or len(sa) < 2:
        return None
    za, zb = next(iter(only_a)), next(iter(only_b))
    if not (_CONSTANT_NAME.fullmatch(za.name) and _CONSTANT_NAME.fullmatch(zb.name)):
        return None
    return _substituted(a, za, zb)


def _symbols(v):
    """The free symbols of an expression, an equation, a tuple, a list or a set of them; None for other kinds."""
    k = _kind(v)
    if k == "expr":
        return v.free_symbols
    parts = {"eq": lambda: v[1:3], "pm": lambda: v[1:3], "seq": lambda: v[2], "list": lambda: v[1],
             "set": lambda: v[1]}.get(k)
    if parts is None:
        return None
    out = set()
    for x in parts():
        sx = _symbols(x)
        if sx is None:
            return None
        out |= sx
    return out


def _substituted(v, old, new):
    k = _kind(v)
    if k == "expr":
        return v.subs(old, new)
    if k in ("eq", "pm"):
        return (k, _substituted(v[1], old, new), _substituted(v[2], old, new))
    if k == "seq":
        return ("seq", v[1], [_substituted(x, old, new) for x in v[2]], v[3])
    return (k, [_substituted(x, old, new) for x in v[1]])
