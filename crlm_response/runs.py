"""One library function per command: a typed request in, a typed result out, files written all or nothing.

The command line parses its options into these requests, calls one function, renders the result and sets the
exit code; a notebook or a pipeline calls the same functions without click. Checks come first: options that
cannot be used raise `OptionError` (a usage error), and an output that would destroy an input is refused, before
any file is read. Request fields carry the command's option names, and messages name the options.
"""

from __future__ import annotations

import dataclasses
import glob
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import writers  # writers.write_*: looked up at call time (tests stand in for a full disk)
from .assessment import Assessment, assess, get_rules
from .batch import BatchResult, accounting_lines, score_read
from .cohort import load_cohort, score_cohort
from .dates import DateOptions
from .diff import RuleDiff, VerdictDiff, compare_results, diff_rule_sets
from .engine import resolve_params
from .errors import CrlmError, OptionError, StrictModeError
from .options import (
    adam_labels,
    adam_paths,
    check_rule_set,
    checked_date,
    default_path,
    file_output,
    parse_criteria,
    parse_set_options,
)
from .outputs import case_inputs, check_outputs, rule_inputs
from .trial import ERROR_COLUMNS, SourceOptions, load_column_map
from .writers import all_or_nothing, remove_later, to_json

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


# --------------------------------------------------------------------------------------------------
# assess (and report): one case file
# --------------------------------------------------------------------------------------------------


@dataclass
class AssessRequest:
    """One case file to assess; `output` is where the caller will put the rendered result (checked only)."""

    case_file: Path
    criteria: str | Sequence[str] | None = None
    set_values: Sequence[str] = ()
    strict: bool = False
    output: Path | None = None
    adam_dir: Path | None = None
    adam_format: str = "csv"
    study_id: str | None = None


def run_assess(request: AssessRequest) -> Assessment:
    """Assess the case (with every decision explained) and write its ADaM datasets when asked for."""
    r = request
    requested = parse_criteria(r.criteria)
    output = file_output(r.output)
    adam = adam_paths(r.adam_dir, r.adam_format)
    if r.study_id and not r.adam_dir:
        raise OptionError("--study-id is for the ADaM datasets: add --adam-dir")
    if output is not None or adam:
        check_outputs({"-o": output, **adam_labels(adam)}, case_inputs(r.case_file, requested))
    settings = parse_set_options(r.set_values, requested or ())
    result = assess(r.case_file, criteria=requested, settings=settings, explain=True, strict=r.strict)
    if adam:
        with all_or_nothing():
            write_cdisc(result, None, None, adam, True, r.study_id)
    return result


def write_cdisc(
    result: Any,
    streams: Any,
    out_rs: Path | None,
    adam: dict[str, Path],
    safe_csv: bool,
    study_id: str | None = None,
    death_dates: Path | None = None,
) -> None:
    """SDTM RS (SDTM input) and the ADaM datasets (any input) of a batch result or an assessment, when asked for."""
    from .sdtm import response_result, rs_rows

    if out_rs is None and not adam:
        return
    response = response_result(result.results)
    if response is None:
        raise OptionError("RS and ADaM output need --criteria to include a response criteria set")
    if out_rs is not None:
        writers.write_table(rs_rows(response, streams), out_rs, safe_csv=safe_csv, name="RS")
    if adam:
        from .adam import adam_tables
        from .trial import read_subject_days

        deaths = read_subject_days(death_dates, "--death-dates") if death_dates is not None else None
        adrs, adtr = adam_tables(result.results, result.prepared, streams, study_id, deaths)
        writers.write_table(adrs, adam["adrs"], safe_csv=safe_csv, name="ADRS")
        writers.write_table(adtr, adam["adtr"], safe_csv=safe_csv, name="ADTR")


# --------------------------------------------------------------------------------------------------
# batch: trial tables
# --------------------------------------------------------------------------------------------------


