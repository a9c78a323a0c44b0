"""The operations commands, which put a promoted model to work and keep the project honest: ingest,
predict, monitor, merge an adapter, and the CI retraining gate. No dvc.yaml stage runs them."""

from __future__ import annotations

from pathlib import Path

import typer

from ftlab.cli.common import PARAMS, SET, app, fail, run_stage, say, stage_config

MODEL = typer.Option(None, "--model", metavar="DIR",
                     help="the promoted model directory (default: <promote.dir>/<promote.name> of the params: models/ftlab-model)")
TEXT_COLUMN = typer.Option(None, "--text-column", metavar="NAME",
                           help="column of texts (default: the model's training text column; column 1 with --no-header)")
HEADER = typer.Option(True, "--header/--no-header",
                      help="CSV/TSV: the first line names the columns (default); --no-header: it is a row, and the "
                           "columns are numbered 1, 2, ...")


@app.command()
def ingest(
    file: Path = typer.Argument(..., metavar="FILE", help="CSV, TSV, JSONL, JSON or Parquet file of new rows in the training columns "
                               "(a CoNLL file for token classification)"),
    name: str | None = typer.Option(None, "--name", metavar="NAME", help="the batch's name, its slice in reports (default: the file's name)"),
    new_labels: bool = typer.Option(False, "--new-labels", help="accept labels that are not the classes, label-list labels or tags trained on "
                                    "as new ones (default: refuse them, naming them and their lines)"),
    duplicates: str = typer.Option("refuse", "--duplicates", metavar="refuse|drop|keep",
                                   help="rows the source or an earlier batch already holds (same content, whatever the bytes): "
                                        "refuse the file (default), drop them, or keep them (they count twice)"),
    unlabelled_rows: str = typer.Option("refuse", "--unlabelled-rows", metavar="refuse|drop",
                                        help="rows without a label in a labelled file: refuse the file (default) or drop them"),
    params: Path | None = PARAMS,
    set_: list[str] | None = SET,
) -> None:
    """Keep a batch of new rows under data.batches_dir: with labels it joins training (and the test set) at the next run; without, it is for monitoring."""
    from ftlab.data.ingest import Answers
    from ftlab.data.prepare import DataError

    try:
        answers = Answers(new_labels, duplicates, unlabelled_rows)
    except DataError as e:
        fail(typer.BadParameter(str(e)))
    info = run_stage("ingest", params, set_, file, name, answers)
    use = ("joins training at the next `dvc repro` / `ftlab pipeline`" if info["labelled"]
           else f"has no labels: monitor it with `ftlab monitor --input {info['dir']}/rows.parquet`")
    say(f"ingested {info['rows']} rows from {file} as batch {info['name']!r} ({info['dir']}); it {use}")
    for note in info["notes"]:
        say(f"  {note}")
    if "dvc_file" in info:
        say(f"versioned by DVC: commit {info['dvc_file']} (git add {info['dvc_file']} data/batches/.gitignore)")


@app.command()
def rollback(
    to: int | None = typer.Option(None, "--to", metavar="N", help="the version to serve (default: the one before the serving one)"),
    params: Path | None = PARAMS,
    set_: list[str] | None = SET,
) -> None:
    """Serve an earlier promoted version again, byte for byte, from <promote.dir>/history/<promote.name>/."""
    meta = run_stage("rollback", params, set_, to)  # RollbackError (nothing to roll back to) exits 1
    say(f"serving version {meta['version']} again ({meta['method']} s{meta['seed']}-n{meta['train_size']})")
    if Path("dvc.lock").is_file():
        say("dvc.lock still records the version promote wrote: `dvc commit promote` records the rollback; "
            "a `dvc repro` that re-runs promote gates the pipeline's pick against this version")


