"""Run suites with a file-backed Great Expectations context under the data folder.

WHY file-backed: suites, validation definitions, checkpoints and every result are stored
under `<data>/gx/`, so the Data Docs site there accumulates the history of all runs (what
failed when, and on which rows). Everything is registered with add_or_update on each run:
the suites always reflect today's params.yaml and a re-run never duplicates a definition.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import great_expectations as gx
import pandas as pd
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig

from emotionops.validation.docs_offline import AssetSources, make_offline
from emotionops.validation.report import ValidationReport, _Collector

log = logging.getLogger(__name__)

DATASOURCE = "emotionops"
BATCH = "whole_table"
PARTIAL_UNEXPECTED = 20  # unexpected rows kept per expectation in stored results / Data Docs


@dataclass(frozen=True)
class Part:
    """One suite over one table (a GX data asset of the same name)."""

    suite: str
    frame: pd.DataFrame
    expectations: list
    index_columns: Sequence[str] = ()  # identify unexpected rows in Data Docs and summaries
    notes: str = ""


def file_context(project_root: Path):
    """The GX file context in `<project_root>/gx` (created on first use), progress bars off."""
    project_root.mkdir(parents=True, exist_ok=True)
    ctx = gx.get_context(mode="file", project_root_dir=str(project_root))
    bars = ctx.variables.progress_bars
    if (
        not bars
        or bars.get("globally") is not False
        or ctx.variables.analytics_enabled is not False
    ):
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        ctx.variables.analytics_enabled = False
        ctx.variables.save()
    return ctx


def _batch_definition(ctx, name: str):
    try:
        source = ctx.data_sources.get(DATASOURCE)
    except KeyError:
        source = ctx.data_sources.add_pandas(DATASOURCE)
    try:
        asset = source.get_asset(name)
    except LookupError:
        asset = source.add_dataframe_asset(name)
    try:
        return asset.get_batch_definition(BATCH)
    except KeyError:
        return asset.add_batch_definition_whole_dataframe(BATCH)


def docs_page(ctx, resource_identifier=None) -> Path:
    """The Data Docs index, or the page of one validation result."""
    url = ctx.get_docs_sites_urls(resource_identifier=resource_identifier, site_name="local_site")
    return Path(unquote(urlsplit(url[0]["site_url"]).path))


def run_parts(
    project_root: Path,
    name: str,
    parts: Sequence[Part],
    run_name: str,
    examples: int,
    assets: AssetSources,
) -> ValidationReport:
    """Run each part's checkpoint (which also updates Data Docs), make the site render
    offline with local copies of its CDN assets (`assets`), and collect one report."""
    ctx = file_context(project_root)
    collected = _Collector(name, examples)
    run_id = RunIdentifier(run_name=run_name)
    for part in parts:
        suite = ctx.suites.add_or_update(
            gx.ExpectationSuite(
                name=part.suite,
                expectations=list(part.expectations),
                meta={"notes": {"format": "markdown", "content": [part.notes]}}
                if part.notes
                else {},
            )
        )
        definition = ctx.validation_definitions.add_or_update(
            gx.ValidationDefinition(
                name=part.suite, data=_batch_definition(ctx, part.suite), suite=suite
            )
        )
        index = [c for c in part.index_columns if c in part.frame.columns]
        checkpoint = ctx.checkpoints.add_or_update(
            gx.Checkpoint(
                name=part.suite,
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
                result_format={
                    "result_format": "SUMMARY",
                    "partial_unexpected_count": PARTIAL_UNEXPECTED,
                    **({"unexpected_index_column_names": index} if index else {}),
                },
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": part.frame}, run_id=run_id)
        for result_id, suite_result in result.run_results.items():
            order = [str(e.id) for e in suite.expectations]
            collected.add(
                part.suite, suite_result, order, docs_page(ctx, result_id), len(part.frame)
            )
    index = docs_page(ctx)
    try:
        make_offline(index.parent, assets)  # every page, also those of earlier builds
    except (OSError, UnicodeError) as exc:  # Data Docs never fail a validation run
        log.warning("Data Docs at %s were not made offline: %s", index.parent, exc)
    return collected.report(len(parts[0].frame), index, run_name)