@dataclass
class BatchRequest:
    """Everything a `batch` run is asked to do; the fields are the command's options."""

    lesions: str | None = None  # a file, a folder, or a glob (several files: --chunk-rows or --engine dask)
    organs: Path | None = None
    column_map: Path | None = None
    output: Path | None = None
    best_path: Path | None = None
    errors_path: Path | None = None
    summary: bool = False
    summary_file: Path | None = None
    criteria: str | Sequence[str] | None = None
    set_values: Sequence[str] = ()
    explain: bool = False
    strict: bool = False
    encoding: str = "auto"
    sheet: str | None = None
    safe_csv: bool = True
    sdtm_tu: Path | None = None
    sdtm_tr: Path | None = None
    out_rs: Path | None = None
    adam_dir: Path | None = None
    adam_format: str = "csv"
    study_id: str | None = None
    death_dates: Path | None = None
    sdtm_dm: Path | None = None
    date_imputation: str = DateOptions.imputation  # the defaults of DateOptions: no imputation, from baseline
    sd_from: str = DateOptions.sd_from
    engine: str = "pandas"
    scheduler: str | None = None
    workers: int | None = None
    partitions: int | None = None
    chunk_rows: int | None = None

    @property
    def sdtm(self) -> bool:
        return self.sdtm_tu is not None or self.sdtm_tr is not None

    @property
    def in_parts(self) -> bool:
        """Scored in subject-complete parts (--chunk-rows, or Dask), outputs written part by part."""
        return self.engine == "dask" or self.chunk_rows is not None


@dataclass
class BatchRun:
    """What a `batch` run did: its result and the outputs by kind (`dataset`: a partitioned folder)."""

    request: BatchRequest
    result: BatchResult
    outputs: dict[str, Path | None]
    dates_matter: bool = False  # a partial date met, or dates used otherwise than by default: say how

    @property
    def written(self) -> list[Path]:
        return [Path(p) for p in self.outputs.values() if p is not None and Path(p).exists()]

    def failure(self) -> CrlmError | None:
        """Why the run fails (exit 1): no subject scored, or (--strict) a row rejected or a warning raised."""
        nothing = self.result.nothing_scored()
        if nothing:
            where = f" (see {self.outputs['errors']})" if self.outputs.get("errors") else ""
            return CrlmError(nothing + where)
        rejected = sum(c["rejected"] for c in self.result.counts.values())
        if self.request.strict and (rejected or self.result.n_warnings):
            return StrictModeError(f"--strict: {rejected:,} row(s) rejected and {self.result.n_warnings:,} warning(s)")
        return None


@dataclass
class _Plan:
    criteria: list[str] | None
    settings: dict[str, dict[str, Any]]
    dates: DateOptions


def run_batch(request: BatchRequest, progress: Progress | None = None) -> BatchRun:
    """Score a trial table (or SDTM TU/TR) and write every output asked for, all or nothing.

    `progress` hears each step ("reading ...", "scoring ...", "writing")."""
    plan = _plan(request)
    if request.in_parts:
        return _run_in_parts(request, plan, progress or _quiet)
    return _run_in_memory(request, plan, progress or _quiet)


