"""CI retraining (``ftlab ci``): pull, reproduce, gate against a base revision, summarise, push.

``.github/workflows/retrain.yml`` only calls this, so the retraining job runs the same in CI, in
the tests and on a laptop. It relies on DVC commands and on ``<report.dir>/comparison.json``
alone, never on stage names or run directories, which change as the pipeline grows.

The quality gate fails the run when ``dvc repro`` fails (bad data stops the validate stage; a
check verdict at ``checks.fail_on`` stops the check stage), when the recommended method's
primary metric (the task's: accuracy, Spearman, micro-F1, entity F1) is worse than the base
revision's recommended method by more than ``ci.max_metric_drop``, or
when the report lists a method whose overfitting verdict is at ``checks.fail_on``, or when promote's
champion/challenger gate refused the new pick (``ci.fail_on_refused``): the old model keeps serving.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftlab.analysis.checks import fails
from ftlab.core.escape import html_text, md_code, md_fence, md_no_html, md_text
from ftlab.core.io import write_text
from ftlab.learning.config import Config, load_config

log = logging.getLogger(__name__)

REMOTE_NAME = "ci"  # written to .dvc/config.local, so the committed config stays as it is
TAIL_LINES = 40  # of a failed `dvc repro`, quoted in the summary: the failing stage's message
MAX_DIFF_CHARS = 50_000  # GitHub rejects comments over 65,536 characters
EPSILON = 1e-9  # accuracies are ratios of counts: a drop exactly at the threshold passes


class CiFailed(RuntimeError):
    """A retraining step failed; the message names the step and quotes its output."""


@dataclass
class Gate:
    """The gate's verdict: one markdown line per rule, and the reasons it failed (empty: passed)."""

    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def check(self, ok: bool, text: str) -> None:
        self.lines.append(f"- {'✅' if ok else '❌'} {md_text(text)}")  # reasons quote labels and paths
        if not ok:
            self.failures.append(text)


def _run(*cmd: str) -> str:
    """Run a quick command, returning its stdout; raise CiFailed quoting its output when it fails."""
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise CiFailed(f"`{' '.join(cmd)}` failed ({done.returncode}):\n{(done.stdout + done.stderr).strip()}")
    return done.stdout


def _stream(*cmd: str) -> tuple[int, str]:
    """Run a long command with its output passed through live (the CI log), returning its tail."""
    log.info("running %s", " ".join(cmd))
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stderr.write(line)
            tail.append(line)
    return proc.returncode, "".join(tail)


