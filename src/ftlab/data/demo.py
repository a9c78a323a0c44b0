"""Built-in offline demo dataset: review-like sentences labelled negative/positive.

ftlab compares fine-tuning methods (full fine-tuning, LoRA, adapters, ...). Such a
comparison needs a default dataset that works offline, is deterministic, and is neither
trivial nor hopeless: a bag of words gets most of it, but negation ("not bad at all"),
contrast clauses ("..., but the battery dies by noon"), graded modifiers ("barely decent")
and late verdicts can only be read from word order, which is where methods differ.

Sentences are composed from templates x slot vocabularies, so there are millions of
distinct texts; labels are exactly balanced before `label_noise` flips a share of them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import NamedTuple

import pandas as pd

LABELS: tuple[str, str] = ("negative", "positive")
MAX_SAMPLES = 50_000  # far below what the grammar can produce, so re-drawing duplicates is cheap
NEG, POS = 0, 1


class Domain(NamedTuple):
    things: tuple[str, ...]  # singular nouns: "this {thing}"
    act: str  # "I regret {act} this phone"
    again: str  # "I would {again}"
    aspects: tuple[str, ...]  # "the {aspect} is ..."
    facts: tuple[tuple[str, ...], tuple[str, ...]]  # concrete clauses, indexed by polarity


DOMAINS = (
    Domain(
        ("phone", "laptop", "blender", "vacuum cleaner", "keyboard", "camera", "tablet",
         "coffee maker", "smartwatch", "pair of headphones"),
        "buying", "buy it again",
        ("battery life", "build quality", "screen", "sound quality", "design", "price",
         "customer support", "setup process"),
        (("the battery dies by noon", "the app keeps crashing", "it overheats within minutes",
          "the buttons feel cheap", "support never answered my emails", "it broke after a week",
          "the screen scratches far too easily", "the charger stopped working",
          "the manual is useless", "it is louder than a jet engine"),
         ("the battery lasts all day", "setup took two minutes", "it feels solid in the hand",
          "the sound is crisp and clear", "shipping was lightning fast", "it charges in no time",
          "the screen is gorgeous", "support solved my issue the same day",
          "it fits perfectly on my desk", "it runs almost silently")),
    ),
    Domain(
        ("movie", "film", "documentary", "sequel", "thriller", "comedy", "drama",
         "animated feature", "horror flick", "musical"),
        "watching", "watch it again",
        ("acting", "script", "pacing", "cinematography", "soundtrack", "ending", "casting",
         "dialogue"),
        (("the plot drags on and on", "the dialogue is wooden", "the ending makes no sense",
          "the jokes fall flat", "it runs an hour too long", "the lead looks bored",
          "the twist is obvious from the start", "the effects look cheap",
          "half the scenes go nowhere", "the characters are paper thin"),
         ("the acting is superb", "the soundtrack is haunting", "the plot keeps you guessing",
          "the ending lands perfectly", "the dialogue is sharp", "every scene looks stunning",
          "the lead gives a career-best performance", "the jokes land every time",
          "the story moved me to tears", "the pacing never lets up")),
    ),
    Domain(
        ("restaurant", "bistro", "diner", "sushi place", "pizzeria", "cafe", "steakhouse",
         "taco truck", "bakery", "noodle bar"),
        "eating at", "eat there again",
        ("food", "service", "atmosphere", "menu", "wine list", "dessert", "seating",
         "kitchen"),
        (("the soup arrived cold", "we waited an hour for our food", "the waiter was rude",
          "the bill was padded with extras", "the steak was overcooked", "the tables were sticky",
          "the music was deafening", "half the menu was unavailable",
          "the fries were soggy", "the portions were tiny"),
         ("the pasta was perfectly cooked", "the staff were friendly",
          "the desserts are heavenly", "we were seated right away", "the portions are generous",
          "the bread is baked fresh every morning", "the chef came out to say hello",
          "the prices are fair", "every dish was full of flavour", "the coffee is excellent")),
    ),
    Domain(
        ("hotel", "resort", "hostel", "inn", "guesthouse", "motel", "lodge", "boutique hotel",
         "beach resort", "apartment"),
        "staying at", "stay there again",
        ("room", "location", "breakfast", "pool", "front desk", "wifi", "bathroom", "view"),
        (("the room smelled of smoke", "the walls are paper thin", "the shower never got hot",
          "the wifi kept dropping", "housekeeping ignored our requests",
          "the carpet was stained", "check-in took over an hour", "the pool was closed all week",
          "the bed was rock hard", "street noise kept us awake"),
         ("the bed was very comfortable", "the staff went out of their way",
          "the view from our room was stunning", "breakfast was excellent every day",
          "check-in took a minute", "the room was spotless", "the pool was warm and quiet",
          "the location is perfect for sightseeing", "we slept like babies",
          "the concierge booked us a great dinner")),
    ),
)

# Adjectives of graded strength, indexed [polarity][0 = mild, 1 = strong].
ADJ = (
    (("disappointing", "mediocre", "poor", "underwhelming", "bland", "weak", "sloppy",
      "forgettable", "overpriced", "tiresome"),
     ("terrible", "awful", "dreadful", "horrible", "abysmal", "atrocious", "unbearable")),
    (("good", "decent", "solid", "pleasant", "nice", "enjoyable", "reliable", "impressive",
      "charming", "fun"),
     ("outstanding", "superb", "fantastic", "excellent", "wonderful", "brilliant", "amazing",
      "flawless")),
)
INTENS = (("", "", "really ", "very ", "pretty ", "quite "),  # for mild adjectives
          ("", "", "absolutely ", "truly ", "utterly ", "simply "))  # for strong ones
DOWNTONERS = ("somewhat", "slightly", "a bit", "fairly", "rather", "mostly")
FEEL = (("disappointed", "bored", "frustrated", "annoyed", "dissatisfied", "unimpressed"),
        ("impressed", "delighted", "satisfied", "pleased", "happy", "thrilled"))
VERBS = (("hated", "disliked", "was let down by", "gave up on", "can't stand"),
         ("loved", "adored", "really enjoyed", "was blown away by", "fell for"))
NEVER = (("never delivers", "does not live up to the hype"),
         ("never disappoints", "does not miss a beat"))


def _a(phrase: str) -> str:
    """Prefix the indefinite article: 'an outstanding', 'a good'."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _adj(rng: random.Random, pol: int, strength: int | None = None, bare: bool = False) -> str:
    """An adjective of polarity `pol`, optionally with a matching intensifier."""
    strength = rng.randrange(2) if strength is None else strength
    word = rng.choice(ADJ[pol][strength])
    return word if bare else rng.choice(INTENS[strength]) + word