def _plan(r: BatchRequest) -> _Plan:
    """The options checked together, in the order a user fixes them: inputs, outputs, criteria, engine."""
    if r.sdtm and (r.sdtm_tu is None or r.sdtm_tr is None):
        raise OptionError("SDTM input needs both --sdtm-tu and --sdtm-tr")
    if r.sdtm and r.lesions is not None:
        raise OptionError("give either a lesion table or --sdtm-tu/--sdtm-tr, not both")
    if not r.sdtm and r.lesions is None:
        raise OptionError("give a lesion table (CSV or Parquet), or --sdtm-tu and --sdtm-tr")
    if r.out_rs and not r.sdtm:
        raise OptionError("--out-rs needs SDTM input (--sdtm-tu and --sdtm-tr)")
    if (r.study_id or r.death_dates) and not r.adam_dir:
        raise OptionError("--study-id and --death-dates are for the ADaM datasets: add --adam-dir")
    if r.sdtm_dm is not None and not r.sdtm:
        raise OptionError("--sdtm-dm needs SDTM input (--sdtm-tu and --sdtm-tr)")
    if r.sd_from == "randomisation" and r.sdtm_dm is None:
        raise OptionError("--sd-from randomisation needs --sdtm-dm: an ADSL (or DM) with RANDDT per subject")
    dates = DateOptions(r.date_imputation, r.sd_from)
    if r.output is None and not r.summary and r.summary_file is None and r.out_rs is None and r.adam_dir is None:
        raise OptionError("give -o/--output for the results, or --summary to print only the summary")
    requested = parse_criteria(r.criteria)
    settings = parse_set_options(r.set_values, requested or ())
    if r.in_parts:
        if r.sdtm or r.out_rs or r.adam_dir:
            raise OptionError("SDTM input and RS/ADaM output run on the pandas engine without --chunk-rows")
        if r.engine == "dask" and r.chunk_rows is not None:
            raise OptionError("--chunk-rows is for the pandas engine; the dask engine partitions by itself")
    elif r.scheduler or r.workers or r.partitions:
        raise OptionError("--scheduler, --workers and --partitions need --engine dask")
    return _Plan(requested, settings, dates)


def _run_in_memory(r: BatchRequest, plan: _Plan, say: Progress) -> BatchRun:
    lesions_path = single_input(r.lesions) if r.lesions is not None else None
    outputs = batch_outputs(r.output, r.best_path, r.errors_path)
    adam = adam_paths(r.adam_dir, r.adam_format)
    check_outputs(
        {
            **output_labels(outputs, r.best_path, r.errors_path),
            "--summary-file": r.summary_file,
            "--out-rs": r.out_rs,
            **adam_labels(adam),
        },
        [input_folder(r.lesions), lesions_path, r.organs, r.column_map, r.sdtm_tu, r.sdtm_tr, r.sdtm_dm]
        + [r.death_dates, *rule_inputs(plan.criteria)],
    )
    requested, streams = plan.criteria, None
    if r.sdtm:
        from .sdtm import read_sdtm

        say("reading SDTM TU/TR")
        assert r.sdtm_tu is not None and r.sdtm_tr is not None
        options = SourceOptions(r.encoding, r.sheet)
        read, streams = read_sdtm(r.sdtm_tu, r.sdtm_tr, options=options, dm_path=r.sdtm_dm, sd_from=r.sd_from)
        requested = requested or ["recist1.1"]
    else:
        from .trial import read_long

        assert lesions_path is not None
        say("reading " + lesions_path.name)
        options = SourceOptions(r.encoding, r.sheet, load_column_map(r.column_map), r.strict)
        read = read_long(lesions_path, organs=r.organs, options=options)
    result = score_read(read, requested or None, plan.settings, explain=r.explain, progress=say, dates=plan.dates)
    say("writing")
    with all_or_nothing():
        write_batch(result, outputs, r.safe_csv)
        write_cdisc(result, streams, r.out_rs, adam, r.safe_csv, r.study_id, r.death_dates)
        write_summary_file(result, r.summary_file)
    return BatchRun(r, result, outputs, dates_used(result) or r.sdtm_dm is not None)


