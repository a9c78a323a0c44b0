"""The race against the full sweep on the same params: the pick, the pick's test score, the compute.

    python benchmarks/race.py                                         # SST-2 sweep params, 3 repeats
    python benchmarks/race.py --params P.yaml --name stsb --repeats 3 --set train.max_steps=200

Per repeat (its own seeds: the params' seeds shifted by the repeat's number times their count), the
full sweep (race.enabled false) and the race (race.enabled true) run through the pipeline's own
stages (prepare, validate, search, plan, race, every cell's train, compare: ``ftlab`` processes,
``--jobs`` cells at a time) into their own directories under ``--workdir``, on data prepared once.
The race's pick is "same or non-inferior" when it is the sweep's pick, or when the paired interval of
its difference to the sweep's pick on the test set (the sweep's cells at the largest train size: a
survivor trains exactly what the sweep trains, tests/test_race.py) lies above -report.tolerance.
Compute is steps × per-step cost, every cell's steps at the seconds per step the sweep measured for
its method and size (one basis for both, so timing noise does not move the share), beside the wall
time of each. Writes ``benchmarks/results/race<_name>.json`` with ``same_or_noninferior_share`` and
``compute_share`` and each repeat's picks and compute.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def ftlab(params: Path, options: list[str], *args: str) -> None:
    cmd = ["ftlab", *args, "-p", str(params), *options]
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def options(values: dict) -> list[str]:
    return [o for key, value in values.items() for o in ("-S", f"{key}={json.dumps(value)}")]


def run_pipeline(params: Path, cfg, jobs: int, values: dict, race: bool) -> float:
    """The stages of one comparison, sweep or race; its wall seconds (data preparation excluded)."""
    opts = options({**values, "race.enabled": race})
    run = lambda *a: ftlab(params, opts, *a)  # noqa: E731
    start = time.perf_counter()
    run("validate")
    for method in cfg.methods:
        run("search", "-m", method)
    run("plan")
    run("race")
    with ThreadPoolExecutor(jobs) as pool:
        cells = [pool.submit(run, "train", "-m", c.method, "--seed", str(c.seed), "--train-size", str(c.train_size))
                 for c in cfg.cells()]
        for future in cells:
            future.result()
    run("compare")
    return time.perf_counter() - start


def per_step(cfg) -> dict[tuple[str, str], float]:
    """Seconds per step of each method and size, from the sweep's run records."""
    from ftlab.core.layout import run_dir
    from ftlab.core.record import read_record

    seen: dict[tuple[str, str], list[float]] = defaultdict(list)
    for c in cfg.cells():
        record = read_record(run_dir(cfg, c))
        seen[(c.method, str(c.train_size))].append(record.cost.train_seconds / max(record.steps, 1))
    return {k: sum(v) / len(v) for k, v in seen.items()}


def compute(cfg, costs: dict[tuple[str, str], float]) -> dict:
    """Steps every cell trained, and steps × the sweep's per-step cost, summed."""
    from ftlab.core.layout import run_dir
    from ftlab.core.record import read_record

    steps = seconds = 0.0
    for c in cfg.cells():
        record = read_record(run_dir(cfg, c))
        steps += record.steps
        seconds += record.steps * costs[(c.method, str(c.train_size))]
    return {"steps": int(steps), "step_seconds": round(seconds, 2)}


def pick(cfg) -> str:
    return json.loads((cfg.report.dir / "comparison.json").read_text())["recommendation"]["cheapest_within_tolerance"]["method"]


def noninferior(cfg, candidate: str, reference: str) -> dict:
    """The candidate against the reference on the test set: their cells at the largest train size."""
    import numpy as np

    from ftlab.analysis.noninferiority import assess
    from ftlab.analysis.rundir import Run
    from ftlab.analysis.stats import paired_bootstrap
    from ftlab.core.layout import run_dir

    task = cfg.task_type()
    size = cfg.train_sizes[-1]

    def scores(method: str) -> np.ndarray:
        runs = [Run(run_dir(cfg, c)) for c in cfg.cells(method=method, train_size=size)]
        return np.stack([task.example_scores(r.predictions(), r.labels) for r in runs])

    test = paired_bootstrap(scores(candidate), scores(reference), cfg.report.confidence, statistic=task.statistic,
                            higher_is_better=task.primary.higher_is_better)
    verdict = assess(test, cfg.report.tolerance, task.primary.higher_is_better)
    assert verdict is not None
    return {"difference": test["difference"], "ci_low": verdict["ci_low"], "ci_high": verdict["ci_high"],
            "noninferior": verdict["noninferior"]}


