"""The pictures in the docs: comparison.html, monitor.html and the model card of a real smoke run.

Rerun it when those pages change::

    python scripts/screenshots.py                 # clones this repository to a scratch directory,
                                                  # runs the smoke pipeline there, then shoots
    python scripts/screenshots.py --project DIR   # a project where the smoke pipeline already ran

The comparison is the committed ``docs/example/comparison.html`` (``make run`` on the demo data).
In the project it writes unlabelled demo texts to ``incoming.csv`` and runs ``ftlab monitor`` on
them (an unlabelled batch also gets the labelling queue), renders ``models/ftlab-model/README.md``
to HTML, and takes each page with headless Chromium (Debian's ``chromium`` package) into
``docs/images/``. Nothing is downloaded: the pages render offline.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
CARD_STYLE = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;line-height:1.45}"
              "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
              "code,pre{background:#f4f4f4}pre{padding:8px;overflow:hidden}")
log = logging.getLogger("screenshots")


def run(cmd: list[str], cwd: Path) -> None:
    """Run one command of the project with the tools of this interpreter's environment first on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(cwd / "src"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    log.info("$ %s", " ".join(cmd))
    subprocess.run(cmd, cwd=cwd, env=env, check=True)


def smoke_project(scratch: Path) -> Path:
    """A clone of this repository's HEAD in which the smoke pipeline ran (about 2 minutes on 2 cores)."""
    project = scratch / "ftlab"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(project)], check=True)
    run(["ftlab", "pipeline", "--params", "params.smoke.yaml"], project)
    return project


def monitor(project: Path) -> Path:
    """``ftlab monitor`` on 200 unlabelled demo texts the model never saw: the monitor page and queue."""
    from ftlab.data.demo import generate_demo

    generate_demo(200, seed=7)[["text"]].to_csv(project / "incoming.csv", index=False)
    run(["ftlab", "monitor", "--params", "params.smoke.yaml", "--input", "incoming.csv"], project)
    return project / "reports" / "monitor" / "monitor.html"


def card_html(project: Path) -> Path:
    """The model card (markdown with YAML front matter) as the HTML page a model hub would show."""
    from markdown_it import MarkdownIt

    text = (project / "models" / "ftlab-model" / "README.md").read_text(encoding="utf-8")
    if text.startswith("---\n"):  # the YAML metadata: a hub shows it as a side panel, not as text
        text = text[4:].partition("\n---\n")[2]
    body = MarkdownIt("commonmark").enable("table").render(text)
    out = project / "model_card.html"
    out.write_text(f"<!doctype html><meta charset=utf-8><style>{CARD_STYLE}</style>{body}", encoding="utf-8")
    return out


def shoot(page: Path, png: Path, height: int) -> None:
    """One headless-Chromium screenshot of ``page``, 1280 pixels wide, in a fresh profile."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
                        f"--window-size=1280,{height}", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
    log.info("wrote %s", png.relative_to(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, help="a project where the smoke pipeline already ran")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="ftlab-shots-") as scratch:
        project = args.project.resolve() if args.project else smoke_project(Path(scratch))
        IMAGES.mkdir(parents=True, exist_ok=True)
        # the committed report of `make run` (the demo data, four methods): what a first run shows
        shoot(ROOT / "docs" / "example" / "comparison.html", IMAGES / "comparison.png", 1600)
        shoot(monitor(project), IMAGES / "monitor.png", 1600)
        shoot(card_html(project), IMAGES / "model_card.png", 1600)


if __name__ == "__main__":
    main()