def _run_in_parts(r: BatchRequest, plan: _Plan, say: Progress) -> BatchRun:
    """Subject-complete parts scored one at a time (--chunk-rows) or on Dask; outputs written part by part."""
    from .engines import OUTPUT_KINDS, ResultSink, connect, run_chunked, run_dask

    if r.lesions is None:
        raise OptionError("give the lesion table(s)")
    inputs = expand_inputs(r.lesions)
    folder = r.output if r.output is not None and _names_a_folder(r.output) else None
    outputs: dict[str, Path | None] = (
        dict.fromkeys(OUTPUT_KINDS) if folder else batch_outputs(r.output, r.best_path, r.errors_path)
    )
    check_outputs(
        {**output_labels(outputs, r.best_path, r.errors_path), "--summary-file": r.summary_file},
        [input_folder(r.lesions), *inputs, r.organs, r.column_map, *rule_inputs(plan.criteria)],
        folders={"-o": folder},
    )
    options = SourceOptions(r.encoding, r.sheet, load_column_map(r.column_map), strict=r.strict)
    sink = ResultSink(outputs, folder, r.safe_csv)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    client = None
    try:
        if r.engine == "dask":
            say("connecting to Dask")
            client = connect(r.scheduler, r.workers)
            run_dask(
                inputs,
                sink,
                r.organs,
                plan.criteria,
                plan.settings,
                client,
                r.partitions,
                options,
                say,
                explain=r.explain,
                dates=plan.dates,
            )
        else:
            rows = r.chunk_rows or 1_000_000
            run_chunked(
                inputs,
                sink,
                r.organs,
                plan.criteria,
                plan.settings,
                rows,
                options,
                progress=say,
                explain=r.explain,
                dates=plan.dates,
            )
        with all_or_nothing():
            result = sink.finish(plan.dates)
            write_summary_file(result, r.summary_file)
    except BaseException:
        sink.abort()
        raise
    finally:
        _disconnect(client, own_cluster=not r.scheduler)
    shown: dict[str, Path | None] = {"dataset": folder} if folder is not None else dict(outputs)
    return BatchRun(r, result, shown, dates_used(result))


def _names_a_folder(output: Path) -> bool:
    """-o for a partitioned Parquet dataset: no suffix, an existing folder, or a path ending in /."""
    return output.suffix == "" or output.is_dir() or str(output).endswith("/")


def _disconnect(client: Any, own_cluster: bool) -> None:
    if client is None:
        return
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None and own_cluster:
        cluster.close()


def dates_used(result: BatchResult) -> bool:
    """Whether the run met a partial date or was asked to treat dates otherwise than by default."""
    codes = set(result.warning_summary()["code"])  # a run written part by part keeps only the summary
    return bool(codes & {"partial_date", "date_imputed"}) or result.dates != DateOptions()


def expand_inputs(pattern: str | Path) -> list[Path]:
    """A file, a folder (its .parquet / .csv files) or a glob such as 'cohort/*.parquet'."""
    path, pattern = Path(pattern), str(pattern)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".parquet", ".pq", ".csv"))
    elif any(ch in pattern for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(pattern))
    else:
        files = [path]
    if not files:
        raise CrlmError("no input files match", file=pattern, hint="give a CSV/Parquet file, a folder, or a glob")
    return files


def input_folder(pattern: str | Path | None) -> Path | None:
    """A folder given as the lesion input: outputs must stay out of it (the next run would read them)."""
    return Path(pattern) if pattern is not None and Path(pattern).is_dir() else None


def single_input(pattern: str | Path) -> Path:
    files = expand_inputs(pattern)
    if len(files) > 1:
        raise OptionError(
            f"{str(pattern)!r} names {len(files)} files; several files need --chunk-rows or --engine dask"
        )
    return files[0]


def batch_outputs(output: Path | None, best: Path | None, errors: Path | None) -> dict[str, Path | None]:
    """The output files by kind: -o, and the side files next to it unless --best / --errors name them."""
    if output is None:
        return {"visits": None, "best": best, "errors": errors, "warnings": None, "flags": None, "lesions": None}
    return {
        "visits": output,
        "best": best or default_path(output, "best"),
        "errors": errors or default_path(output, "errors"),
        "warnings": default_path(output, "warnings"),
        "flags": default_path(output, "flags"),
        "lesions": default_path(output, "lesions"),
    }


def output_labels(outputs: dict[str, Path | None], best: Path | None, errors: Path | None) -> dict[str, Path | None]:
    """Batch outputs by the option that names them, as messages show them (`-o (warnings file)`)."""
    given = {"visits": "-o", "best": "--best" if best else None, "errors": "--errors" if errors else None}
    return {(given.get(kind) or f"-o ({kind} file)"): path for kind, path in outputs.items()}