@app.command()
def predict(
    input_: Path = typer.Option(..., "--input", "-i", metavar="FILE", help="CSV, TSV, JSONL or Parquet file to score"),
    output: Path | None = typer.Option(None, "--output", "-o", metavar="FILE",
                                       help="where to write rows + predictions (default: <input>.predictions.<ext>)"),
    model: Path | None = MODEL,
    text_column: str | None = TEXT_COLUMN,
    text_pair_column: str | None = typer.Option(
        None, "--text-pair-column", metavar="NAME",
        help="a pair model's column of second texts (default: its training one; column 2 with --no-header)"),
    header: bool = HEADER,
    batch_size: int = typer.Option(128, min=1, metavar="N", help="texts per forward pass"),
    precision: str = typer.Option("auto", metavar="auto|bf16|fp32", help="bf16 autocast; auto: where the hardware has it natively"),
    max_new_tokens: int | None = typer.Option(
        None, "--max-new-tokens", min=1, metavar="N",
        help="a causal LM's answer length limit in tokens (default: its run's task.max_new_tokens)"),
    params: Path | None = PARAMS,
    set_: list[str] | None = SET,
) -> None:
    """Score a file with a promoted model: each input row + prediction (a class, with its confidence and
    per-class probabilities; a regressor's score; a causal LM's greedy answer)."""
    from ftlab.data.prepare import DataError
    from ftlab.serving.predict import predict_file
    from ftlab.serving.promote import model_dir

    if precision not in ("auto", "bf16", "fp32"):
        fail(typer.BadParameter(f"--precision must be auto, bf16 or fp32, got {precision!r}"))
    cfg = stage_config(params, set_, model)
    output = output or input_.with_name(f"{input_.stem}.predictions{input_.suffix}")
    try:
        result = predict_file(model_dir(cfg), input_, output, text_column, batch_size, precision, header=header,
                              text_pair_column=text_pair_column, max_new_tokens=max_new_tokens)
    except (DataError, ValueError, OSError) as e:
        fail(e)
    say(f"scored {result['rows']} rows -> {output}")


@app.command()
def monitor(
    input_: Path | None = typer.Option(None, "--input", "-i", metavar="PATH",
                                       help="new data: a file or a directory of files (default: monitor.input)"),
    model: Path | None = MODEL,
    text_column: str | None = TEXT_COLUMN,
    text_pair_column: str | None = typer.Option(
        None, "--text-pair-column", metavar="NAME",
        help="a pair model's column of second texts (default: its training one; column 2 with --no-header)"),
    label_column: str | None = typer.Option(None, "--label-column", metavar="NAME",
                                            help="column of labels as training reads them (classes also as ids 0..K-1); "
                                                 "with it, the task's primary metric is monitored too (default: the "
                                                 "model's training label column if present; the last column with --no-header)"),
    header: bool = HEADER,
    out_dir: Path | None = typer.Option(None, "--out-dir", metavar="DIR",
                                        help="where monitor.html and monitor.json go (default: monitor.out_dir)"),
    params: Path | None = PARAMS,
    set_: list[str] | None = SET,
    fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="exit 3 on the verdict drift (for CI and cron)"),
) -> None:
    """Drift of new data against the promoted model's training reference: HTML report + JSON verdict."""
    from ftlab.serving.monitor import InputColumns

    settings = {"monitor.out_dir": str(out_dir)} if out_dir is not None else None
    columns = InputColumns(text_column, label_column, header, text_pair_column)
    result = run_stage("monitor", params, set_, input_, columns, model=model, settings=settings)
    say((result["verdict"], "bold"), ": " + "; ".join(result["reasons"]))
    if result.get("next_step"):
        say(f"next step: {result['next_step']}")
    if result.get("report"):
        say(f"report: {result['report']}")
    if fail_on_drift and result["verdict"] == "drift":
        raise typer.Exit(3)


@app.command()
def merge(run: Path = typer.Argument(..., help="run directory of a LoRA/DoRA/IA3 run"), out: Path = typer.Option(..., help="where to write the merged model")) -> None:
    """Merge a run's adapter into the base model and save the full model (safetensors)."""
    from ftlab.analysis.runs import merge_adapter

    try:
        merge_adapter(run, out)
    except (ValueError, OSError) as e:
        fail(e)
    say(f"merged model written to {out}")


@app.command()
def ci(
    summary: Path = typer.Option(..., help="where to write the markdown summary (job summary, PR comment)"),
    base: str = typer.Option("HEAD", help="git revision to diff and gate against: a pull request's base branch"),
    remote: str | None = typer.Option(None, envvar="DVC_REMOTE_URL", help="DVC remote URL (default: the project's default remote)"),
    pull: bool = typer.Option(True, "--pull/--no-pull", help="dvc pull before reproducing"),
    push: bool = typer.Option(False, "--push/--no-push", help="dvc push the outputs when the gate passes"),
    plots_dir: Path | None = typer.Option(None, help="write the `dvc plots diff` HTML against --base here"),
) -> None:
    """CI retraining: dvc pull, dvc repro, quality gate against --base, summary, dvc push."""
    from ftlab.ci import CiFailed, retrain
    from ftlab.core.params import ConfigError

    try:
        result = retrain(base, summary, remote=remote, pull=pull, push=push, plots_dir=plots_dir)
    except (CiFailed, ConfigError, OSError) as e:
        fail(e)
    if not result.passed:
        fail(CiFailed("quality gate failed: " + "; ".join(result.failures)))
    say(f"quality gate passed; summary in {summary}")
