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
    "embedding": "the model's own sentence embeddings (what its head reads): can a classifier tell new rows from reference rows?",
    "accuracy": "accuracy on the labelled new rows against the reference's",
}


def next_step(result: dict) -> str:
    """One sentence on what to do with this verdict."""
    if result["verdict"] != "drift":
        return "Nothing to do: no signal reached its threshold. Keep monitoring new data as it arrives."
    accuracy = result["signals"].get("accuracy")
    if accuracy is not None and accuracy["drifted"]:
        return (f"The model lost accuracy on this data ({accuracy['reference']:.3f} → {accuracy['current']:.3f}): "
                "add these labelled rows to the training data and retrain (`dvc repro`, or the nightly deployment), "
                "then promote the new model only if it scores better on them.")
    if accuracy is not None:
        return ("The data moved but accuracy on its labels held: retraining is optional. Watch the next batches, "
                "and add labelled rows like these to the training data when you next retrain.")
    queue = result.get("labelling_queue")
    if queue:
        return (f"The data moved and it has no labels, so whether the model still works on it is unknown: label the rows of "
                f"{queue['csv']} (the ones the model is least sure of, alternating with the ones least like its training "
                f"data; or import {queue['label_studio']} into Label Studio), then `ftlab monitor --input {queue['csv']}` "
                "measures the accuracy; `ftlab ingest` adds them to the training data, and retrain if it dropped.")
    return ("The data moved and it has no labels, so whether the model still works on it is unknown: label a sample "
            "(a few hundred rows, the least confident first: see `confidence` in `ftlab predict`'s output), then "
            "`ftlab monitor --input labelled.csv` measures the accuracy; add them to the training data and retrain "
            "if it dropped.")


def _rows(result: dict) -> str:
    rows = []
    for name, s in result["signals"].items():
        state = "<b style='color:#b00'>drift</b>" if s["drifted"] else "ok"
        rows.append(f"<tr><td><code>{html_text(name)}</code></td><td>{html_text(SIGNALS.get(name, ''))}</td>"
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
