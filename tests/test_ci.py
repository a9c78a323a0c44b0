"""CI retraining: the workflows pass actionlint, and `ftlab ci` runs for real (git, DVC, a local DVC
remote, the tiny model) the way .github/workflows/retrain.yml runs it.

The "default branch" is a temporary git + DVC project whose first `ftlab ci --push` fills an empty
remote; each "pull request" is a fresh clone of it, with no DVC cache and no outputs, so whatever
it does not re-run must come from the remote.
"""

from __future__ import annotations

import json
import shutil
import sys
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from ftlab.ci import gate
from ftlab.learning.config import load_config
from tests.test_pipeline import ROOT, make_repo, sh, smoke_params

pytestmark = pytest.mark.pipeline


def ftlab_ci(repo: Path, *args: str, check: bool = True):
    return sh(sys.executable, "-m", "ftlab.cli", "ci", *args, cwd=repo, check=check)


def stages_run(output: str) -> int:
    return sum(line.startswith("Running stage '") for line in output.splitlines())


def words(text: str) -> str:
    """Text with its whitespace collapsed: the CLI wraps long messages to the terminal width."""
    return " ".join(text.split())


def pull_request(project: SimpleNamespace, name: str, changes: dict | None = None) -> Path:
    """A fresh clone of the default branch on a new branch, with ``changes`` (dotted keys) committed
    to params.yaml."""
    clone = project.root / name
    sh("git", "clone", "-q", str(project.origin), str(clone), cwd=project.root)
    sh("git", "config", "user.email", "t@example.com", cwd=clone)
    sh("git", "config", "user.name", "t", cwd=clone)
    sh("git", "checkout", "-qb", name, cwd=clone)
    if changes:
        params = yaml.safe_load((clone / "params.yaml").read_text())
        for key, value in changes.items():
            *parents, leaf = key.split(".")
            section = params
            for parent in parents:
                section = section.setdefault(parent, {})
            section[leaf] = value
        (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        sh("git", "commit", "-qam", f"{name}: change params", cwd=clone)
    return clone


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model) -> SimpleNamespace:
    """The default branch after its first CI retraining: reproduced, pushed, dvc.lock committed."""
    root = tmp_path_factory.mktemp("ci")
    params = smoke_params(tiny_model)
    params["methods"], params["method_params"] = ["lora"], {"lora": params["method_params"]["lora"]}  # quicker
    origin = make_repo(root / "origin", params)
    sh("git", "branch", "-M", "main", cwd=origin)
    store = root / "store"
    out = ftlab_ci(origin, "--summary", str(root / "first.md"), "--remote", str(store), "--push")
    sh("git", "add", "-A", cwd=origin)  # what the workflow's commit step does on the default branch
    sh("git", "commit", "-qm", "retrain: dvc.lock and reports", cwd=origin)
    return SimpleNamespace(root=root, origin=origin, store=store, first=out)