def _base_report(base: str, report: Path) -> dict[str, Any] | None:
    """The base revision's comparison.json, or None when it has none (the first run, say)."""
    done = subprocess.run(["git", "show", f"{base}:./{report.as_posix()}"], check=False, capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else None


def gate(current: dict[str, Any], base: dict[str, Any] | None, cfg: Config, promotion: dict | None = None) -> Gate:
    """Apply the quality gate (module docstring) to this run's and the base revision's reports, and
    to promote's decision (``promotion.json``) when there is one."""
    result = Gate()
    if promotion is not None:
        promoted = promotion["promoted"]
        result.check(promoted or not cfg.ci.fail_on_refused,
                     f"promotion ({promotion['gate']} gate): {'promoted' if promoted else 'refused'}: {promotion['reason']}"
                     + ("" if promoted or cfg.ci.fail_on_refused else " (ci.fail_on_refused is false)"))
    pick = current["recommendation"]["cheapest_within_tolerance"]
    base_pick = ((base or {}).get("recommendation") or {}).get("cheapest_within_tolerance") or {}
    allowed = cfg.ci.max_metric_drop
    metric = current.get("primary_metric", {"name": "accuracy", "higher_is_better": True})
    name, sign = metric["name"], 1.0 if metric["higher_is_better"] else -1.0
    base_metric = ((base or {}).get("primary_metric") or {}).get("name", "accuracy")
    value, base_value = _value(pick), _value(base_pick)
    if value is None or base_value is None or base_metric != name:
        why = "the base has no report to compare with" if base_value is None else f"the base's metric is {base_metric}"
        result.check(True, f"{name}: {pick['method']} {value}; {why}")
    else:
        drop = sign * (base_value - value)
        ok = drop <= allowed + EPSILON
        result.check(ok, f"{name}: {pick['method']} {value:.4f} vs the base's {base_pick['method']} "
                         f"{base_value:.4f}: a drop of {drop:.4f} "
                         f"({'within' if ok else 'more than'} ci.max_metric_drop {allowed:g})")
    flagged = [f"{r['method']} ({r['overfitting']})" for r in current["methods"] if fails(r.get("overfitting"), cfg.checks.fail_on)]
    verdicts = ", ".join(f"{r['method']} {r.get('overfitting') or 'not checked'}" for r in current["methods"])
    result.check(not flagged, f"overfitting checks (fail on: {cfg.checks.fail_on}): "
                 + (f"failed for {', '.join(flagged)}" if flagged else verdicts))
    return result


def _value(pick: dict[str, Any]) -> float | None:
    """A recommendation's metric value; reports written before tasks called it "accuracy"."""
    return pick.get("value", pick.get("accuracy"))


def _metric_table(current: dict[str, Any], base: dict[str, Any] | None) -> list[str]:
    """Each method's primary metric here and at the base: the numbers a reviewer looks at first."""
    name = current.get("primary_metric", {}).get("name", "accuracy")
    before = {r["method"]: r.get("primary", r.get("accuracy")) for r in (base or {}).get("methods", [])}
    lines = [f"| method | base {name} | this run | change | overfitting |", "|---|---|---|---|---|"]
    for r in current["methods"]:
        old = before.get(r["method"])
        old_text, change = ("–", "new") if old is None else (f"{old:.4f}", f"{r['primary'] - old:+.4f}")
        lines.append(f"| {md_text(r['method'])} | {old_text} | {r['primary']:.4f} | {change} | {r.get('overfitting') or '–'} |")
    return lines


def summary(base: str, sha: str, result: Gate, current: dict[str, Any], base_report: dict[str, Any] | None,
            metrics_diff: str, plots_dir: Path | None) -> str:
    """The markdown for the job summary and the pull-request comment, after a reproduced run."""
    if len(metrics_diff) > MAX_DIFF_CHARS:
        metrics_diff = metrics_diff[:MAX_DIFF_CHARS].rsplit("\n", 1)[0] + "\n\n(cut: run `dvc metrics diff` for the rest)"
    lines = [f"## ftlab retraining: {'✅ passed' if result.passed else '❌ failed'}", "", f"Compared with {md_code(base)} ({md_text(sha)}).", "",
             "### Quality gate", "", *result.lines, "",
             "### Recommendation", "", "> " + md_text(current["recommendation"]["text"]), "",
             f"### {current.get('primary_metric', {}).get('label', 'accuracy').capitalize()}", "",
             *_metric_table(current, base_report), "",
             f"<details><summary>Every changed metric (<code>dvc metrics diff {html_text(base)}</code>)</summary>", "",
             md_no_html(metrics_diff.strip()) or "No metric changed.", "", "</details>"]
    if plots_dir is not None:
        lines += ["", f"Plots against the base (`dvc plots diff`): `{plots_dir.name}/index.html`."]
    return "\n".join(lines) + "\n"


def failed_summary(base: str, sha: str, repro_tail: str) -> str:
    """The markdown when `dvc repro` failed: the end of its output names the stage and the problem."""
    return "\n".join(["## ftlab retraining: ❌ failed", "", f"Compared with {md_code(base)} ({md_text(sha)}).", "",
                      "`dvc repro` failed (bad data, a failing check, or an error); the end of its output:", "",
                      md_fence(repro_tail)]) + "\n"


def retrain(base: str, summary_path: Path, remote: str | None = None, pull: bool = True, push: bool = False,
            plots_dir: Path | None = None) -> Gate:
    """Run the retraining job in the current DVC project and write ``summary_path`` once the
    pipeline has run (passed or failed); push the outputs only when the gate passed."""
    cfg = load_config(Path("params.yaml"))
    sha = _run("git", "rev-parse", "--short", "--verify", f"{base}^{{commit}}").strip()  # a bad --base fails first
    if remote:
        _run("dvc", "remote", "add", "--local", "--default", "--force", REMOTE_NAME, remote)
        log.info("DVC remote %r set from --remote", REMOTE_NAME)
    if pull:
        # --allow-missing: a remote that lacks some outputs (empty on the first run) is not an
        # error; `dvc repro` rebuilds whatever the pull could not restore.
        code, tail = _stream("dvc", "pull", "--allow-missing")
        if code != 0:
            raise CiFailed(f"`dvc pull` failed ({code}):\n{tail}")
    code, tail = _stream("dvc", "repro")
    if code != 0:
        write_text(summary_path, failed_summary(base, sha, tail))
        raise CiFailed(f"`dvc repro` failed ({code}); its output ends in {summary_path}")
    report = cfg.report.dir / "comparison.json"
    current = json.loads(report.read_text(encoding="utf-8"))
    base_report = _base_report(base, report)
    promotion_file = cfg.report.dir / "promotion.json"
    promotion = json.loads(promotion_file.read_text()) if promotion_file.is_file() else None
    result = gate(current, base_report, cfg, promotion)
    diff = _run("dvc", "metrics", "diff", base, "--md")
    if plots_dir is not None:
        _run("dvc", "plots", "diff", base, "--out", str(plots_dir))
    write_text(summary_path, summary(base, sha, result, current, base_report, diff, plots_dir))
    log.info("summary written to %s", summary_path)
    if push and result.passed:
        code, tail = _stream("dvc", "push")
        if code != 0:
            raise CiFailed(f"`dvc push` failed ({code}):\n{tail}")
    elif push:
        log.warning("the quality gate failed: not pushing the outputs")
    return result