def write_batch(result: BatchResult, outputs: dict[str, Path | None], safe_csv: bool) -> None:
    """The result tables to their files; an empty side table removes an earlier run's file instead."""
    tables = result.tables()
    always = {"visits", "best", "errors"}
    for name, path in outputs.items():
        if path is None:
            continue
        frame = tables[name]
        if frame.empty and name not in always:
            remove_later(path)  # an earlier run's file must not pass for this run's
            continue
        if frame.empty and name == "errors":
            frame = frame.reindex(columns=ERROR_COLUMNS)
        writers.write_table(frame, path, safe_csv=safe_csv)


def write_summary_file(result: BatchResult, summary_file: Path | None) -> None:
    """--summary-file: JSON (summary, accounting, how dates were used) or a table (.csv, .parquet ...)."""
    from .summary import summary_table

    if summary_file is None:
        return
    if summary_file.suffix.lower() == ".json":
        extra = {"parameters": result.dates.parameters()}
        writers.write_text(summary_file, to_json({"summary": result.summary, "counts": result.counts, **extra}))
    else:
        writers.write_table(summary_table(result.summary), summary_file)


# --------------------------------------------------------------------------------------------------
# bor: best overall response from responses already assigned per visit
# --------------------------------------------------------------------------------------------------


@dataclass
class BorRequest:
    """A `bor` run: the per-visit responses, where the table goes (None: standard output), the settings."""

    visits: Path
    output: Path | None = None
    errors_path: Path | None = None
    confirm: bool = False
    sd_min_days: int = 42
    confirm_days: int = 28
    max_ne_between: int = 1
    accept_sd_between: bool = False
    missing_as_ne: bool = False
    stop_at_pd: bool = True
    reference_date: str | None = None
    pd_dates: Path | None = None
    criteria: str = "recist1.1"
    encoding: str = "auto"
    sheet: str | None = None


@dataclass
class BorRun:
    """One row per subject (and reader), the accounting line, subjects with a PR after a CR, files written."""

    table: pd.DataFrame
    accounting: str
    cr_then_pr: list[str]
    output: Path | None  # None: the caller prints the table
    errors: Path | None
    nothing: str | None = None

    def warning_lines(self) -> list[str]:
        return [
            f"warning recist_cr_then_pr: {subject}: a PR follows a CR; re-read both scans (E2009 Table 3 note)"
            for subject in self.cr_then_pr
        ]

    def failure(self) -> CrlmError | None:
        if not self.nothing:
            return None
        shown = self.output is not None and self.errors is not None
        return CrlmError(self.nothing + (f" (see {self.errors})" if shown else ""))


def run_bor(request: BorRequest, progress: Progress | None = None) -> BorRun:
    """Best overall response per subject by the same code `assess` uses (REFERENCE §1.9); writes -o/--errors.

    `progress` hears the accounting line as soon as the input is read, so it is said even when a write fails."""
    from .bor import BorSettings, best_by_reader
    from .sdtm import rs_category_of
    from .trial import progression_days, read_responses, read_subject_days

    r = request
    if r.reference_date is not None:
        r = dataclasses.replace(r, reference_date=checked_date(r.reference_date, "'--reference-date'"))
    output = file_output(r.output)
    errors = r.errors_path or (default_path(output, "errors") if output else None)
    check_outputs({"-o": output, ("--errors" if r.errors_path else "-o (errors file)"): errors}, [r.visits, r.pd_dates])
    rules = get_rules(r.criteria)
    if rules.schema.best_response is None:
        raise OptionError(f"--criteria {r.criteria}: this criteria set has no best overall response")
    category = rs_category_of(rules)
    data = read_responses(
        r.visits,
        rules.scale,
        r.reference_date,
        r.encoding,
        sheet=r.sheet,
        criteria_name=category,
        criteria_id=rules.schema.id,
    )
    settings = BorSettings(
        confirmation_required=r.confirm,
        min_confirmation_interval_days=r.confirm_days,
        sd_min_days=r.sd_min_days,
        max_ne_between_confirmation=r.max_ne_between,
        accept_sd_between_pr_confirmation=r.accept_sd_between,
        stop_at_first_pd=r.stop_at_pd,
        missing_as_ne=r.missing_as_ne,
    )
    pd_day = (
        progression_days(data, read_subject_days(r.pd_dates, "--pd-dates"), str(r.pd_dates)) if r.pd_dates else None
    )
    table, result = best_by_reader(
        data.frame, settings, rules.scale, rules.schema.best_response.method, pd_day, data.population
    )
    (line,) = accounting_lines(data.ledger.counts())
    (progress or _quiet)(line)
    with all_or_nothing():
        if output is not None:
            writers.write_table(table, output)
        if errors is not None:
            rejected = data.ledger.table()
            writers.write_table(rejected if not rejected.empty else pd.DataFrame(columns=ERROR_COLUMNS), errors)
    cr_then_pr = [str(w.subject) for w in result.cr_then_pr.itertuples()]
    return BorRun(table, line, cr_then_pr, output, errors, data.nothing_scored(len(table)))


