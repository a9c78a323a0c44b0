"""The pipeline's stages: one function each, files in, files out.

``dvc.yaml`` runs them through the ``ftlab`` CLI and the Prefect flow calls them as tasks; neither
driver holds stage logic of its own. Where each stage reads and writes follows from the config:

    prepare          -> <data.prepared_dir>/
    validate         -> <report.dir>/validation/        (stops the pipeline on bad data)
    train <method>   -> <train.output_dir>/<method>/    (training + test evaluation)
    check <method>   -> <report.dir>/checks/<method>/   (overfitting and drift verdict)
    compare          -> <report.dir>/comparison.{md,html,json} + PNG plots
"""

from __future__ import annotations

from pathlib import Path

from ftlab.config import Config


class StageFailed(RuntimeError):
    """A stage refused to pass its result on: invalid data, or a check verdict set to fail."""


def run_dir(cfg: Config, method: str) -> Path:
    return cfg.train.output_dir / method


def checks_dir(cfg: Config, method: str) -> Path:
    return cfg.report.dir / "checks" / method


def prepare(cfg: Config) -> Path:
    from ftlab.data import prepare as prepare_data

    return prepare_data(cfg, cfg.data.prepared_dir)


def validate(cfg: Config) -> dict:
    """Validate the prepared splits; raises ValidationFailed naming each failed expectation."""
    from ftlab.validation import ValidationFailed, raise_on_failure, validate as run_suite

    result = run_suite(cfg.data.prepared_dir, cfg.validation, cfg.report.dir / "validation")
    try:
        raise_on_failure(result)
    except ValidationFailed as e:
        raise StageFailed(str(e)) from None
    return result


def with_threads(cfg: Config, threads: int) -> Config:
    """``cfg`` with train.threads set, for runs that share the cores with concurrent runs."""
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"threads": threads})})


def train(cfg: Config, method: str, out: Path | None = None) -> dict:
    """Fine-tune one method on the prepared data."""
    from ftlab.train import train as run_train

    return run_train(cfg, method, out or run_dir(cfg, method), data_dir=cfg.data.prepared_dir)


def check(cfg: Config, method: str) -> dict:
    """Overfitting and drift checks of one finished run; raises ChecksFailed per checks.fail_on."""
    from ftlab.checks import ChecksFailed, check_run, enforce

    result = check_run(run_dir(cfg, method), cfg.checks, checks_dir(cfg, method))
    try:
        enforce(result, cfg.checks.fail_on)
    except ChecksFailed as e:
        raise StageFailed(str(e)) from None
    return result


def compare(cfg: Config) -> dict:
    """The comparison report over every method listed in the config."""
    from ftlab.report import compare as write_report

    checks = [checks_dir(cfg, m) if (checks_dir(cfg, m) / "checks.json").is_file() else None for m in cfg.methods]
    return write_report([run_dir(cfg, m) for m in cfg.methods], checks, cfg.report, cfg.report.dir)