def repeat(params: Path, base: dict, number: int, jobs: int, workdir: Path) -> dict:
    from ftlab.learning.config import load_config

    seeds = [s + number * len(base["seeds"]) for s in base["seeds"]]
    common = {**base["overrides"], "seeds": seeds, "data.prepared_dir": str(workdir / "prepared")}
    out = {}
    for kind, race in (("sweep", False), ("race", True)):
        values = {**common, "train.output_dir": str(workdir / f"r{number}-{kind}/runs"),
                  "report.dir": str(workdir / f"r{number}-{kind}/reports"),
                  "train.checkpoint_dir": str(workdir / f"r{number}-{kind}/checkpoints")}
        cfg = load_config(params, {**values, "race.enabled": race})
        out[kind] = {"cfg": cfg, "wall_seconds": round(run_pipeline(params, cfg, jobs, values, race), 1)}
    sweep, race_cfg = out["sweep"]["cfg"], out["race"]["cfg"]
    costs = per_step(sweep)
    picks = {"sweep": pick(sweep), "race": pick(race_cfg)}
    test = noninferior(sweep, picks["race"], picks["sweep"])
    decisions = json.loads((race_cfg.report.dir / "race" / "decisions.json").read_text())
    return {"seeds": seeds, "picks": picks, "same": picks["race"] == picks["sweep"], "race_pick_vs_sweep_pick": test,
            "same_or_noninferior": picks["race"] == picks["sweep"] or test["noninferior"],
            "compute": {k: {**compute(v["cfg"], costs), "wall_seconds": v["wall_seconds"]} for k, v in out.items()},
            "eliminated": [{"train_size": s["train_size"], "rung": r["rung"], "method": m["method"], "reason": m["reason"]}
                           for s in decisions["sizes"] for r in s["rungs"] for m in r["methods"]
                           if m["decision"] == "eliminated"]}


def main() -> None:
    from ftlab.learning.config import load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=ROOT / "benchmarks/params/sweep_sst2.yaml")
    parser.add_argument("--name", default="")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="cells trained at once")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ftlab-race-benchmark"))
    parser.add_argument("--set", dest="set_", action="append", default=[], help="key=value (YAML) over the params")
    parser.add_argument("--label", default="measurement", help="what this run is, kept in the result (e.g. smoke)")
    args = parser.parse_args()
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set_)}
    overrides["train.threads"] = max(1, (os.cpu_count() or 1) // args.jobs)
    cfg = load_config(args.params, overrides)
    ftlab(args.params, options({**overrides, "data.prepared_dir": str(args.workdir / "prepared")}), "prepare")
    base = {"seeds": cfg.seeds, "overrides": overrides}
    runs = [repeat(args.params, base, n, args.jobs, args.workdir) for n in range(args.repeats)]
    sweep = sum(r["compute"]["sweep"]["step_seconds"] for r in runs)
    raced = sum(r["compute"]["race"]["step_seconds"] for r in runs)
    result = {"label": args.label, "params": str(args.params.relative_to(ROOT) if args.params.is_relative_to(ROOT)
                                                   else args.params), "set": args.set_, "repeats": args.repeats,
              "race": cfg.race.model_dump(mode="json"), "tolerance": cfg.report.tolerance,
              "same_or_noninferior_share": sum(r["same_or_noninferior"] for r in runs) / len(runs),
              "compute_share": round(raced / sweep, 4) if sweep else None,
              "wall_share": round(sum(r["compute"]["race"]["wall_seconds"] for r in runs)
                                  / sum(r["compute"]["sweep"]["wall_seconds"] for r in runs), 4),
              "runs": runs}
    path = RESULTS / f"race{'_' + args.name if args.name else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{path}: same or non-inferior {result['same_or_noninferior_share']:.0%}, compute {result['compute_share']}")


if __name__ == "__main__":
    main()
