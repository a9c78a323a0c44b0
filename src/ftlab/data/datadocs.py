"""The Great Expectations side of ``validate``: an in-memory context, results filed where the Data
Docs read them, and Data Docs that open offline.

Great Expectations is imported inside these functions: the import alone takes seconds.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ftlab.core.escape import html_text

SITE = "ftlab"
_REMOTE = [  # tags and CSS that fetch from a CDN, and links off the page: dropped for offline use
    (re.compile(r"<script\b[^>]*\bsrc=[\"']https?:[^>]*>\s*</script>", re.I), ""),
    (re.compile(r"<(?:link|img)\b[^>]*\b(?:href|src)=[\"']https?:[^>]*>", re.I), ""),
    (re.compile(r"\s(?:href|src)=[\"']https?:[^\"']*[\"']", re.I), ""),
    (re.compile(r"url\(\s*[\"']?https?:[^)]*\)", re.I), "none"),
]


def context(docs_dir: Path) -> tuple[Any, Any]:
    """An in-memory GX context (no analytics, no progress bars, one Data Docs site at docs_dir)
    and the run id its validation results are filed under."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # hundreds of INFO lines
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={SITE: site},
    )
    run_id = RunIdentifier(run_name="ftlab-validate", run_time=datetime.datetime.now(datetime.timezone.utc))
    return gx.get_context(mode="ephemeral", project_config=config), run_id


def store(context: Any, result: Any, run_id: Any, batch_id: str, suite_name: str) -> None:
    """File a ``batch.validate`` result in the context's store, where the Data Docs read it."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    result.meta["run_id"] = run_id
    key = ValidationResultIdentifier(ExpectationSuiteIdentifier(suite_name), run_id, batch_id)
    context.validation_results_store.set(key, result)


def make_offline(docs_dir: Path, passed: dict[str, bool]) -> None:
    """Strip CDN scripts/styles and remote links from every page; list the pages in index.html.

    Without its CDN scripts the index's table (filled by JavaScript) is empty, so a plain list of
    links to the validation pages is added at the top.
    """
    for page in docs_dir.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        for pattern, replacement in _REMOTE:
            html = pattern.sub(replacement, html)
        page.write_text(html, encoding="utf-8")
    items = []
    for suite, ok in passed.items():
        for page in docs_dir.glob(f"validations/{suite}/**/*.html"):
            link = page.relative_to(docs_dir).as_posix()
            items.append(f'<li><a href="{html_text(quote(link))}">{html_text(suite)}</a>: {"passed" if ok else "FAILED"}</li>')
    index = docs_dir / "index.html"
    listing = f'<section id="ftlab-validations"><h2>Validation results</h2><ul>{"".join(items)}</ul></section>'
    index.write_text(re.sub(r"(<body[^>]*>)", r"\1" + listing, index.read_text(encoding="utf-8"), count=1),
                     encoding="utf-8")