# --------------------------------------------------------------------------------------------------
# diff: two criteria sets, and the verdicts that change on a cohort
# --------------------------------------------------------------------------------------------------


@dataclass
class DiffRequest:
    rule_set_a: str
    rule_set_b: str
    cases: Path | None = None  # a case file, a folder of case files, or a batch table
    set_a: Sequence[str] = ()
    set_b: Sequence[str] = ()
    output: Path | None = None  # the reclassified subjects (CSV)
    column_map: Path | None = None
    organs: Path | None = None
    encoding: str = "auto"
    sheet: str | None = None


@dataclass
class DiffRun:
    label_a: str
    label_b: str
    rules: RuleDiff
    verdicts: VerdictDiff | None = None
    accounting: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON contract of `diff --format json`."""
        data: dict[str, Any] = {
            "a": self.label_a,
            "b": self.label_b,
            "rules": {"identical": self.rules.identical, "changes": [c.as_dict() for c in self.rules.ordered()]},
        }
        if self.verdicts is not None:
            data["verdicts"] = self.verdicts.as_dict()
        return data


def run_diff(request: DiffRequest) -> DiffRun:
    """The rules that differ between two sets (with their overrides), and with a cohort whose verdict changes."""
    r = request
    check_rule_set(r.rule_set_a, "RULE_SET_A")
    check_rule_set(r.rule_set_b, "RULE_SET_B")
    check_outputs({"-o": r.output}, [r.cases, r.column_map, r.organs, *rule_inputs([r.rule_set_a, r.rule_set_b])])
    rules_a, rules_b = get_rules(r.rule_set_a), get_rules(r.rule_set_b)
    overrides_a = parse_set_options(r.set_a, [r.rule_set_a], "--set-a").get(rules_a.id, {})
    overrides_b = parse_set_options(r.set_b, [r.rule_set_b], "--set-b").get(rules_b.id, {})
    for values, rules, option in ((r.set_a, rules_a, "--set-a"), (r.set_b, rules_b, "--set-b")):
        for item in values:
            if not item.startswith(rules.id + "."):
                raise OptionError(f"{item!r} does not name set `{rules.id}`", option)
    params_a, params_b = resolve_params(rules_a, overrides_a), resolve_params(rules_b, overrides_b)
    same = rules_a.id == rules_b.id
    run = DiffRun(
        rules_a.id + (" (A)" if same else ""),
        rules_b.id + (" (B)" if same else ""),
        diff_rule_sets(rules_a, rules_b, params_a, params_b),
    )
    if r.cases is None:
        return run
    cohort = load_cohort(r.cases, r.column_map, r.organs, r.encoding, r.sheet)
    if rules_a.schema.best_response is None or rules_b.schema.best_response is None:
        raise OptionError("verdicts can only be compared between sets with a best response (not toxicity)")
    from .tables import object_strings

    with object_strings():
        result_a = score_cohort(cohort, rules_a, overrides_a)
        result_b = score_cohort(cohort, rules_b, overrides_b)
        run.verdicts = compare_results(result_a, result_b, run.label_a, run.label_b)
    run.accounting = cohort.accounting
    if r.output is not None:
        writers.write_table(run.verdicts.reclassified(), r.output)
    return run


# --------------------------------------------------------------------------------------------------
# plot, import-sr, rules list
# --------------------------------------------------------------------------------------------------


@dataclass
class PlotRequest:
    kind: str  # waterfall | spider | swimmer
    results: Path  # batch -o (its .best file is read too, when there)
    output: Path
    criteria: str | None = None
    rules_file: Path | None = None
    title: str | None = None
    label_subjects: bool = False
    group_by: str | None = None
    groups_file: Path | None = None
    data_cut: float | None = None


def run_plot(request: PlotRequest) -> dict[str, Any]:
    """Draw the plot; returns what was drawn (`subjects`, `name` of the criteria set)."""
    from .plots import PLOTS, group_column, read_groups, read_results

    r = request
    if r.data_cut is not None and r.kind != "swimmer":
        raise OptionError("--data-cut is for the swimmer plot")
    if r.groups_file is not None and r.group_by is None:
        raise OptionError("--groups needs --group-by COLUMN")
    best_file = r.results.with_name(f"{r.results.stem}.best{r.results.suffix}")
    check_outputs({"-o": r.output}, [r.results, best_file, r.rules_file, r.groups_file])
    visits, best = read_results(r.results)
    rules = get_rules(r.rules_file) if r.rules_file is not None else None
    extra: dict[str, Any] = {"rules": rules, "label_subjects": r.label_subjects}
    if r.group_by is not None:
        extra["groups"] = (
            read_groups(r.groups_file, r.group_by)
            if r.groups_file
            else group_column(visits, best, r.group_by, r.results)
        )
    if r.data_cut is not None:
        extra["data_cut_week"] = r.data_cut
    info: dict[str, Any] = PLOTS[r.kind](visits, best, r.output, r.criteria, r.title, **extra)
    return info


def run_import_sr(
    paths: Sequence[Path],
    output: Path,
    id_from: str = "identifier",
    targets: str | None = None,
    non_targets: str | None = None,
    case_id: str | None = None,
) -> Any:
    """A case file from one patient's DICOM SR reports, written to `output`; returns the `ImportResult`."""
    from .dicom_sr import import_sr

    check_outputs({"-o": output}, paths)
    result = import_sr(
        paths,
        id_from=id_from,  # type: ignore[arg-type]  # the command's choice list checked it
        targets=[targets] if targets else None,
        non_targets=[non_targets] if non_targets else None,
        case_id=case_id,
    )
    check_outputs({"-o": output}, result.files)
    writers.write_text(output, result.text)
    return result


