"""Synthetic arithmetic word problems (source ``toy``) and digit-free contrast texts for the toy model.

The toy model (:mod:`yfpo_core.models.toy`) is trained on these problems, so they are the one problem set
on which a minutes-to-train model is good enough to make math neurons worth looking for. The problems
are GSM8K-shaped (question, a short worked solution, ``#### N``) so every scorer and every attribution
method runs on them unchanged.

Names, objects, containers, places and verbs are drawn from a few dozen each, independently of the
numbers: the only way to get the answer right is to read the numbers, not to remember a sentence.

Kinds (``meta["kind"]``; ``meta["numbers"]`` holds the operands in reading order):

* ``add``: ``a + b`` with ``a, b`` in 1..20;
* ``sub``: ``a - b`` with ``a`` in 2..30 and ``b <= a`` (results are never negative);
* ``mul``: ``a * b`` with factors 2..9;
* ``two_step``: ``a + b - c`` or ``a - b + c`` (``meta["ops"]`` says which), solved in two lines, e.g.
  ``"12+7=19. 19-3=16. #### 16"``; every intermediate result is non-negative.

The ranges (module constants ``ADD_A`` ...) are small on purpose: with two-digit operands up to 99 the
two-layer toy model needs several times longer to learn the arithmetic (measured: about 0.4 held-out
exact match after the same training).

:func:`generate_toy_nonmath` writes short question/answer facts with no digits in the same alphabet
and ``Q: ...\\nA: ...\\n`` format, the contrast set against which math neurons are located.

Everything is a pure function of ``seed`` (a private :class:`random.Random`, never the global RNG), and
the first ``k`` items of ``n`` are the same for every ``n >= k``.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence

from yfpo_core.problems.base import ANSWER_MARKER, Problem

SOURCE_NAME = "toy"
TOY_KINDS: tuple[str, ...] = ("add", "sub", "mul", "two_step")

# Every character a toy problem, solution, prompt or contrast text can contain. The toy tokenizer has
# exactly one token per character here (plus special tokens), so changing it invalidates trained weights.
TOY_ALPHABET: str = string.ascii_lowercase + string.ascii_uppercase + string.digits + " .,?'#+-*=:\n"

# Operand ranges (inclusive): small enough that a two-layer character model learns the arithmetic in a
# few CPU minutes. Results are never negative and stay below 100.
ADD_A, ADD_B = (1, 20), (1, 20)
SUB_A = (2, 30)  # b is drawn from 1..a
MUL_FACTOR = (2, 9)
TWO_STEP_GAIN_A, TWO_STEP_GAIN_B = (2, 20), (1, 15)  # then c from 1..a+b
TWO_STEP_LOSS_A, TWO_STEP_LOSS_C = (5, 30), (1, 15)  # b from 1..a

# (name, subject pronoun) — both genders so the pronoun must agree with the name.
NAMES: tuple[tuple[str, str], ...] = (
    ("Ann", "She"), ("Ben", "He"), ("Cara", "She"), ("Dan", "He"), ("Eva", "She"), ("Finn", "He"),
    ("Gina", "She"), ("Hugo", "He"), ("Iris", "She"), ("Jack", "He"), ("Kate", "She"), ("Leo", "He"),
    ("Mia", "She"), ("Nick", "He"), ("Olga", "She"), ("Paul", "He"), ("Rosa", "She"), ("Sam", "He"),
    ("Tina", "She"), ("Omar", "He"), ("Uma", "She"), ("Victor", "He"), ("Wendy", "She"), ("Yusuf", "He"),
    ("Zoe", "She"), ("Carlos", "He"), ("Lena", "She"), ("Raj", "He"), ("Nora", "She"), ("Tom", "He"),
    ("Priya", "She"), ("Ivan", "He"), ("Julia", "She"), ("Kenji", "He"), ("Maria", "She"), ("Pedro", "He"),
)

OBJECTS: tuple[str, ...] = (
    "pens", "apples", "stickers", "marbles", "books", "cookies", "shells", "cards", "coins", "pencils",
    "stamps", "candies", "balloons", "oranges", "toys", "buttons", "flowers", "cupcakes", "rocks", "beads",
    "eggs", "muffins", "socks", "erasers", "crayons", "leaves", "plums", "ribbons", "tickets", "blocks",
    "bottles", "lemons", "pears", "puzzles", "feathers", "magnets",
)

# (singular, plural)
CONTAINERS: tuple[tuple[str, str], ...] = (
    ("box", "boxes"), ("bag", "bags"), ("basket", "baskets"), ("jar", "jars"), ("crate", "crates"),
    ("pack", "packs"), ("tray", "trays"), ("bowl", "bowls"), ("bucket", "buckets"), ("shelf", "shelves"),
    ("drawer", "drawers"), ("tin", "tins"), ("cup", "cups"), ("pouch", "pouches"), ("case", "cases"),
    ("carton", "cartons"), ("sack", "sacks"), ("row", "rows"),
)

PLACES: tuple[str, ...] = (
    "box", "bag", "basket", "jar", "drawer", "garden", "classroom", "kitchen", "shop", "room", "car",
    "closet", "park", "library", "yard", "shed", "attic", "tent",
)

# Verbs for "gets b more" and "loses b", third person present.
GAIN_VERBS: tuple[str, ...] = (
    "buys", "finds", "gets", "wins", "collects", "receives", "picks up", "makes", "is given", "borrows",
    "earns", "brings", "adds", "orders", "gathers", "trades for",
)
LOSS_VERBS: tuple[str, ...] = (
    "gives away", "loses", "sells", "drops", "donates", "lends out", "throws away", "uses", "breaks",
    "hides", "trades away", "gives", "sends", "mails", "returns", "shares",
)

# Contrast-text vocabulary (no digits anywhere).
COLORS: tuple[str, ...] = ("red", "blue", "green", "yellow", "black", "white", "pink", "brown", "purple",
                           "orange", "gray", "gold")
ITEMS: tuple[str, ...] = ("hat", "bike", "coat", "scarf", "cup", "kite", "bag", "car", "door", "pen", "ball",
                          "shirt", "boat", "lamp", "chair", "umbrella")
CITIES: tuple[str, ...] = ("Paris", "Lima", "Oslo", "Cairo", "Tokyo", "Rome", "Dublin", "Quito", "Seoul",
                           "Madrid", "Nairobi", "Berlin", "Boston", "Delhi", "Vienna", "Lagos")
FOODS: tuple[str, ...] = ("soup", "rice", "pizza", "bread", "pasta", "salad", "cheese", "beans", "noodles",
                          "tacos", "curry", "fish", "honey", "pie")
ANIMALS: tuple[str, ...] = ("dog", "cat", "rabbit", "parrot", "turtle", "hamster", "goat", "horse", "fish",
                            "frog", "snake", "duck", "pony", "lizard")
INSTRUMENTS: tuple[str, ...] = ("piano", "violin", "guitar", "drums", "flute", "cello", "trumpet", "harp",
                                "banjo", "tuba")


def _solution(lines: Sequence[str], result: int) -> str:
    return " ".join(f"{line}." for line in lines) + f" {ANSWER_MARKER} {result}"


def _make_add(rng: random.Random) -> tuple[str, list[str], int, dict]:
    name, pronoun = rng.choice(NAMES)
    obj = rng.choice(OBJECTS)
    a, b = rng.randint(*ADD_A), rng.randint(*ADD_B)
    template = rng.randrange(3)
    if template == 0:
        question = (f"{name} has {a} {obj}. {pronoun} {rng.choice(GAIN_VERBS)} {b} more. "
                    f"How many {obj} does {name} have now?")
    elif template == 1:
        question = (f"{name} has {a} {obj}. {pronoun} {rng.choice(GAIN_VERBS)} {b} more. "
                    f"How many {obj} does {name} have in total?")
    else:
        place = rng.choice(PLACES)
        question = (f"There are {a} {obj} in the {place}. {name} puts in {b} more. "
                    f"How many {obj} are in the {place} now?")
    return question, [f"{a}+{b}={a + b}"], a + b, {"numbers": [a, b], "template": template}


def _make_sub(rng: random.Random) -> tuple[str, list[str], int, dict]:
    name, pronoun = rng.choice(NAMES)
    obj = rng.choice(OBJECTS)
    a = rng.randint(*SUB_A)
    b = rng.randint(1, a)
    template = rng.randrange(3)
    if template == 0:
        question = (f"{name} has {a} {obj}. {pronoun} {rng.choice(LOSS_VERBS)} {b} of them. "
                    f"How many {obj} does {name} have left?")
    elif template == 1:
        question = (f"{name} has {a} {obj}. {pronoun} {rng.choice(LOSS_VERBS)} {b} of them. "
                    f"How many {obj} does {name} have now?")
    else:
        place = rng.choice(PLACES)
        question = (f"There are {a} {obj} in the {place}. {name} takes out {b} of them. "
                    f"How many {obj} are left?")
    return question, [f"{a}-{b}={a - b}"], a - b, {"numbers": [a, b], "template": template}


def _make_mul(rng: random.Random) -> tuple[str, list[str], int, dict]:
    name, _ = rng.choice(NAMES)
    obj = rng.choice(OBJECTS)
    one, many = rng.choice(CONTAINERS)
    a, b = rng.randint(*MUL_FACTOR), rng.randint(*MUL_FACTOR)
    template = rng.randrange(2)
    if template == 0:
        question = (f"{name} has {a} {many}. Each {one} holds {b} {obj}. "
                    f"How many {obj} does {name} have?")
    else:
        question = (f"{name} fills {a} {many} with {b} {obj} each. "
                    f"How many {obj} are there in total?")
    return question, [f"{a}*{b}={a * b}"], a * b, {"numbers": [a, b], "template": template}


def _make_two_step(rng: random.Random) -> tuple[str, list[str], int, dict]:
    name, pronoun = rng.choice(NAMES)
    obj = rng.choice(OBJECTS)
    gain, loss = rng.choice(GAIN_VERBS), rng.choice(LOSS_VERBS)
    if rng.random() < 0.5:  # gain, then lose
        a, b = rng.randint(*TWO_STEP_GAIN_A), rng.randint(*TWO_STEP_GAIN_B)
        c = rng.randint(1, a + b)
        mid, result = a + b, a + b - c
        question = (f"{name} has {a} {obj}. {pronoun} {gain} {b} more and then {loss} {c}. "
                    f"How many {obj} does {name} have now?")
        lines, ops = [f"{a}+{b}={mid}", f"{mid}-{c}={result}"], "+-"
    else:  # lose, then gain
        a = rng.randint(*TWO_STEP_LOSS_A)
        b = rng.randint(1, a)
        c = rng.randint(*TWO_STEP_LOSS_C)
        mid, result = a - b, a - b + c
        question = (f"{name} has {a} {obj}. {pronoun} {loss} {b} of them and then {gain} {c} more. "
                    f"How many {obj} does {name} have now?")
        lines, ops = [f"{a}-{b}={mid}", f"{mid}+{c}={result}"], "-+"
    return question, lines, result, {"numbers": [a, b, c], "ops": ops}


_MAKERS = {"add": _make_add, "sub": _make_sub, "mul": _make_mul, "two_step": _make_two_step}


def generate_toy_problems(n: int, seed: int = 0, kinds: Sequence[str] | None = None) -> list[Problem]:
    """``n`` toy problems, a pure function of ``(seed, kinds)``.

    Kinds alternate in the order given (``add, sub, mul, two_step, add, ...``), so any ``n`` that is a
    multiple of the number of kinds is exactly balanced, which keeps per-kind accuracies comparable.

    Args:
        n: How many problems.
        seed: Seed of the private RNG; ids embed it (``"toy/s{seed}-{i:05d}"``), so problems generated
            with different seeds never share an id.
        kinds: A subset of :data:`TOY_KINDS`; all of them by default.
    """
    kinds = tuple(kinds) if kinds is not None else TOY_KINDS
    unknown = [k for k in kinds if k not in _MAKERS]
    if unknown or not kinds:
        raise ValueError(f"unknown toy problem kinds {unknown}; choose from {list(TOY_KINDS)}")
    rng = random.Random(seed)
    problems = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        question, lines, result, meta = _MAKERS[kind](rng)
        problems.append(Problem(id=f"{SOURCE_NAME}/s{seed}-{i:05d}", question=question,
                                solution=_solution(lines, result), answer=str(result), source=SOURCE_NAME,
                                meta={"kind": kind, **meta}))
    return problems


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _nonmath_fact(rng: random.Random) -> tuple[str, str]:
    name, pronoun = rng.choice(NAMES)
    possessive = "her" if pronoun == "She" else "his"
    template = rng.randrange(6)
    if template == 0:
        color, item = rng.choice(COLORS), rng.choice(ITEMS)
        return f"{name} has {_article(color)} {color} {item}. What color is {name}'s {item}?", color
    if template == 1:
        city = rng.choice(CITIES)
        return f"{name} lives in {city} with {possessive} family. Where does {name} live?", city
    if template == 2:
        food = rng.choice(FOODS)
        return f"{name} likes to eat {food} for lunch. What does {name} like to eat?", food
    if template == 3:
        animal = rng.choice(ANIMALS)
        return f"{name} has a pet {animal} at home. What pet does {name} have?", f"a {animal}"
    if template == 4:
        instrument = rng.choice(INSTRUMENTS)
        return f"{name} plays the {instrument} every day. What does {name} play?", f"the {instrument}"
    friend, _ = rng.choice([n for n in NAMES if n[0] != name])
    return f"{name} and {friend} are good friends. Who is {name}'s friend?", friend


def generate_toy_nonmath(n: int, seed: int = 0) -> list[str]:
    """``n`` digit-free question/answer texts, each ``"Q: <fact and question>\\nA: <answer>\\n"``.

    They share the toy problems' alphabet, names and format but involve no numbers or arithmetic, so
    comparing activations on them with activations on :func:`generate_toy_problems` isolates what is
    specific to math. Answers are copied from the question, which gives the model a non-math skill
    (retrieval) to build features for.
    """
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        question, answer = _nonmath_fact(rng)
        texts.append(f"Q: {question}\nA: {answer}\n")
    return texts


__all__ = ["SOURCE_NAME", "TOY_ALPHABET", "TOY_KINDS", "generate_toy_nonmath", "generate_toy_problems"]
