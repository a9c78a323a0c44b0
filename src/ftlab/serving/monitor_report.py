"""The top of the monitor's HTML report: the verdict, every signal against its threshold, and
what to do next. Evidently's page below it has per-column plots but no overall verdict, and it
leaves out the embedding signal (the strongest one: its own metric computes a t-SNE for 80 s)."""

from __future__ import annotations

from ftlab.core.escape import html_text

SIGNALS = {
    "text_length": "text length in characters",
    "word_pieces": "the tokenizer's pieces per word: new words, names, slang and other scripts split differently",
    "non_letter_share": "share of characters that are not letters: figures, symbols, emoji",
    "confidence": "the model's top-class probability",
    "prediction": "the shares of the predicted classes",
    "predicted_score": "the distribution of the predicted scores",
    "labels_per_text": "how many labels the model predicts per text",
    "label_rates": "the shares of the predicted labels (each label's rate per text in monitor.json)",
    "entities_per_text": "how many entities the model finds per text",
    "entity_types": "the shares of the entity types found (each type's rate per text in monitor.json)",
    "answer_words": "the length of the generated answers in words",
    "embedding": "the model's own sentence embeddings (what its head reads): can a classifier tell new rows from reference rows?",
}


def describe(name: str, signal: dict) -> str:
    """What a signal measures: a text descriptor of a pair's column names that column; the task's
    primary metric on labels names that metric."""
    if "metric" in signal:
        return f"{signal['metric']} on the labelled new rows against the promoted run's test {signal['metric']}"
    column, _, kind = name.rpartition(".")
    return SIGNALS.get(kind, "") + (f" (column {column})" if column else "")


def _quality(result: dict) -> dict | None:
    """The primary-metric signal of a labelled batch, if any."""
    return next((s for s in result["signals"].values() if "metric" in s), None)


def next_step(result: dict) -> str:
    """One sentence on what to do with this verdict."""
    if result["verdict"] != "drift":
        return "Nothing to do: no signal reached its threshold. Keep monitoring new data as it arrives."
    quality, metric = _quality(result), result.get("metric", "accuracy")
    if quality is not None and quality["drifted"]:
        return (f"The model lost {metric} on this data ({quality['reference']:.3f} → {quality['current']:.3f}): "
                "add these labelled rows to the training data and retrain (`dvc repro`, or the nightly deployment), "
                "then promote the new model only if it scores better on them.")
    if quality is not None:
        return (f"The data moved but {metric} on its labels held: retraining is optional. Watch the next batches, "
                "and add labelled rows like these to the training data when you next retrain.")
    queue = result.get("labelling_queue")
    if queue:
        return (f"The data moved and it has no labels, so whether the model still works on it is unknown: label the rows of "
                f"{queue['csv']} (the ones the model is least sure of, alternating with the ones least like its training "
                f"data; or import {queue['label_studio']} into Label Studio), then `ftlab monitor --input {queue['csv']}` "
                f"measures the {metric}; `ftlab ingest` adds them to the training data, and retrain if it dropped.")
    unsure = ", the least confident first: see `confidence` in `ftlab predict`'s output" if "confidence" in result["signals"] else ""
    return ("The data moved and it has no labels, so whether the model still works on it is unknown: label a sample "
            f"(a few hundred rows{unsure}), then `ftlab monitor --input labelled.csv` measures the {metric}; add them "
            "to the training data and retrain if it dropped.")


def _rows(result: dict) -> str:
    rows = []
    for name, s in result["signals"].items():
        state = "<b style='color:#b00'>drift</b>" if s["drifted"] else "ok"
        rows.append(f"<tr><td><code>{html_text(name)}</code></td><td>{html_text(describe(name, s))}</td>"
                    f"<td>{html_text(s['method'])}</td><td>{s['score']:.3f}</td><td>{s['threshold']}</td>"
                    f"<td>{state}</td></tr>")
    return "\n".join(rows)


def _drift_count(result: dict) -> str:
    """How many signals drifted, and the rule that turns that into the verdict: "6 of 7 signals drifted", not
    "1 drifted signal(s)", which read as if one had when 1 was the threshold (monitor.min_drifted)."""
    drifted, rule = len(result["drifted"]), f"monitor.min_drifted={result['min_drifted']}"
    verb = "makes" if result["verdict"] == "drift" else "would make"
    return f"{drifted} of {len(result['signals'])} signals drifted; {rule} {verb} the verdict <i>drift</i>"


def summary(result: dict) -> str:
    """The verdict section as HTML (plain markup, no external assets: it renders offline)."""
    color = "#b00" if result["verdict"] == "drift" else "#070"
    files = ", ".join(html_text(f) for f in result["input"])
    return f"""<section style="font-family:sans-serif;margin:16px;padding:12px 16px;border:2px solid {color};border-radius:6px">
<h1 style="color:{color};margin-top:0">Monitor verdict: {html_text(result['verdict'])}</h1>
<p>{html_text('; '.join(result['reasons']))}</p>
<p>{result['rows']['current']} new rows ({files}) against {result['rows']['reference']} reference rows of
<code>{html_text(result['model'])}</code>; {_drift_count(result)}.</p>
<table style="border-collapse:collapse" border="1" cellpadding="4">
<tr><th>signal</th><th>what it measures</th><th>method</th><th>score</th><th>threshold</th><th>state</th></tr>
{_rows(result)}
</table>
<p><b>Next step.</b> {html_text(result['next_step'])}</p>
</section>
"""


def with_verdict(page: str, result: dict) -> str:
    """Evidently's HTML page with the verdict section first in its body."""
    at = page.find("<body")
    at = page.find(">", at) + 1 if at >= 0 else 0
    return page[:at] + summary(result) + page[at:]
