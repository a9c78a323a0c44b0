"""The race against the full sweep: the pick, the pick's test score and the training compute.

    python benchmarks/race.py record --name sst2 --params benchmarks/params/race_sst2.yaml   # the sweep, with curves
    python benchmarks/race.py replay --name sst2          # the rule on the curves: rungs × eta × seed subsets
    python benchmarks/race.py real --name sst2 --rungs 0.2 0.5 --eta 2 --seeds 1 2 3         # the race, for real
    python benchmarks/race.py summary --rungs 0.2 0.5 --eta 2   # benchmarks/results/race.json

``record`` trains the full sweep (every method × seed × size to its budget) through the race's own
code: each cell stops at every evaluation (``ftlab.training.race.rung_result``: checkpoint, then the
validation split scored per example, the scores kept) and goes on from there, which trains exactly
what an uninterrupted cell trains (tests/test_race.py); then its train stage finishes it from the
last checkpoint, and every cell is checked and compared as ``ftlab check``/``compare`` do.

A race is a prefix of that sweep: an eliminated cell is the sweep's cell stopped at a rung, a survivor
the sweep's cell. So ``replay`` runs the race's rule (``ftlab.analysis.race.decide``, as
``ftlab.race`` calls it) on the recorded validation scores for every candidate (rungs, eta) and
every subset of the recorded seeds (each subset is one race with its own seeds), and reads the
race's pick from the comparison of the survivors' runs (``ftlab.analysis.report.compare``). ``real``
then runs the race with the pipeline's own stages in a fresh directory, and checks that it decides,
picks and trains what the replay said. The pick is "same or non-inferior" when it is the sweep's
pick, or when the paired interval of its test-set difference to the sweep's pick (same seeds, the
largest train size) lies above -report.tolerance. Compute is steps × seconds per step, the sweep's
own per-step cost of each method and size (one basis for both, so timing noise does not move the
share); the seconds each side measured are kept beside it.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / ".work" / "race"
GRID_RUNGS = ([0.15], [0.35], [0.15, 0.35], [0.15, 0.5], [0.15, 0.35, 0.55])  # a rung lands on the evaluation at or after it
GRID_ETA = (1, 2, 3)  # 1: no cap, only the inferior stop


def ftlab(params: Path, values: dict, *args: str) -> None:
    cmd = [str(Path(sys.executable).parent / "ftlab"), *args, "-p", str(params),
           *[o for k, v in values.items() for o in ("-S", f"{k}={json.dumps(v)}")]]
    print("$", " ".join(cmd[:8]), "...", flush=True)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def paths(name: str, kind: str) -> dict:
    """Where one side (``sweep`` or a race) keeps its runs, checkpoints and reports; data is shared."""
    base = WORK / name
    return {"data.prepared_dir": str(base / "data"), "train.output_dir": str(base / kind / "runs"),
            "train.checkpoint_dir": str(base / kind / "checkpoints"), "report.dir": str(base / kind / "reports")}


def setting(name: str) -> tuple[Path, dict]:
    saved = json.loads((WORK / name / "setting.json").read_text())
    return Path(saved["params"]), saved["values"]


def config(name: str, kind: str = "sweep", **extra):
    from ftlab.learning.config import load_config

    params, values = setting(name)
    return load_config(params, {**values, **paths(name, kind), **extra})


def parallel(jobs: int, calls: list) -> None:
    with ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(*call) for call in calls]:
            future.result()


def record(args: argparse.Namespace) -> None:
    """The sweep with every cell's validation scores at each of its evaluations."""
    import yaml

    values = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set_)}
    values.update({"search.enabled": False, "race.enabled": False,
                   "train.threads": max(1, (os.cpu_count() or 1) // args.jobs)})
    (WORK / args.name).mkdir(parents=True, exist_ok=True)
    (WORK / args.name / "setting.json").write_text(json.dumps({"params": str(args.params), "values": values}))
    cfg, sweep = config(args.name), {**values, **paths(args.name, "sweep")}
    start = time.perf_counter()
    ftlab(args.params, sweep, "prepare")
    cells = cfg.cells()
    parallel(args.jobs, [(functools.partial(subprocess.run, check=True), [sys.executable, __file__, "record-cell", "--name", args.name, "--method",
                                           c.method, "--seed", str(c.seed), "--train-size", str(c.train_size)])
                         for c in cells])
    parallel(args.jobs, [(ftlab, args.params, sweep, "check", "-m", c.method, "--seed", str(c.seed),
                          "--train-size", str(c.train_size)) for c in cells])
    ftlab(args.params, sweep, "compare")
    (WORK / args.name / "sweep" / "wall.json").write_text(json.dumps({"seconds": time.perf_counter() - start}))


def record_cell(args: argparse.Namespace) -> None:
    """One cell to its budget, stopped and scored at every evaluation; its curve in curves/."""
    from ftlab.core.layout import run_dir
    from ftlab.stages import cell, tuned
    from ftlab.training.race import rung_result
    from ftlab.training.train import train

    cfg = config(args.name)
    size = args.train_size if args.train_size == "all" else int(args.train_size)
    c = cell(cfg, args.method, args.seed, size)
    out = WORK / args.name / "curves" / f"{c.method}-{c.name}.json"
    if out.is_file():
        return
    tuned_cfg, every = tuned(cfg, c.method), cfg.train.eval_steps
    curve, share, r = [], 1e-9, {"seconds": 0.0}
    while True:
        r = rung_result(tuned_cfg, c, share, r["seconds"])
        curve.append({"share": share, **{k: v for k, v in r.items() if k != "scores"}})
        if r["target"] >= r["budget"]:
            break
        share = min(((r["target"] // every + 1) * every - 0.5) / r["budget"], (r["budget"] - 0.5) / r["budget"])
    race = {"status": "survivor", "rung": len(curve), "share": share, "stop_step": r["budget"],
            "budget_steps": r["budget"], "train_seconds": r["seconds"]}
    train(tuned_cfg, c.method, run_dir(cfg, c), data_dir=cfg.data.prepared_dir, seed=c.seed, train_size=size,
          race=race)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"method": c.method, "seed": c.seed, "train_size": size, "curve": curve}, indent=1))


def curves(name: str) -> dict:
    """Per cell (method, seed, size): its evaluations (step, target) with their validation scores."""
    from ftlab.stages import cell, tuned
    from ftlab.training.race import _scores_dir

    cfg, out = config(name), {}
    for path in sorted((WORK / name / "curves").glob("*.json")):
        saved = json.loads(path.read_text())
        c = cell(cfg, saved["method"], saved["seed"], saved["train_size"])
        folder = _scores_dir(tuned(cfg, c.method), c)
        out[(c.method, c.seed, c.train_size)] = [{**e, "scores": np.load(folder / f"rung-{e['share']:g}.npy")}
                                                 for e in saved["curve"]]
    return out


def at_rung(curve: list[dict], share: float, every: int) -> dict:
    """What the race reads of a cell at rung ``share``: its scores at the evaluation the rung lands
    on (``rung_step``), or at its last one when it stopped early before it."""
    from ftlab.training.stopping import rung_step

    target = rung_step(share, curve[0]["budget"], every)
    return next((e for e in curve if e["target"] >= target), curve[-1])


def simulate(cfg, recorded: dict, seeds: tuple, rungs: list[float], eta: int) -> dict:
    """``ftlab.race``'s loop on recorded scores: per size, the survivors and each eliminated cell's stop step."""
    from ftlab.analysis.race import decide

    task, out = cfg.task_type(), {}
    for size in dict.fromkeys(cfg.train_sizes):
        alive, stops = list(cfg.methods), {}
        for share in rungs:
            if len(alive) < 2:
                break
            at = {(m, s): at_rung(recorded[(m, s, size)], share, cfg.train.eval_steps) for m in alive for s in seeds}
            rule = decide({m: np.stack([at[(m, s)]["scores"] for s in seeds]) for m in alive}, task.statistic,
                          task.primary.higher_is_better, cfg.report.tolerance, cfg.report.confidence, eta)
            for row in rule["methods"]:
                if row["decision"] == "eliminated":
                    stops.update({(row["method"], s): at[(row["method"], s)]["step"] for s in seeds})
            alive = [r["method"] for r in rule["methods"] if r["decision"] != "eliminated"]
        out[size] = {"survivors": alive, "stops": stops}
    return out


def per_step(cfg, seeds: tuple) -> dict:
    """Seconds per step of each method and size, from the sweep's run records."""
    from ftlab.core.layout import run_dir
    from ftlab.core.record import read_record

    seen = defaultdict(list)
    for c in cfg.cells():
        if c.seed in seeds:
            r = read_record(run_dir(cfg, c))
            seen[(c.method, c.train_size)].append(r.cost.train_seconds / max(r.steps, 1))
    return {k: float(np.mean(v)) for k, v in seen.items()}


def steps_of(cfg, c, race: dict | None) -> int:
    from ftlab.core.layout import run_dir
    from ftlab.core.record import read_record

    stop = None if race is None else race[c.train_size]["stops"].get((c.method, c.seed))
    return read_record(run_dir(cfg, c)).steps if stop is None else stop


def compute(cfg, seeds: tuple, race: dict | None) -> dict:
    costs = per_step(cfg, seeds)
    cells = [c for c in cfg.cells() if c.seed in seeds]
    steps = {c: steps_of(cfg, c, race) for c in cells}
    return {"steps": sum(steps.values()), "step_seconds": round(sum(n * costs[(c.method, c.train_size)]
                                                                    for c, n in steps.items()), 1)}


@functools.cache
def _comparison(name: str, cells: tuple) -> dict:
    """The report's comparison of these (method, seed, size) cells of the sweep (no files kept)."""
    from ftlab.analysis.report import compare
    from ftlab.core.layout import checks_dir, run_dir
    from ftlab.stages import cell

    cfg = config(name)
    chosen = [cell(cfg, *key) for key in cells]
    with tempfile.TemporaryDirectory() as out:
        return compare([run_dir(cfg, c) for c in chosen], [checks_dir(cfg, c) for c in chosen], cfg.report,
                       Path(out), task=cfg.task_type())


def pick(name: str, cfg, seeds: tuple, race: dict | None) -> str:
    """The recommended method: of every cell of these seeds (the sweep), or of the race's survivors."""
    cells = tuple((c.method, c.seed, c.train_size) for c in cfg.cells() if c.seed in seeds
                  and (race is None or c.method in race[c.train_size]["survivors"]))
    return _comparison(name, cells)["recommendation"]["cheapest_within_tolerance"]["method"]


def noninferior(cfg, seeds: tuple, candidate: str, reference: str) -> dict:
    """The candidate against the reference on the test set: their cells at the largest train size."""
    from ftlab.analysis.noninferiority import assess
    from ftlab.analysis.rundir import Run
    from ftlab.analysis.stats import paired_bootstrap
    from ftlab.core.layout import run_dir

    task, size = cfg.task_type(), cfg.train_sizes[-1]

    def scores(method: str) -> np.ndarray:
        runs = [Run(run_dir(cfg, c)) for c in cfg.cells(method=method, train_size=size) if c.seed in seeds]
        return np.stack([task.example_scores(r.predictions(), r.labels) for r in runs])

    test = paired_bootstrap(scores(candidate), scores(reference), cfg.report.confidence, statistic=task.statistic,
                            higher_is_better=task.primary.higher_is_better)
    verdict = assess(test, cfg.report.tolerance, task.primary.higher_is_better)
    return {"difference": test["difference"], "ci_low": verdict["ci_low"], "ci_high": verdict["ci_high"],
            "noninferior": verdict["noninferior"]}


def one_race(name: str, cfg, recorded: dict, seeds: tuple, rungs: list[float], eta: int) -> dict:
    race = simulate(cfg, recorded, seeds, rungs, eta)
    picks = {"sweep": pick(name, cfg, seeds, None), "race": pick(name, cfg, seeds, race)}
    same = picks["race"] == picks["sweep"]
    test = None if same else noninferior(cfg, seeds, picks["race"], picks["sweep"])
    return {"seeds": list(seeds), "picks": picks, "same": same, "race_pick_vs_sweep_pick": test,
            "same_or_noninferior": same or bool(test and test["noninferior"]),
            "compute": {"sweep": compute(cfg, seeds, None), "race": compute(cfg, seeds, race)},
            "eliminated": {str(size): sorted(set(cfg.methods) - set(r["survivors"])) for size, r in race.items()}}


def subsets(cfg, k: int) -> list[tuple]:
    return list(itertools.combinations(cfg.seeds, k)) if k < len(cfg.seeds) else [tuple(cfg.seeds)]


def replay(args: argparse.Namespace) -> dict:
    """Every (rungs, eta) of the grid on every ``--race-seeds``-subset of the recorded seeds."""
    cfg, recorded = config(args.name), curves(args.name)
    out = {}
    for rungs, eta in itertools.product(GRID_RUNGS, GRID_ETA):
        runs = [one_race(args.name, cfg, recorded, seeds, list(rungs), eta) for seeds in subsets(cfg, args.race_seeds)]
        out[f"rungs={list(rungs)} eta={eta}"] = {"rungs": list(rungs), "eta": eta, **shares(runs), "runs": runs}
        print(f"{args.name} rungs={list(rungs)} eta={eta}: {out[f'rungs={list(rungs)} eta={eta}']['same_or_noninferior_share']:.2f} "
              f"same or non-inferior, compute {out[f'rungs={list(rungs)} eta={eta}']['compute_share']:.3f}", flush=True)
    (WORK / args.name / "replay.json").write_text(json.dumps(out, indent=1))
    return out


def shares(runs: list[dict]) -> dict:
    steps = {k: sum(r["compute"][k]["step_seconds"] for r in runs) for k in ("sweep", "race")}
    return {"same_or_noninferior_share": round(sum(r["same_or_noninferior"] for r in runs) / len(runs), 3),
            "compute_share": round(steps["race"] / steps["sweep"], 3)}


def real(args: argparse.Namespace) -> dict:
    """The race through the pipeline's stages (race, every cell's train and check, compare) in its own
    directory; its decisions, pick and compute against the replay's for the same seeds and settings."""
    from ftlab.core.layout import run_dir
    from ftlab.core.record import read_record

    params, values = setting(args.name)
    tag = f"race-s{'-'.join(map(str, args.seeds))}"
    race_values = {**values, **paths(args.name, tag), "seeds": args.seeds, "race.enabled": True,
                   "race.rungs": args.rungs, "race.eta": args.eta}
    race_cfg = config(args.name, tag, **{k: race_values[k] for k in ("seeds", "race.enabled", "race.rungs", "race.eta")})
    start = time.perf_counter()
    ftlab(params, race_values, "race")
    cells = race_cfg.cells()
    cell_args = [("-m", c.method, "--seed", str(c.seed), "--train-size", str(c.train_size)) for c in cells]
    parallel(args.jobs, [(ftlab, params, race_values, "train", *a) for a in cell_args])
    parallel(args.jobs, [(ftlab, params, race_values, "check", *a) for a in cell_args])
    ftlab(params, race_values, "compare")
    wall = time.perf_counter() - start
    comparison = json.loads((race_cfg.report.dir / "comparison.json").read_text())
    sweep_cfg, seeds = config(args.name), tuple(args.seeds)
    replayed = one_race(args.name, sweep_cfg, curves(args.name), seeds, args.rungs, args.eta)
    costs = per_step(sweep_cfg, seeds)
    records = {c: read_record(run_dir(race_cfg, c)) for c in cells}
    sweep_records = [read_record(run_dir(sweep_cfg, c)) for c in sweep_cfg.cells() if c.seed in seeds]
    result = {"seeds": args.seeds, "rungs": args.rungs, "eta": args.eta,
              "pick": comparison["recommendation"]["cheapest_within_tolerance"]["method"],
              "eliminated": sorted({(e["method"], str(e["train_size"])) for e in comparison["eliminated"]}),
              "compute": {"steps": sum(r.steps for r in records.values()),
                          "step_seconds": round(sum(r.steps * costs[(c.method, c.train_size)] for c, r in records.items()), 1),
                          "train_seconds": round(sum(r.cost.train_seconds for r in records.values()), 1),
                          "wall_seconds": round(wall, 1)},
              "sweep_train_seconds": round(sum(r.cost.train_seconds for r in sweep_records), 1),
              "replay": replayed}
    result["as_replayed"] = (result["pick"] == replayed["picks"]["race"]
                             and result["compute"]["steps"] == replayed["compute"]["race"]["steps"]
                             and result["eliminated"] == sorted((m, s) for s, ms in replayed["eliminated"].items() for m in ms))
    (WORK / args.name / f"{tag}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "replay"}, indent=1))
    return result


def device() -> str:
    import platform

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "")
    return f"{model or platform.processor()}, {os.cpu_count()} cores, {'native' if 'avx512_bf16' in flags else 'no'} bf16"


def summary(args: argparse.Namespace) -> None:
    """race.json: the chosen (rungs, eta) over every dataset's replayed races, with the real races."""
    key = f"rungs={args.rungs} eta={args.eta}"
    datasets, runs = {}, []
    for name in args.names:
        replayed = json.loads((WORK / name / "replay.json").read_text())
        chosen = replayed[key]
        real_runs = [json.loads(p.read_text()) for p in sorted((WORK / name).glob("race-s*.json"))]
        params, values = setting(name)
        datasets[name] = {"params": str(params), "set": values, **{k: chosen[k] for k in ("same_or_noninferior_share", "compute_share")},
                          "grid": {k: {x: v[x] for x in ("same_or_noninferior_share", "compute_share")} for k, v in replayed.items()},
                          "sweep_wall_seconds": json.loads((WORK / name / "sweep" / "wall.json").read_text())["seconds"],
                          "real": [{k: v for k, v in r.items() if k != "replay"} for r in real_runs
                                   if r["rungs"] == args.rungs and r["eta"] == args.eta],
                          "runs": chosen["runs"]}
        runs += [{"dataset": name, **r} for r in chosen["runs"]]
    result = {"device": device(), "race": {"rungs": args.rungs, "eta": args.eta}, **shares(runs),
              "n_races": len(runs), "datasets": datasets}
    (RESULTS / "race.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "race.md").write_text(markdown(result))
    print(f"race.json: {result['same_or_noninferior_share']:.0%} same or non-inferior, compute {result['compute_share']:.1%}")


def markdown(result: dict) -> str:
    """race.md: per dataset, the chosen setting's races (picks, compute) and the whole grid's shares."""
    race = result["race"]
    lines = [f"# The race against the full sweep ({result['device']})", "",
             f"Chosen: rungs {race['rungs']}, eta {race['eta']}: the race's pick is the sweep's or non-inferior to it "
             f"in {result['same_or_noninferior_share']:.0%} of {result['n_races']} races, at "
             f"{result['compute_share']:.0%} of the sweep's training compute.", "",
             "| dataset | seeds | sweep's pick | race's pick | eliminated | race vs sweep pick (test) | compute |",
             "|---|---|---|---|---|---|---:|"]
    for name, d in result["datasets"].items():
        for r in d["runs"]:
            test = r["race_pick_vs_sweep_pick"]
            versus = ("same" if r["same"] else f"{test['difference']:+.4f} [{test['ci_low']:+.4f}, {test['ci_high']:+.4f}]"
                      f" {'non-inferior' if test['noninferior'] else 'not non-inferior'}")
            share = r["compute"]["race"]["step_seconds"] / r["compute"]["sweep"]["step_seconds"]
            out = "; ".join(f"{', '.join(m)} at {s}" for s, m in r["eliminated"].items() if m) or "none"
            lines.append(f"| {name} | {r['seeds']} | {r['picks']['sweep']} | {r['picks']['race']} | {out} | {versus} "
                         f"| {share:.0%} |")
    lines += ["", "Every setting replayed (same or non-inferior share / compute share):", "",
              "| setting | " + " | ".join(result["datasets"]) + " |", "|---|" + "---|" * len(result["datasets"])]
    for key in next(iter(result["datasets"].values()))["grid"]:
        cells = [d["grid"][key] for d in result["datasets"].values()]
        lines.append(f"| {key} | " + " | ".join(f"{c['same_or_noninferior_share']:.0%} / {c['compute_share']:.0%}"
                                                  for c in cells) + " |")
    for name, d in result["datasets"].items():
        for r in d["real"]:
            lines += ["", f"Run for real on {name}, seeds {r['seeds']}: picked {r['pick']}, {r['compute']['steps']:,} steps, "
                      f"{r['compute']['train_seconds']:,.0f} s trained against the sweep's {r['sweep_train_seconds']:,.0f} s "
                      f"for those seeds; as the replay said: {r['as_replayed']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--params", type=Path, required=True)
    rec.add_argument("--set", dest="set_", action="append", default=[], help="key=value (YAML) over the params")
    cell_ = sub.add_parser("record-cell")
    cell_.add_argument("--method", required=True)
    cell_.add_argument("--seed", type=int, required=True)
    cell_.add_argument("--train-size", required=True)
    rep = sub.add_parser("replay")
    rep.add_argument("--race-seeds", type=int, default=3, help="seeds of each replayed race (every subset)")
    rl = sub.add_parser("real")
    rl.add_argument("--seeds", type=int, nargs="+", required=True)
    summ = sub.add_parser("summary")
    summ.add_argument("--names", nargs="+", default=["sst2", "stsb", "goemotions"])
    for p in (rec, cell_, rep, rl):
        p.add_argument("--name", required=True)
    for p in (rec, rl):
        p.add_argument("--jobs", type=int, default=2, help="cells trained at once")
    for p in (rl, summ):
        p.add_argument("--rungs", type=float, nargs="+", required=True)
        p.add_argument("--eta", type=int, required=True)
    args = parser.parse_args()
    {"record": record, "record-cell": record_cell, "replay": replay, "real": real, "summary": summary}[args.command](args)


if __name__ == "__main__":
    main()
