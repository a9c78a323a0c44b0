"""The promoted model in the DVC model registry: dvc.yaml's `artifacts:` entry and GTO tags on a real git repo."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import yaml

from tests.test_pipeline import ROOT, sh


def test_dvc_yaml_declares_the_promoted_model_and_gto_tags_its_versions(tmp_path):
    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    artifact = dvc_yaml["artifacts"][params["promote"]["name"]]
    assert artifact["type"] == "model"
    assert artifact["path"] == f"{params['promote']['dir']}/{params['promote']['name']}"
    assert dvc_yaml["stages"]["promote"]["outs"][0] == {"${promote.dir}/${promote.name}": {"persist": True}}

    repo = tmp_path / "repo"
    (repo / artifact["path"]).mkdir(parents=True)
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    (repo / artifact["path"] / "ftlab.json").write_text("{}")
    for cmd in (["init", "-q"], ["config", "user.email", "t@example.com"], ["config", "user.name", "t"],
                ["add", "-A"], ["commit", "-qm", "model v1"]):
        sh("git", *cmd, cwd=repo)
    gto = [sys.executable, "-m", "gto.cli"]
    sh(*gto, "register", "ftlab-model", "--version", "v1.0.0", cwd=repo)
    sh(*gto, "assign", "ftlab-model", "--version", "v1.0.0", "--stage", "prod", cwd=repo)
    assert set(sh("git", "tag", cwd=repo).stdout.split()) == {"ftlab-model@v1.0.0", "ftlab-model#prod#1"}
    shown = json.loads(sh(*gto, "show", "ftlab-model@latest", "--json", cwd=repo).stdout)
    assert shown[0]["version"] == "v1.0.0" and shown[0]["commit_hexsha"] == sh("git", "rev-parse", "HEAD", cwd=repo).stdout.strip()
    assert Path(repo / artifact["path"] / "ftlab.json").is_file()
