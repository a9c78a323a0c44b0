"""Prefect driver of the monitor: new data against the promoted model, retraining on drift.

    prefect deploy --all       (prefect.yaml: the deployment `monitor`, its own schedule)

Each run calls the same stage function as ``ftlab monitor`` on ``monitor.input`` (or the
``input`` parameter). On the verdict ``drift`` it keeps labelled input as a batch (``ftlab ingest``),
so the retrain trains on it, and starts the training deployment with a ``reason`` parameter that
says which signals drifted and which batches it trains on, and records the event as a Prefect artifact; on ``ok``
it starts nothing; with no new data (``monitor.input`` missing or empty) the verdict is ``no_data``
and it starts nothing either.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.deployments import run_deployment

from ftlab import stages
from ftlab.core.escape import md_code, md_text
from ftlab.learning.config import load_config

RETRAIN = "finetune_pipeline/nightly"


@task(name="monitor")
def monitor(params: str, input_path: str | None) -> dict:
    return stages.monitor(load_config(Path(params)), Path(input_path) if input_path else None)


@task(name="ingest")
def ingest(params: str, path: str) -> dict | None:
    """Keep the drifted labelled file as a batch, so the retrain trains on it (None: already kept)."""
    from ftlab.data.ingest import ingested

    cfg = load_config(Path(params))
    if ingested(Path(path), cfg.data) is not None:
        return None
    return stages.ingest(cfg, Path(path))


@flow(name="monitor_data")
def monitor_data(params: str = "params.yaml", input_path: str | None = None, retrain: str = RETRAIN) -> dict:
    """Monitor, and on drift start the deployment ``retrain`` (flow/deployment) without waiting for it."""
    result = monitor(params, input_path)
    if result["verdict"] == "no_data":  # nothing arrived since the last run: nothing to judge or retrain
        lines = [f"**Data monitor**: `no_data`: {md_text(result['reasons'][0])}"]
    else:
        lines = [f"**Data monitor**: {md_code(result['verdict'])} on {', '.join(map(md_code, result['input']))} "
                 f"({result['rows']['current']} rows); report: {md_code(result['report'])}", "",
                 *(f"- {md_text(r)}" for r in result["reasons"]), "", f"Next step: {md_text(result['next_step'])}"]
    if result["verdict"] == "drift":
        reason = "data drift: " + "; ".join(result["reasons"])
        if result["labelled"]:  # labelled drifted rows: the retrain trains (and is gated) on them
            kept = [b for b in (ingest(params, f) for f in result["input"]) if b is not None]
            result["ingested"] = [b["dir"] for b in kept]
            lines += ["", *(f"Ingested {md_code(b['source'])} as batch {md_code(b['name'])} ({b['rows']} rows)." for b in kept)]
            reason += "".join(f"; trains on batch {b['name']}" for b in kept)
        run = run_deployment(retrain, parameters={"params": params, "reason": reason}, timeout=0)
        get_run_logger().info("drift: started %s as flow run %s", retrain, run.id)
        lines += ["", f"Retraining started: {md_code(retrain)}, flow run `{run.id}`."]
        result["retraining_flow_run"] = str(run.id)
    create_markdown_artifact("\n".join(lines), key="data-monitor", description=f"monitor verdict: {result['verdict']}")
    return result


if __name__ == "__main__":
    import argparse
    import logging

    parser = argparse.ArgumentParser(description="Run the ftlab monitor as a Prefect flow.")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--input", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    monitor_data(args.params, args.input)