def _subject(rng: random.Random, d: Domain) -> str:
    return f"{rng.choice(('this', 'the'))} {rng.choice(d.things)}"


def _clause(rng: random.Random, d: Domain, pol: int) -> str:
    """A clause of polarity `pol`: a concrete fact or 'the <aspect> is <adj>'."""
    if rng.random() < 0.5:
        return rng.choice(d.facts[pol])
    return f"the {rng.choice(d.aspects)} {rng.choice(('is', 'was'))} {_adj(rng, pol)}"


# Each construction returns a lower-case-initial sentence whose overall sentiment is `y`.
def _plain(rng: random.Random, d: Domain, y: int) -> str:
    s, thing, c = _subject(rng, d), rng.choice(d.things), _clause(rng, d, y)
    return rng.choice((
        f"{s} is {_adj(rng, y)}.",
        f"{c}.",
        f"{c}, and {_clause(rng, d, y)}.",
        f"I {rng.choice(VERBS[y])} {s}.",
        f"what {_a(_adj(rng, y, bare=True))} {thing}! {c[0].upper()}{c[1:]}.",
        f"{s} was {_adj(rng, y)}: {c}.",
        (f"I regret {d.act} {s}.", f"I'm glad I tried {s}; {c}.")[y],
    ))


def _negation(rng: random.Random, d: Domain, y: int) -> str:
    s, x, aspect = _subject(rng, d), 1 - y, rng.choice(d.aspects)
    return rng.choice((
        f"{s} is not {_adj(rng, x, bare=True)}{rng.choice(('', ' at all', ' in the slightest'))}.",
        f"I wouldn't call {s} {_adj(rng, x)}.",
        f"I was never {rng.choice(FEEL[x])} with the {aspect}.",
        f"there is nothing {_adj(rng, x, bare=True)} about the {aspect}.",
        f"not once did {s} leave me {rng.choice(FEEL[x])}.",
        f"I can't say I was {rng.choice(FEEL[x])} by {s}.",
        f"I couldn't have been more {rng.choice(FEEL[y])} with {s}.",
        f"I would {('not', 'not hesitate to')[y]} recommend {s}.",
        f"{s} {rng.choice(NEVER[y])}.",
    ))