def test_workflows_pass_actionlint():
    binary = shutil.which("actionlint", path=sysconfig.get_path("scripts")) or shutil.which("actionlint")
    assert binary, "actionlint not found: install the test extra (pip install -e '.[test]')"
    assert shutil.which("shellcheck"), "shellcheck not found: actionlint would skip the run: scripts"
    workflows = sorted((ROOT / ".github/workflows").glob("*.yml"))
    assert [w.name for w in workflows] == ["ci.yml", "monitor.yml", "retrain.yml"]
    done = sh(binary, *map(str, workflows), cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_retrain_workflow_calls_ftlab_ci_on_the_right_events():
    workflow = yaml.safe_load((ROOT / ".github/workflows/retrain.yml").read_text())
    events = workflow[True]  # YAML 1.1 reads the key `on` as true
    for event in ("push", "pull_request"):
        assert set(events[event]["paths"]) == {"params.yaml", "dvc.yaml", "data/**.dvc", "src/**", "flows/**"}
    assert "workflow_dispatch" in events and events["schedule"][0]["cron"]
    # how a monitor starts it on drift, with the reason: monitor.yml's `gh workflow run -f reason=...`
    # (tests/test_workflows.py runs that), an external monitor's repository_dispatch
    assert "reason" in events["workflow_dispatch"]["inputs"] and events["repository_dispatch"]["types"] == ["data-drift"]
    job = workflow["jobs"]["retrain"]
    assert "vars.GPU_RUNNER_LABEL" in job["runs-on"]
    assert any("ftlab ci" in step.get("run", "") for step in job["steps"])


def test_first_run_fills_an_empty_remote(project):
    summary = (project.root / "first.md").read_text()
    assert "passed" in summary and "the base has no report to compare with" in summary
    assert "| Path" in summary  # dvc metrics diff's table: every metric is new
    assert any(p.is_file() for p in project.store.rglob("*"))
    assert "in sync" in sh("dvc", "status", "--cloud", cwd=project.origin).stdout


def test_pull_request_pulls_reproduces_and_diffs_against_the_base(project):
    clone = pull_request(project, "pr-lora-r", {"method_params.lora.r": 4})
    out = ftlab_ci(clone, "--base", "main", "--summary", str(project.root / "pr.md"), "--remote", str(project.store),
                   "--plots-dir", str(project.root / "plots"))
    # the clone had no outputs: what was not re-run (the data stages) was pulled from the remote
    assert 0 < stages_run(out.stdout + out.stderr) < stages_run(project.first.stdout + project.first.stderr)
    summary = (project.root / "pr.md").read_text()
    assert "## ftlab retraining: ✅ passed" in summary
    assert "| Path" in summary and "trainable_params" in summary  # lora's r changed its parameter count
    assert "drop of" in summary and "| lora |" in summary
    assert (project.root / "plots/index.html").is_file()
    assert "quality gate passed" in out.stdout


def test_gate_fails_when_the_pick_is_worse_than_the_base(project):
    # the default branch's committed report says its pick was 0.1 more accurate than this run's;
    # the pull request allows a drop of 0.05
    report = project.origin / "reports/comparison.json"
    comparison = json.loads(report.read_text())
    pick = comparison["recommendation"]["cheapest_within_tolerance"]
    pick["value"] += 0.1
    assert pick["value"] <= 1.0
    next(row for row in comparison["methods"] if row["method"] == pick["method"])["primary"] += 0.1
    report.write_text(json.dumps(comparison, indent=2))
    sh("git", "commit", "-qam", "a better model on the default branch", cwd=project.origin)
    try:
        clone = pull_request(project, "pr-worse", {"ci.max_metric_drop": 0.05})
        out = ftlab_ci(clone, "--base", "main", "--summary", str(project.root / "worse.md"),
                       "--remote", str(project.store), check=False)
    finally:
        sh("git", "reset", "-q", "--hard", "HEAD~1", cwd=project.origin)
    assert out.returncode == 1
    message = words(out.stdout)
    assert "quality gate failed" in message and "a drop of 0.1000" in message, out.stdout
    assert "accuracy:" in message and "more than ci.max_metric_drop 0.05" in message
    summary = (project.root / "worse.md").read_text()
    assert "## ftlab retraining: ❌ failed" in summary and "| -0.1000 |" in summary


def test_bad_data_fails_the_run_with_the_validation_message(project, toy_csv):
    import pandas as pd

    leaky = pd.read_csv(toy_csv)
    pd.concat([leaky, leaky.head(30)]).to_csv(project.root / "leaky.csv", index=False)  # duplicates, leakage
    clone = pull_request(project, "pr-leaky", {"data.source": str(project.root / "leaky.csv")})
    out = ftlab_ci(clone, "--base", "main", "--summary", str(project.root / "leaky.md"),
                   "--remote", str(project.store), check=False)
    assert out.returncode == 1
    assert "dvc repro" in words(out.stdout)
    summary = (project.root / "leaky.md").read_text()
    assert "failed" in summary and "leak" in summary.lower()


@pytest.mark.parametrize("fail_on, verdict, passes", [
    ("never", "overfit", True), ("overfit", "warn", True), ("overfit", "overfit", False), ("warn", "warn", False),
])
def test_gate_applies_checks_fail_on_to_every_method(fail_on, verdict, passes):
    cfg = load_config(None, {"checks.fail_on": fail_on})
    pick = {"method": "lora", "value": 0.8}
    current = {"recommendation": {"cheapest_within_tolerance": pick},
               "methods": [{"method": "lora", "primary": 0.8, "overfitting": "ok"},
                           {"method": "full", "primary": 0.82, "overfitting": verdict}]}
    result = gate(current, {"recommendation": {"cheapest_within_tolerance": pick}}, cfg)
    assert result.passed is passes
    assert all("accuracy" not in failure for failure in result.failures)


@pytest.mark.parametrize("fail_on_refused", [True, False])
def test_a_refused_promotion_fails_the_gate_unless_told_otherwise(fail_on_refused):
    cfg = load_config(None, {"ci.fail_on_refused": fail_on_refused})
    pick = {"method": "lora", "value": 0.8}
    current = {"recommendation": {"cheapest_within_tolerance": pick}, "methods": []}
    refused = {"promoted": False, "gate": "better", "reason": "not significantly better than the champion"}
    result = gate(current, None, cfg, refused)
    assert result.passed is not fail_on_refused and "refused: not significantly better" in result.lines[0]
    assert gate(current, None, cfg, {**refused, "promoted": True, "reason": "better"}).passed


def test_gate_reads_the_primary_metric_in_its_direction():
    """A regression report's Spearman falling by 0.1 fails a 0.05 gate; a base report from before
    tasks (its pick under "accuracy") is still read; the old key ci.max_accuracy_drop still works."""
    cfg = load_config(None, {"ci.max_accuracy_drop": 0.05})
    assert cfg.ci.max_metric_drop == 0.05
    metric = {"name": "spearman", "higher_is_better": True}
    current = {"primary_metric": metric, "methods": [],
               "recommendation": {"cheapest_within_tolerance": {"method": "full", "value": 0.78}}}
    base = {"primary_metric": metric, "recommendation": {"cheapest_within_tolerance": {"method": "full", "value": 0.88}}}
    result = gate(current, base, cfg)
    assert not result.passed and any("spearman" in f and "a drop of 0.1000" in f for f in result.failures)
    legacy = {"recommendation": {"cheapest_within_tolerance": {"method": "full", "accuracy": 0.80}}}
    assert gate({**current, "primary_metric": {"name": "accuracy", "higher_is_better": True}}, legacy, cfg).passed
