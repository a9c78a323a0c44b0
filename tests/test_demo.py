import re

import pandas as pd
import pytest

from ftlab.data.demo import LABELS, MAX_SAMPLES, generate_demo


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return generate_demo(3000, label_noise=0.05, seed=0)


def test_deterministic():
    pd.testing.assert_frame_equal(generate_demo(500, 0.1, seed=7), generate_demo(500, 0.1, seed=7))


def test_different_seed_differs():
    a, b = generate_demo(500, seed=0), generate_demo(500, seed=1)
    assert not a.equals(b)
    assert len(set(a.text) & set(b.text)) < 50


def test_shape_columns_labels(df):
    assert len(df) == 3000
    assert list(df.columns) == ["text", "label"]
    assert set(df.label) == set(LABELS)
    assert all(isinstance(t, str) for t in df.text)


@pytest.mark.parametrize("n", [2, 3000, 20_000])
def test_texts_unique(n):
    texts = generate_demo(n, seed=3).text
    assert len(texts) == n
    assert texts.is_unique


def test_label_noise_exact():
    clean = generate_demo(1000, label_noise=0.0, seed=5)
    noisy = generate_demo(1000, label_noise=0.2, seed=5)
    assert clean.text.equals(noisy.text)
    assert (clean.label != noisy.label).sum() == round(0.2 * 1000)
    odd = generate_demo(333, label_noise=0.05, seed=5)
    assert (generate_demo(333, 0.0, seed=5).label != odd.label).sum() == round(0.05 * 333)


def test_balanced(df):
    shares = df.label.value_counts(normalize=True)
    assert shares.between(0.4, 0.6).all()
    assert generate_demo(1000, 0.0, seed=2).label.value_counts().tolist() == [500, 500]


def test_text_format(df):
    words = df.text.str.split().str.len()
    assert words.min() >= 4 and words.max() <= 40
    assert df.text.str[0].str.isupper().all()
    assert df.text.str[-1].isin(list(".!?")).all()


def test_constructions_present(df):
    text = df.text.str.lower()

    def share(pattern: str) -> float:
        return text.str.contains(pattern).mean()

    assert share(r"\bnot\b|n't\b|\bnever\b|\bnothing\b") > 0.1  # negation
    assert share(r" but |\balthough\b|\bhowever\b|\bdespite\b|\byet\b|\bwhile\b") > 0.1  # contrast
    assert share(r"\b(?:barely|somewhat|slightly|far from|absolutely|utterly)\b") > 0.05  # graded
    assert share(r"\b(?:overall|all in all|on balance|in the end|verdict)\b") > 0.05  # verdict
    assert text.str.contains(" but ").any() and text.str.contains(r"\bnot \w+ at all\b").any()


def test_contrast_decided_by_main_clause():
    # Without noise, "X, but <fact>" takes the label of the fact after "but".
    df = generate_demo(3000, 0.0, seed=0)
    m = df.text.str.extract(r", but (.+)\.$")[0].dropna()
    assert len(m) > 20
    plain = dict(zip(df.text.str.lower(), df.label, strict=True))  # clauses that also occur on their own
    checked = [(plain[tail.lower() + "."], df.label[i]) for i, tail in m.items()
               if tail.lower() + "." in plain]
    assert len(checked) >= 5
    assert all(alone == whole for alone, whole in checked)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_samples": 1}, "n_samples"),
        ({"n_samples": MAX_SAMPLES + 1}, "n_samples"),
        ({"label_noise": -0.1}, "label_noise"),
        ({"label_noise": 0.5}, "label_noise"),
        ({"label_noise": float("nan")}, "label_noise"),
    ],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=re.escape(name)):
        generate_demo(**kwargs)
