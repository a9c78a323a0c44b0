"""Orchestration overhead: the default pipeline's wall time split into training and everything else.

    python benchmarks/overhead.py [--keep-report docs/example]

In a fresh clone of this repository (committed state): `dvc repro` on the default params (MiniLM,
demo data), then a second, no-op `dvc repro`; then, in a second fresh clone, the Prefect flow
(`ftlab pipeline`). Training time is the sum of the runs' `train_seconds`; everything else
(process start-up, imports, model loads, data preparation, validation, test evaluation, checks,
report, DVC hashing, the Prefect server) is overhead (the temporary Prefect server's own CPU time is
measured too); for `dvc repro` it is broken down by stage
(a train stage's share is its wall time minus its training). `--keep-report` copies the report of
the DVC run, as an example.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def flow_with_server_cpu(cwd: Path) -> tuple[float, float]:
    """Wall time of `ftlab pipeline`, and the CPU seconds its temporary Prefect server (a uvicorn
    subprocess) used, sampled twice a second from the process tree."""
    import psutil

    start = time.perf_counter()
    server: dict[int, float] = {}
    with subprocess.Popen(["ftlab", "pipeline", "--params", "params.yaml"], cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as proc:
        parent = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                for child in parent.children(recursive=True):
                    if "uvicorn" in " ".join(child.cmdline()):
                        times = child.cpu_times()
                        server[child.pid] = times.user + times.system
            except psutil.Error:
                pass  # a process ended between listing and reading it
            time.sleep(0.5)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, "ftlab pipeline")
    return time.perf_counter() - start, sum(server.values())


def repro_by_stage(cwd: Path) -> tuple[float, dict[str, float]]:
    """Wall time of `dvc repro` and of each stage it ran (from one "Running stage" line to the next)."""
    marks: list[tuple[str, float]] = []
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(["dvc", "repro"], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        for line in proc.stdout or []:
            if line.startswith("Running stage '"):
                marks.append((line.split("'")[1], time.perf_counter()))
    total = time.perf_counter() - start
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, "dvc repro")
    ends = [t for _, t in marks[1:]] + [start + total]
    return total, {name: end - begin for (name, begin), end in zip(marks, ends, strict=True)}


def breakdown(project: Path, stages: dict[str, float], total: float) -> dict[str, float]:
    """Where the time that is not training went: per kind of stage, and train stages minus training."""
    out: dict[str, float] = {}
    for name, seconds in stages.items():
        kind = name.split("@")[0]
        if kind == "train":  # train@<method>-<seed>-<size>
            method, seed, size = name.split("@")[1].rsplit("-", 2)
            metrics = json.loads((project / f"runs/{method}/s{seed}-n{size}/metrics.json").read_text())
            kind, seconds = "train_stages_outside_training", seconds - metrics["cost"]["train_seconds"]
        out[kind] = out.get(kind, 0.0) + seconds
    out["dvc_startup_and_end"] = total - sum(stages.values())
    return {k: round(v, 1) for k, v in out.items()}


def training_seconds(project: Path) -> float:
    return sum(json.loads(p.read_text())["cost"]["train_seconds"] for p in (project / "runs").glob("*/*/metrics.json"))


def device() -> str:
    """The CPU the numbers were taken on: model, cores, and whether it has native bf16."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "unknown CPU")
    return f"{model}, {os.cpu_count()} cores, {'native' if 'avx512_bf16' in info else 'no native'} bf16"


def fresh_clone(where: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], check=True)
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep-report", type=Path, help="copy the DVC run's reports/ here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dvc_project = fresh_clone(Path(tmp) / "dvc")
        total, stages = repro_by_stage(dvc_project)
        training = training_seconds(dvc_project)
        overhead_by_stage = breakdown(dvc_project, stages, total)
        noop = timed(["dvc", "repro"], dvc_project)
        if args.keep_report:
            shutil.rmtree(args.keep_report, ignore_errors=True)
            shutil.copytree(dvc_project / "reports", args.keep_report,
                            ignore=shutil.ignore_patterns("data_docs", "drift.html", ".gitignore"))
        prefect_project = fresh_clone(Path(tmp) / "prefect")
        prefect_total, server_cpu = flow_with_server_cpu(prefect_project)
        prefect_training = training_seconds(prefect_project)
    out = {
        "device": device(),
        "total_seconds": round(total, 1),
        "training_seconds": round(training, 1),
        "overhead_fraction": round((total - training) / total, 4),
        "overhead_seconds_by_stage": overhead_by_stage,
        "noop_repro_seconds": round(noop, 2),
        "prefect_total_seconds": round(prefect_total, 1),
        "prefect_training_seconds": round(prefect_training, 1),
        "prefect_overhead_fraction": round((prefect_total - prefect_training) / prefect_total, 4),
        "prefect_server_cpu_seconds": round(server_cpu, 1),  # the temporary server's own CPU, on the shared cores
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "overhead.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
