"""What a validation run tells a person: pass/fail, counts, one line per failing expectation.

No Great Expectations import here: the pipeline and the CLI can name these types (and catch
ValidationFailed) without paying GX's import time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from emotionops.errors import EmotionOpsError

#: kwargs that say what an expectation wanted, in the order they are shown.
_WANTED = (
    "min_value", "max_value", "value_set", "regex", "type_list", "column_set", "column_A",
    "column_B",
)  # fmt: skip


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, list | tuple | dict):
        value = value.item()  # numpy scalar -> plain Python value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _short(value: Any, limit: int = 60, quote: bool = True) -> str:
    value = _plain(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        text = "null"
    else:
        text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class FailedExpectation:
    """One failing expectation, flattened from a GX result."""

    suite: str
    expectation: str  # e.g. expect_column_values_to_be_in_set
    column: str  # "" for table-level expectations; "a,b" for column pairs
    condition: str  # row condition ("status == accepted"), "" when on every row
    wanted: str  # the bounds/set/regex it checks, e.g. "min_value=1"
    observed: str  # observed value or "3 of 10 rows unexpected"
    examples: tuple[str, ...] = ()
    error: str = ""  # GX could not evaluate it (e.g. the column is missing)

    def line(self) -> str:
        where = f" where {self.condition}" if self.condition else ""
        text = f"{self.suite}: {self.expectation}({self.column}{where})"
        if self.wanted:
            text += f" [{self.wanted}]"
        if self.error:
            return f"{text}: error: {self.error}"
        text += f": {self.observed}"
        if self.examples:
            text += f", e.g. {'; '.join(self.examples)}"
        return text


@dataclass(frozen=True)
class SuiteStats:
    suite: str
    evaluated: int
    successful: int
    page: Path | None = None  # this run's Data Docs page for the suite
    n_rows: int | None = None  # rows of the table this suite saw
    validated_at: datetime | None = None  # GX's run time of the validation (UTC)

    @property
    def failed(self) -> int:
        return self.evaluated - self.successful


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of one validation (one or more suites run together)."""

    name: str  # urls | images | split
    success: bool
    suites: tuple[SuiteStats, ...]
    failures: tuple[FailedExpectation, ...]
    rows: int  # rows of the main table validated
    data_docs: Path  # index.html of the Data Docs site
    run_name: str = ""

    @property
    def pages(self) -> tuple[Path, ...]:
        """This run's Data Docs pages, failed suites first."""
        ordered = sorted(self.suites, key=lambda s: s.failed == 0)
        return tuple(s.page for s in ordered if s.page is not None)

    def summary(self) -> str:
        """One line for the outcome, then one line per failing expectation."""
        counts = ", ".join(f"{s.suite} {s.successful}/{s.evaluated}" for s in self.suites)
        head = (
            f"validation {self.name}: {'passed' if self.success else 'FAILED'} "
            f"({self.rows} rows; expectations met: {counts})"
        )
        return "\n".join([head, *(f"  - {f.line()}" for f in self.failures)])


class ValidationFailed(EmotionOpsError):
    """Data failed its expectation suites; the message lists every failing expectation."""

    exit_code = 1

    def __init__(self, reports: Sequence[ValidationReport], what: str = "") -> None:
        self.reports = tuple(reports)
        failed = [r for r in self.reports if not r.success]
        n = sum(len(r.failures) for r in failed)
        names = ", ".join(r.name for r in failed)
        # The page of the first failed suite: where a reviewer sees every unexpected row.
        pages = [p for r in failed for p in r.pages] or [r.data_docs for r in self.reports]
        docs = pages[0] if pages else ""
        head = (
            f"{what + ': ' if what else ''}validation failed ({names}; {n} failing "
            f"expectation{'s' if n != 1 else ''}); nothing was loaded. Data Docs: {docs}"
        )
        lines = [f"  - {f.line()}" for r in failed for f in r.failures]
        super().__init__("\n".join([head, *lines]))


def require(reports: Iterable[ValidationReport], what: str = "") -> None:
    """Raise ValidationFailed when any report failed."""
    reports = list(reports)
    if not all(r.success for r in reports):
        raise ValidationFailed(reports, what)


# From GX results (duck-typed: ExpectationSuiteValidationResult) ---------------------------


def _condition(kwargs: Mapping[str, Any]) -> str:
    cond = kwargs.get("row_condition")
    if cond is None or cond == "":
        return ""
    # A serialised Condition: {"column": {"name": ...}, "operator": ..., "parameter": ...}
    if isinstance(cond, Mapping):
        col = cond.get("column", {})
        name = col.get("name") if isinstance(col, Mapping) else col
        if name is not None and "operator" in cond:
            return f"{name} {cond['operator']} {cond.get('parameter')}"
    return str(cond)