@dataclass
class RuleFileCheck:
    """One rule file checked by `rules validate`: what it holds, or why it cannot be used."""

    file: Path
    rules: Any = None  # the LoadedRuleSet, when the file is valid
    error: CrlmError | None = None

    @property
    def line(self) -> str:
        if self.error is not None:
            return f"Error: {self.error}"
        r = self.rules
        return (
            f"{self.file}: OK ({r.id}; {len(r.schema.parameters)} parameters, {len(r.outputs)} outputs, "
            f"{len(r.flags)} flags; {' -> '.join(r.chain)})"
        )


def check_rule_files(files: Sequence[Path]) -> list[RuleFileCheck]:
    """Each rule file against the schema and the metric vocabulary, with `extends:` resolved."""
    from .rules import load_rules

    checks = []
    for file in files:
        try:
            checks.append(RuleFileCheck(file, rules=load_rules(file)))
        except CrlmError as exc:
            checks.append(RuleFileCheck(file, error=exc))
    return checks


def rule_set_rows() -> list[dict[str, Any]]:
    """The shipped rule sets with their main citation and the inputs they need (`rules list`)."""
    from .rules import builtin_ids, main_citation

    rows = []
    for rule_id in builtin_ids():
        rules = get_rules(rule_id)
        rows.append(
            {
                "id": rules.id,
                "name": rules.schema.name,
                "kind": rules.schema.kind,
                "inputs": rules.schema.inputs,
                "citation": main_citation(rules),
                "description": " ".join(rules.schema.description.split()),
            }
        )
    return rows