def _contrast(rng: random.Random, d: Domain, y: int) -> str:
    a, b = _clause(rng, d, 1 - y), _clause(rng, d, y)  # b, the main clause, decides
    np_a = f"the {_adj(rng, 1 - y, bare=True)} {rng.choice(d.aspects)}"
    return rng.choice((
        f"{a}, but {b}.",
        f"{a}; however, {b}.",
        f"although {a}, {b}.",
        f"{b}, although {a}.",
        f"despite {np_a}, {b}.",
        f"{b} despite {np_a}.",
        f"while {a}, {b}.",
        f"sure, {a}, but {b}.",
        f"{a}, yet {b}.",
    ))


def _graded(rng: random.Random, d: Domain, y: int) -> str:
    t = rng.choice((_subject(rng, d), f"the {rng.choice(d.aspects)}"))
    return rng.choice((
        f"{t} is {rng.choice(DOWNTONERS)} {_adj(rng, y, 0, bare=True)}.",
        f"{t} is {rng.choice(('absolutely', 'truly', 'utterly'))} {_adj(rng, y, 1, bare=True)}.",
        f"{t} is far from {_adj(rng, 1 - y, bare=True)}.",
        f"{t} is {('barely', 'more than')[y]} {_adj(rng, POS, 0, bare=True)}.",
        f"{t} is {('less', 'more')[y]} {_adj(rng, POS, bare=True)} than I expected.",
        f"{t} is {('even more', 'less')[y]} {_adj(rng, NEG, bare=True)} than the reviews said.",
    ))


def _verdict(rng: random.Random, d: Domain, y: int) -> str:
    facts = [_clause(rng, d, 1 - y), _clause(rng, d, y)]
    rng.shuffle(facts)
    verdict = rng.choice((
        f"Overall, {_a(_adj(rng, y, bare=True))} {rng.choice(d.things)}.",
        f"All in all, I {('would not', 'would')[y]} {d.again}.",
        f"On balance, {('not', 'well')[y]} worth it.",
        f"In the end, I was {rng.choice(FEEL[y])}.",
        f"Verdict: {_adj(rng, y)}.",
    ))
    return f"{facts[0]} and {facts[1]}. {verdict}"


def _irony(rng: random.Random, d: Domain, y: int) -> str:
    s, c = _subject(rng, d), _clause(rng, d, y)
    return rng.choice((
        (f"oh great, {c}.", f"just what I needed: {c}.", f"I wanted to love {s}, but {c}.",
         f"five stars, if you enjoy it when {c}."),
        (f"I hate to admit it, but {c}.", f"I wanted to hate {s}, but {c}.",
         f"I expected the worst, yet {c}.", f"my only regret is not {d.act} {s} sooner."),
    )[y])


# Constructions and their shares; tuned so bag-of-words logistic regression scores ~0.75.
CONSTRUCTIONS: tuple[tuple[Callable[[random.Random, Domain, int], str], float], ...] = (
    (_plain, 0.40), (_negation, 0.17), (_contrast, 0.17), (_graded, 0.10), (_verdict, 0.10),
    (_irony, 0.06),
)


def _sentence(rng: random.Random, y: int) -> str:
    """One review sentence with sentiment `y`, capitalised."""
    fns, weights = zip(*CONSTRUCTIONS, strict=True)
    text = rng.choices(fns, weights)[0](rng, rng.choice(DOMAINS), y)
    return text[0].upper() + text[1:]


def generate_demo(n_samples: int = 3000, label_noise: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Generate the demo dataset deterministically from `seed`.

    Returns a DataFrame with columns `text` (str, all unique) and `label` (str, one of
    LABELS), `n_samples` rows. Texts do not depend on `label_noise`: exactly
    round(label_noise * n_samples) labels are flipped afterwards, with their own RNG.
    """
    if not 2 <= n_samples <= MAX_SAMPLES:
        raise ValueError(f"n_samples must be between 2 and {MAX_SAMPLES}, got {n_samples}")
    if not 0 <= label_noise < 0.5:
        raise ValueError(f"label_noise must be in [0, 0.5), got {label_noise}")

    rng = random.Random(seed)
    labels = [i % 2 for i in range(n_samples)]
    rng.shuffle(labels)
    texts: list[str] = []
    seen: set[str] = set()
    for y in labels:
        text = _sentence(rng, y)
        while text in seen:  # re-draw duplicates
            text = _sentence(rng, y)
        seen.add(text)
        texts.append(text)

    noise_rng = random.Random(f"ftlab-demo-label-noise-{seed}")
    for i in noise_rng.sample(range(n_samples), round(label_noise * n_samples)):
        labels[i] = 1 - labels[i]
    return pd.DataFrame({"text": texts, "label": [LABELS[y] for y in labels]})