def _wanted(kwargs: Mapping[str, Any]) -> str:
    parts = []
    for key in _WANTED:
        if key in ("column_A", "column_B") or kwargs.get(key) is None:
            continue
        value = kwargs[key]
        if isinstance(value, list | tuple | set) and len(value) > 8:
            value = [*list(value)[:8], "..."]
        parts.append(f"{key}={_short(value, 120)}")
    return ", ".join(parts)


def _examples(result: Mapping[str, Any], column: str, limit: int) -> tuple[str, ...]:
    out: list[str] = []
    indexed = result.get("partial_unexpected_index_list") or []
    plain = result.get("partial_unexpected_list") or []
    for item in indexed or plain:
        if isinstance(item, Mapping):
            value = item.get(column, next(iter(item.values()), None))
            where = ", ".join(
                f"{k}={_short(v, 48, quote=False)}"
                for k, v in item.items()
                if k != column and _plain(v) is not None and v == v  # skip nulls (NaN != NaN)
            )
            text = _short(value) + (f" ({where})" if where else "")
        else:
            text = _short(item)
        if text not in out:
            out.append(text)
        if len(out) >= limit:
            break
    return tuple(out)


def _error(exception_info: Any) -> str:
    """GX puts either {raised_exception, exception_message} or {metric_id: {...}} here."""
    if not exception_info:
        return ""
    infos = [exception_info] if "raised_exception" in exception_info else exception_info.values()
    for info in infos:
        info = info.to_json_dict() if hasattr(info, "to_json_dict") else info
        if isinstance(info, Mapping) and info.get("raised_exception"):
            return str(info.get("exception_message") or "raised an exception").splitlines()[0]
    return ""


def failures_from(
    suite: str, validation_result: Any, examples: int = 3, order: Sequence[str] = ()
) -> list[FailedExpectation]:
    """One FailedExpectation per unsuccessful result of a GX suite validation result, in the
    suite's order (`order`: expectation ids) when given: schema and types before bounds, so
    the root cause of a cascade (a width of "abc" breaks the width bound too) reads first."""
    rank = {eid: i for i, eid in enumerate(order)}
    results = sorted(
        validation_result.results,
        key=lambda r: rank.get(getattr(r.expectation_config, "id", None), len(rank)),
    )
    out = []
    for res in results:
        if res.success:
            continue
        config = res.expectation_config
        kwargs = dict(config.kwargs)
        column = str(
            kwargs.get("column")
            or ",".join(str(kwargs[k]) for k in ("column_A", "column_B") if k in kwargs)
        )
        result = dict(res.result or {})
        if "unexpected_count" in result:
            total = result.get("element_count", "?")
            observed = f"{result['unexpected_count']} of {total} rows unexpected"
        elif "details" in result and isinstance(result["details"], Mapping):
            mismatched = result["details"].get("mismatched", {})
            missing = mismatched.get("missing") if isinstance(mismatched, Mapping) else None
            observed = (
                f"missing columns {missing}"
                if missing
                else f"observed {result.get('observed_value')}"
            )
        else:
            observed = f"observed {_short(result.get('observed_value'))}"
        out.append(
            FailedExpectation(
                suite=suite,
                expectation=config.type,
                column=column,
                condition=_condition(kwargs),
                wanted=_wanted(kwargs),
                observed=observed,
                examples=_examples(result, column, examples),
                error=_error(res.exception_info),
            )
        )
    return out


@dataclass
class _Collector:
    """Builds a ValidationReport from several suites' results."""

    name: str
    examples: int
    suites: list[SuiteStats] = field(default_factory=list)
    failures: list[FailedExpectation] = field(default_factory=list)

    def add(
        self,
        suite: str,
        validation_result: Any,
        order: Sequence[str] = (),
        page: Path | None = None,
        n_rows: int | None = None,
    ) -> None:
        stats = validation_result.statistics
        when = (getattr(validation_result, "meta", None) or {}).get("validation_time")
        self.suites.append(
            SuiteStats(
                suite,
                stats["evaluated_expectations"],
                stats["successful_expectations"],
                page,
                n_rows,
                when if isinstance(when, datetime) else None,
            )
        )
        self.failures += failures_from(suite, validation_result, self.examples, order)

    def report(self, rows: int, data_docs: Path, run_name: str) -> ValidationReport:
        # A bound on a column holding text ("abc") cannot be evaluated: say why, in our words.
        mistyped = {
            (f.suite, f.column)
            for f in self.failures
            if f.expectation == "expect_column_values_to_be_in_type_list"
        }
        failures = [
            replace(f, error="not evaluated: the column holds values of the wrong type (above)")
            if f.error and (f.suite, f.column) in mistyped
            else f
            for f in self.failures
        ]
        return ValidationReport(
            name=self.name,
            success=not failures and all(s.failed == 0 for s in self.suites),
            suites=tuple(self.suites),
            failures=tuple(failures),
            rows=rows,
            data_docs=data_docs,
            run_name=run_name,
        )
