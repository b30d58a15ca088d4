"""The `crlm-response` command line: parse arguments, call one library function, render, set the exit code.

Exit codes: 0 success, 1 input errors (a file or value the tool cannot use), 2 usage errors (a wrong option
or argument; click's own code).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import pandas as pd
from rich.console import Console

from . import __version__
from .assessment import assess, get_rules
from .dates import DateOptions
from .errors import EXIT_INPUT_ERROR, CrlmError, SettingsError
from .render import render_assessment, render_rule_set, render_rules_list, to_json
from .rules import builtin_ids, check_parameter_value, describe, main_citation
from .yamlio import YamlError, parse_yaml

if TYPE_CHECKING:
    from .batch import BatchResult

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _console(stderr: bool = False) -> Console:
    interactive = (sys.stderr if stderr else sys.stdout).isatty()
    width = None if interactive else int(os.environ.get("COLUMNS", "140"))
    # markup=False: file names and ids are printed as written (a file named `v[bold].csv` keeps its brackets)
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=False, markup=False)


class _UsageProblem(click.ClickException):
    """`Error: ...` with exit code 2: a usage error the library found (e.g. an output path that is an input)."""

    exit_code = 2


class CrlmGroup(click.Group):
    """Turns library errors into `Error: ...` lines and exit code 1 (2 for a usage error such as an output path
    that is an input); never a traceback. SIGTERM ends the run through the same clean-up as an error."""

    def invoke(self, ctx: click.Context) -> Any:
        from .writers import Terminated, clean_stop

        try:
            with clean_stop():
                return super().invoke(ctx)
        except Terminated as exc:
            if ctx.parent is None:
                click.echo(f"Error: stopped by {exc.signal_name}; no output was changed half-way", err=True)
            raise
        except CrlmError as exc:
            raise (_UsageProblem if exc.exit_code == 2 else click.ClickException)(str(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except MemoryError:
            raise click.ClickException("out of memory; see README 'Safety and limits'") from None
        except Exception as exc:  # noqa: BLE001 - the last guard before a user would see a traceback
            if os.environ.get("CRLM_DEBUG"):
                raise
            raise click.ClickException(
                f"internal error ({type(exc).__name__}: {exc}); please report it with the input "
                "(set CRLM_DEBUG=1 to see the traceback)"
            ) from None


def parse_set_options(
    values: Sequence[str], references: Sequence[str | Path] = (), option: str = "--set"
) -> dict[str, dict[str, Any]]:
    """`recist1.1.sd_min_days=56` -> {"recist1.1": {"sd_min_days": 56}}; rule-set ids may contain dots.

    `references` are the rule sets in play (ids or files), so a site variant's own id can be set too."""
    out: dict[str, dict[str, Any]] = {}
    known: dict[str, str | Path] = {rule_id: rule_id for rule_id in builtin_ids()}
    for reference in references:
        if reference != "all":
            known[get_rules(reference).id] = reference
    longest_first = sorted(known, key=len, reverse=True)  # `mchoi.x` must not match `choi`
    for item in values:
        shown = _shorten(item)
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(
                f"{shown!r}: write RULESET.PARAMETER=VALUE, e.g. recist1.1.sd_min_days=56", param_hint=option
            )
        key = key.strip()
        rule_id = next((i for i in longest_first if key.startswith(i + ".")), None)
        if rule_id is None:
            raise click.BadParameter(
                f"{shown!r}: `{_shorten(key)}` does not start with a rule set id ({', '.join(sorted(known))})",
                param_hint=option,
            )
        name = key[len(rule_id) + 1 :]
        rules = get_rules(known[rule_id])
        if name not in rules.schema.parameters:
            raise click.BadParameter(
                f"{shown!r}: `{rule_id}` has no parameter `{_shorten(name)}`; parameters: "
                + ", ".join(sorted(rules.schema.parameters)),
                param_hint=option,
            )
        try:
            value = _set_value(raw)
            value = check_parameter_value(rules, name, value, f"{rule_id}.{name}")
        except (SettingsError, YamlError) as exc:
            raise click.BadParameter(f"{shown!r}: {_shorten(exc.message)}", param_hint=option) from None
        out.setdefault(rule_id, {})[name] = value
    return out


def _set_value(raw: str) -> Any:
    """A `--set` value read as YAML (numbers, yes/no, lists) with the same safety limits as input files;
    text that is not valid YAML stays text (the parameter check then says what is expected)."""
    if not raw.strip():
        return None
    try:
        value, _ = parse_yaml(raw, "--set")
    except YamlError as exc:
        if exc.message.startswith("invalid YAML"):
            return raw
        raise
    return value


def _check_date(value: str | None) -> str | None:
    """A date option, checked before any file is read (by the parser every table date goes through)."""
    from .sources import parse_dates

    if value is not None:
        _, problem = parse_dates(pd.Series([value.strip()], dtype=object), "date")
        if problem[0] is not None or len(value.strip()) != 10:
            raise click.BadParameter(f"{_shorten(value)!r} is not a date (YYYY-MM-DD)")
        return value.strip()
    return value


def _shorten(text: str, limit: int = 200) -> str:
    """Echo user input in a message without letting a huge value flood the terminal."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


def _criteria_option(value: str | None) -> list[str] | None:
    if not value:
        return None
    ids = [v.strip() for v in value.split(",") if v.strip()]
    if ids == ["all"]:
        return ids
    for rule_id in ids:
        if rule_id in builtin_ids() or Path(rule_id).is_file():
            continue
        if _looks_like_a_path(rule_id):
            raise click.BadParameter(f"rule file `{rule_id}` not found", param_hint="--criteria")
        raise click.BadParameter(
            f"unknown criteria `{rule_id}`; choose from {', '.join(builtin_ids())}, `all`, or give a rule file",
            param_hint="--criteria",
        )
    return ids


def _looks_like_a_path(text: str) -> bool:
    return Path(text).suffix.lower() in (".yaml", ".yml") or "/" in text or os.sep in text


def _file_output(path: Path | None) -> Path | None:
    """An -o path, or None for standard output (`-o -`)."""
    from .outputs import is_stdout

    return None if path is None or is_stdout(path) else path


criteria_opt = click.option(
    "--criteria",
    "-c",
    metavar="IDS",
    help="Comma-separated rule-set ids or files, or `all` (default: the case's own list, "
    "else RECIST 1.1, toxicity and every set whose inputs the case has).",
)
set_opt = click.option(
    "--set",
    "set_values",
    multiple=True,
    metavar="ID.PARAM=VALUE",
    help="Override a rule-set parameter, e.g. --set recist1.1.confirmation_required=true "
    "(repeatable; wins over the case's settings).",
)


def adam_opts(func: Any) -> Any:
    """--adam-dir, --adam-format and --study-id (batch and assess)."""
    func = click.option(
        "--study-id", metavar="ID", help="ADaM STUDYID when the input has no STUDYID / study_id column."
    )(func)
    func = click.option(
        "--adam-format",
        type=click.Choice(["csv", "parquet", "xpt", "json"]),
        default="csv",
        show_default=True,
        help="Format of the ADaM datasets: xpt is SAS V5 transport, json is CDISC Dataset-JSON 1.1.",
    )(func)
    return click.option(
        "--adam-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Write ADaM ADRS (OVR, BOR, CBOR, RSP, CRSP, CB, CCB, BCP, CBCP, PD, LSTA, MDIS) and ADTR (LDIAMn, "
        "NLDIAMn, SDIAM) into this folder, for every response criteria set of the run.",
    )(func)


@click.group(cls=CrlmGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="crlm-response")
def cli() -> None:
    """Response criteria and chemotherapy toxicity flags for colorectal liver metastases.

    Assess one patient's lesion tables with RECIST 1.1, Choi, Chun morphologic criteria and more, score
    whole trials, and compare criteria sets. Exit codes: 0 success, 1 input error, 2 usage error.

    Example:

        crlm-response assess sample_cases/folfox_bev_partial_response.yaml --explain
    """


@cli.command("assess", context_settings=CONTEXT_SETTINGS)
@click.argument("case_file", type=click.Path(dir_okay=False, path_type=Path))
@criteria_opt
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Terminal tables, or the machine-readable JSON contract.",
)
@click.option("--explain", is_flag=True, help="Add one line per decision: the rule that fired and its numbers.")
@set_opt
@click.option("--strict", is_flag=True, help="Treat every warning as an error (exit 1).")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Write to a file instead of stdout (`-` for stdout).",
)
@adam_opts
def assess_cmd(
    case_file: Path,
    criteria: str | None,
    fmt: str,
    explain: bool,
    set_values: tuple[str, ...],
    strict: bool,
    output: Path | None,
    adam_dir: Path | None,
    adam_format: str,
    study_id: str | None,
) -> None:
    """Assess one case file: response per timepoint, best overall response, toxicity flags.

    Example:

        crlm-response assess sample_cases/folfox_bev_partial_response.yaml --explain
    """
    from .outputs import case_inputs, check_outputs

    requested = _criteria_option(criteria)
    output = _file_output(output)
    adam = {n: adam_dir / f"{n}.{adam_format}" for n in ("adrs", "adtr")} if adam_dir else {}
    if study_id and not adam_dir:
        raise click.UsageError("--study-id is for the ADaM datasets: add --adam-dir")
    if output is not None or adam:
        labels = {f"--adam-dir ({n.upper()})": p for n, p in adam.items()}
        check_outputs({"-o": output, **labels}, case_inputs(case_file, requested))
    settings = parse_set_options(set_values, requested or ())
    result = assess(case_file, criteria=requested, settings=settings, explain=True, strict=strict)
    if adam:
        from .writers import all_or_nothing

        with all_or_nothing():
            _write_cdisc(result, None, None, adam, True, study_id)
    data = result.to_dict()
    if fmt == "json":
        text = to_json(data)
        if output:
            from .writers import write_text

            write_text(output, text)
        else:
            click.echo(text, nl=False)
        return
    if output:
        from .writers import write_text

        console = Console(record=True, width=140, file=open(os.devnull, "w"))  # noqa: SIM115
        render_assessment(console, data, explain=explain, rule_sets={k: r.rule_set for k, r in result.results.items()})
        write_text(output, console.export_text())
        return
    render_assessment(_console(), data, explain=explain, rule_sets={k: r.rule_set for k, r in result.results.items()})


@cli.group("rules", cls=CrlmGroup, context_settings=CONTEXT_SETTINGS)
def rules_group() -> None:
    """List, show and validate rule sets (criteria as YAML data).

    Example:

        crlm-response rules show recist1.1
    """


@rules_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def rules_list(fmt: str) -> None:
    """List the shipped rule sets with their main citation and the inputs they need.

    Example:

        crlm-response rules list
    """
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
    if fmt == "json":
        click.echo(to_json({"rule_sets": rows}), nl=False)
    else:
        render_rules_list(_console(), rows)


@rules_group.command("show")
@click.argument("rule_set")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def rules_show(rule_set: str, fmt: str) -> None:
    """Show one rule set: parameters with units and citations, decision lists, flags, references.

    Example:

        crlm-response rules show recist1.1
    """
    if rule_set not in builtin_ids() and not Path(rule_set).is_file():
        raise click.BadParameter(
            f"unknown rule set `{rule_set}`; choose from {', '.join(builtin_ids())} or give a file",
            param_hint="RULE_SET",
        )
    info = describe(get_rules(rule_set))
    if fmt == "json":
        click.echo(to_json(info), nl=False)
    else:
        render_rule_set(_console(), info)


@rules_group.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def rules_validate(files: tuple[Path, ...]) -> None:
    """Check rule files against the schema and the metric vocabulary (with `extends:` resolved).

    Example:

        crlm-response rules validate my_site_recist.yaml
    """
    from .rules import load_rules

    failures = 0
    for file in files:
        try:
            rules = load_rules(file)
        except CrlmError as exc:
            failures += 1
            click.echo(f"Error: {exc}", err=True)
            continue
        chain = " -> ".join(rules.chain)
        click.echo(
            f"{file}: OK ({rules.id}; {len(rules.schema.parameters)} parameters, {len(rules.outputs)} outputs, "
            f"{len(rules.flags)} flags; {chain})"
        )
    if failures:
        sys.exit(EXIT_INPUT_ERROR)


@rules_group.command("metrics")
@click.option("--level", type=click.Choice(["lesion", "timepoint", "subject"]), help="Only this level.")
def rules_metrics(level: str | None) -> None:
    """List the vocabulary rule conditions may use: metrics with level, type, unit and meaning.

    Example:

        crlm-response rules metrics --level timepoint
    """
    from rich.table import Table

    from .functions import function_help
    from .metrics import METRICS

    table = Table(show_edge=False)
    for column in ("name", "level", "type", "unit", "meaning"):
        table.add_column(column)
    for name, m in sorted(METRICS.items(), key=lambda kv: (kv[1].level, kv[0])):
        if level and m.level != level:
            continue
        table.add_row(name, m.level, m.type, m.unit, m.doc.split("\n")[0])
    console = _console()
    console.print(table)
    console.print("Functions: " + "; ".join(function_help()))


def _default_path(output: Path, suffix: str) -> Path:
    """`responses.csv` -> `responses.best.csv` (same folder, same format)."""
    return output.with_name(f"{output.stem}.{suffix}{output.suffix or '.csv'}")


def _Steps() -> Any:  # noqa: N802 - used as `with _Steps() as step:`
    """A progress bar on stderr for a batch that runs longer than a couple of seconds, when stderr is a terminal;
    silent otherwise (pipes, CI, tests)."""
    from .render import BatchProgress

    return BatchProgress(_console(stderr=True))


@cli.command("batch", context_settings=CONTEXT_SETTINGS)
@click.argument("lesions", required=False)
@click.option(
    "--organs",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Organ and PET measurements in a second table keyed by subject_id and timepoint.",
)
@click.option(
    "--map",
    "column_map",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML column map for exports whose column names differ (see README).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    help="Per-visit responses (.csv, .parquet, .json/.ndjson Dataset-JSON); side files go next to it. With "
    "--engine dask or --chunk-rows "
    "it may be a folder (ending in /): a partitioned Parquet dataset, one sub-folder per output.",
)
@click.option(
    "--best",
    "best_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Best overall response per subject (default: OUTPUT stem + .best).",
)
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Rejected rows with line, subject and reason (default: OUTPUT stem + .errors).",
)
@click.option("--summary", is_flag=True, help="Print subjects, best-response counts, ORR and DCR with exact 95 % CIs.")
@click.option(
    "--summary-file", type=click.Path(dir_okay=False, path_type=Path), help="Write the summary (.json or .csv)."
)
@criteria_opt
@set_opt
@click.option("--explain", is_flag=True, help="Add an explanation column (slower on large inputs).")
@click.option("--strict", is_flag=True, help="Exit 1 if any row was rejected or any warning raised.")
@click.option(
    "--encoding", default="auto", show_default=True, help="Text encoding of CSV inputs (auto: UTF-8, BOM-aware)."
)
@click.option("--sheet", metavar="NAME", help="Excel inputs (.xlsx): the sheet to read (default: the first).")
@click.option("--no-safe-csv", is_flag=True, help="Do not neutralise cells that a spreadsheet would run as formulas.")
@click.option(
    "--sdtm-tu", type=click.Path(dir_okay=False, path_type=Path), help="SDTM TU domain (CSV, Parquet or XPT)."
)
@click.option(
    "--sdtm-tr", type=click.Path(dir_okay=False, path_type=Path), help="SDTM TR domain (CSV, Parquet or XPT)."
)
@click.option(
    "--out-rs",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write SDTM RS rows (TRGRESP, NTRGRESP, NEWLPROG, OVRLRESP) from the RECIST 1.1 results "
    "(.csv, .parquet, .xpt SAS V5 transport, .json/.ndjson Dataset-JSON).",
)
@adam_opts
@click.option(
    "--death-dates",
    type=click.Path(dir_okay=False, path_type=Path),
    help="ADRS DEATH: a table of subject_id and day or date of death (subjects not in it: N).",
)
@click.option(
    "--sdtm-dm",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SDTM DM (or ADSL) for study days: RFSTDTC per subject; RANDDT (ADSL) for --sd-from randomisation.",
)
@click.option(
    "--date-imputation",
    type=click.Choice(["none", "first", "mid", "last"]),
    default="none",
    show_default=True,
    help="Partial dates (2014-02): leave the day unknown (no interval from it counts), or impute the first day, "
    "the 15th / 30 June, or the last day, between the neighbouring scans.",
)
@click.option(
    "--sd-from",
    type=click.Choice(["baseline", "randomisation"]),
    default="baseline",
    show_default=True,
    help="What the stable-disease minimum counts from: the baseline scan, or RANDDT from --sdtm-dm (admiralonco).",
)
@click.option(
    "--engine",
    type=click.Choice(["pandas", "dask"]),
    default="pandas",
    show_default=True,
    help="pandas: this machine; dask: a Dask cluster (local, or --scheduler), partitioned by subject.",
)
@click.option("--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://scheduler:8786.")
@click.option(
    "--workers", type=click.IntRange(1, 512), help="Workers of the local Dask cluster (default: one per core)."
)
@click.option("--partitions", type=click.IntRange(1, 100_000), help="Dask partitions (subject-complete).")
@click.option(
    "--chunk-rows",
    type=click.IntRange(1000, 10**9),
    help="pandas engine: score in subject-complete chunks of about this many rows (bounded memory).",
)
def batch_cmd(
    lesions: str | None,
    organs: Path | None,
    column_map: Path | None,
    output: Path | None,
    best_path: Path | None,
    errors_path: Path | None,
    summary: bool,
    summary_file: Path | None,
    criteria: str | None,
    set_values: tuple[str, ...],
    explain: bool,
    strict: bool,
    encoding: str,
    sheet: str | None,
    no_safe_csv: bool,
    sdtm_tu: Path | None,
    sdtm_tr: Path | None,
    out_rs: Path | None,
    adam_dir: Path | None,
    sdtm_dm: Path | None,
    date_imputation: str,
    sd_from: str,
    adam_format: str,
    study_id: str | None,
    death_dates: Path | None,
    engine: str,
    scheduler: str | None,
    workers: int | None,
    partitions: int | None,
    chunk_rows: int | None,
) -> None:
    """Score a trial table: one row per lesion per timepoint (CSV or Parquet).

    Writes per-visit responses (-o), best response per subject, rejected rows with their reason, and
    warnings; prints `rows read = rows scored + rows rejected` for every input file.

    Example:

        crlm-response batch sample_cases/trial_lesions.csv -o responses.csv --summary
    """
    from .batch import score_read
    from .outputs import check_outputs, rule_inputs
    from .trial import SourceOptions, load_column_map, read_long
    from .writers import all_or_nothing

    sdtm = sdtm_tu is not None or sdtm_tr is not None
    if sdtm and (sdtm_tu is None or sdtm_tr is None):
        raise click.UsageError("SDTM input needs both --sdtm-tu and --sdtm-tr")
    if sdtm and lesions is not None:
        raise click.UsageError("give either a lesion table or --sdtm-tu/--sdtm-tr, not both")
    if not sdtm and lesions is None:
        raise click.UsageError("give a lesion table (CSV or Parquet), or --sdtm-tu and --sdtm-tr")
    if out_rs and not sdtm:
        raise click.UsageError("--out-rs needs SDTM input (--sdtm-tu and --sdtm-tr)")
    if (study_id or death_dates) and not adam_dir:
        raise click.UsageError("--study-id and --death-dates are for the ADaM datasets: add --adam-dir")
    if sdtm_dm is not None and not sdtm:
        raise click.UsageError("--sdtm-dm needs SDTM input (--sdtm-tu and --sdtm-tr)")
    if sd_from == "randomisation" and sdtm_dm is None:
        raise click.UsageError("--sd-from randomisation needs --sdtm-dm: an ADSL (or DM) with RANDDT per subject")
    dates = DateOptions(date_imputation, sd_from)
    if output is None and not summary and summary_file is None and out_rs is None and adam_dir is None:
        raise click.UsageError("give -o/--output for the results, or --summary to print only the summary")
    requested = _criteria_option(criteria)
    settings = parse_set_options(set_values, requested or ())
    if engine == "dask" or chunk_rows is not None:
        if sdtm or out_rs or adam_dir:
            raise click.UsageError("SDTM input and RS/ADaM output run on the pandas engine without --chunk-rows")
        if engine == "dask" and chunk_rows is not None:
            raise click.UsageError("--chunk-rows is for the pandas engine; the dask engine partitions by itself")
        _batch_large(
            lesions,
            organs,
            column_map,
            output,
            best_path,
            errors_path,
            summary,
            summary_file,
            requested,
            settings,
            strict,
            SourceOptions(encoding, sheet, strict=strict),
            not no_safe_csv,
            engine,
            scheduler,
            workers,
            partitions,
            chunk_rows,
            dates,
        )
        return
    if scheduler or workers or partitions:
        raise click.UsageError("--scheduler, --workers and --partitions need --engine dask")
    lesions_path = _single_input(lesions) if lesions is not None else None
    outputs = _batch_outputs(output, best_path, errors_path)
    adam = {n: adam_dir / f"{n}.{adam_format}" for n in ("adrs", "adtr")} if adam_dir else {}
    check_outputs(
        {
            **_output_labels(outputs, best_path, errors_path),
            "--summary-file": summary_file,
            "--out-rs": out_rs,
            **{f"--adam-dir ({n.upper()})": p for n, p in adam.items()},
        },
        [
            _input_folder(lesions),
            lesions_path,
            organs,
            column_map,
            sdtm_tu,
            sdtm_tr,
            sdtm_dm,
            death_dates,
            *rule_inputs(requested),
        ],
    )
    with _Steps() as step:
        streams = None
        if sdtm:
            from .sdtm import read_sdtm

            step("reading SDTM TU/TR")
            read, streams = read_sdtm(
                sdtm_tu,  # type: ignore[arg-type]
                sdtm_tr,  # type: ignore[arg-type]
                options=SourceOptions(encoding, sheet),
                dm_path=sdtm_dm,
                sd_from=sd_from,
            )
            requested = requested or ["recist1.1"]
        else:
            assert lesions_path is not None
            step("reading " + lesions_path.name)
            options = SourceOptions(encoding, sheet, load_column_map(column_map), strict)
            read = read_long(lesions_path, organs=organs, options=options)
        result = score_read(read, requested or None, settings, explain=explain, progress=step, dates=dates)
        step("writing")
        with all_or_nothing():
            _write_batch(result, outputs, not no_safe_csv)
            _write_cdisc(result, streams, out_rs, adam, not no_safe_csv, study_id, death_dates)
            _write_summary_file(result, summary_file)
    _report_batch(result, outputs, summary, strict, _dates_used(result) or sdtm_dm is not None)


def _dates_used(result: Any) -> bool:
    """Whether the run met a partial date or was asked to treat dates otherwise than by default."""
    codes = set(result.warning_summary()["code"])  # a run written part by part keeps only the summary
    return bool(codes & {"partial_date", "date_imputed"}) or result.dates != DateOptions()


def _write_cdisc(
    result: Any,
    streams: Any,
    out_rs: Path | None,
    adam: dict[str, Path],
    safe_csv: bool,
    study_id: str | None = None,
    death_dates: Path | None = None,
) -> None:
    """SDTM RS (SDTM input) and the ADaM datasets (any input) of a run, when asked for."""
    from .sdtm import response_result, rs_rows
    from .writers import write_table

    if out_rs is None and not adam:
        return
    response = response_result(result.results)
    if response is None:
        raise click.UsageError("RS and ADaM output need --criteria to include a response criteria set")
    if out_rs is not None:
        write_table(rs_rows(response, streams), out_rs, safe_csv=safe_csv, name="RS")
    if adam:
        from .adam import adam_tables
        from .trial import read_subject_days

        deaths = read_subject_days(death_dates, "--death-dates") if death_dates is not None else None
        adrs, adtr = adam_tables(result.results, result.prepared, streams, study_id, deaths)
        write_table(adrs, adam["adrs"], safe_csv=safe_csv, name="ADRS")
        write_table(adtr, adam["adtr"], safe_csv=safe_csv, name="ADTR")


def _expand_inputs(pattern: str) -> list[Path]:
    """A file, a folder (its .parquet / .csv files) or a glob such as 'cohort/*.parquet'."""
    import glob

    path = Path(pattern)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".parquet", ".pq", ".csv"))
    elif any(ch in pattern for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(pattern))
    else:
        files = [path]
    if not files:
        raise CrlmError("no input files match", file=pattern, hint="give a CSV/Parquet file, a folder, or a glob")
    return files


def _input_folder(pattern: str | None) -> Path | None:
    """A folder given as the lesion input: outputs must stay out of it (the next run would read them)."""
    return Path(pattern) if pattern is not None and Path(pattern).is_dir() else None


def _single_input(pattern: str) -> Path:
    files = _expand_inputs(pattern)
    if len(files) > 1:
        raise click.UsageError(
            f"{pattern!r} names {len(files)} files; several files need --chunk-rows or --engine dask"
        )
    return files[0]


def _batch_large(
    lesions: str | None,
    organs: Path | None,
    column_map: Path | None,
    output: Path | None,
    best_path: Path | None,
    errors_path: Path | None,
    summary: bool,
    summary_file: Path | None,
    requested: list[str] | None,
    settings: dict[str, Any],
    strict: bool,
    options: Any,
    safe_csv: bool,
    engine: str,
    scheduler: str | None,
    workers: int | None,
    partitions: int | None,
    chunk_rows: int | None,
    dates: Any = None,
) -> None:
    """Subject-complete parts scored one at a time (--chunk-rows) or on Dask; outputs written part by part."""
    from .batch import BatchResult, merge_warning_summaries
    from .engines import OUTPUT_KINDS, ResultSink, connect, run_chunked, run_dask
    from .outputs import check_outputs, rule_inputs
    from .trial import load_column_map
    from .writers import all_or_nothing

    if lesions is None:
        raise click.UsageError("give the lesion table(s)")
    inputs = _expand_inputs(lesions)
    folder = None
    if output is not None and (output.suffix == "" or output.is_dir() or str(output).endswith("/")):
        folder = output
        outputs: dict[str, Path | None] = {k: None for k in OUTPUT_KINDS}
    else:
        outputs = _batch_outputs(output, best_path, errors_path)
    check_outputs(
        {**_output_labels(outputs, best_path, errors_path), "--summary-file": summary_file},
        [_input_folder(lesions), *inputs, organs, column_map, *rule_inputs(requested)],
        folders={"-o": folder},
    )
    options.column_map = load_column_map(column_map)
    sink = ResultSink(outputs, folder, safe_csv)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    client = None
    try:
        with _Steps() as step:
            if engine == "dask":
                step("connecting to Dask")
                client = connect(scheduler, workers)
                run_dask(inputs, sink, organs, requested, settings, client, partitions, options, step, dates=dates)
            else:
                run_chunked(
                    inputs,
                    sink,
                    organs,
                    requested,
                    settings,
                    chunk_rows or 1_000_000,
                    options,
                    progress=step,
                    dates=dates,
                )
            with all_or_nothing():
                best = sink.close()
                result = BatchResult(
                    pd.DataFrame(),
                    best,
                    pd.DataFrame(),
                    pd.DataFrame(),
                    pd.DataFrame(),
                    pd.DataFrame(),
                    sink.counts,
                    sink.summary(best),
                    warnings_summarised=merge_warning_summaries(sink.warning_summaries),
                    subjects_with_warnings=sink.warned_subjects,
                    dates=dates or DateOptions(),
                )
                _write_summary_file(result, summary_file)
    except BaseException:
        sink.abort()
        raise
    finally:
        if client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None and not scheduler:
                cluster.close()
    shown = dict(outputs)
    if folder is not None:
        shown = {"dataset": folder}
    _report_batch(result, shown, summary, strict, _dates_used(result))


def _batch_outputs(output: Path | None, best: Path | None, errors: Path | None) -> dict[str, Path | None]:
    if output is None:
        return {"visits": None, "best": best, "errors": errors, "warnings": None, "flags": None, "lesions": None}
    return {
        "visits": output,
        "best": best or _default_path(output, "best"),
        "errors": errors or _default_path(output, "errors"),
        "warnings": _default_path(output, "warnings"),
        "flags": _default_path(output, "flags"),
        "lesions": _default_path(output, "lesions"),
    }


def _output_labels(outputs: dict[str, Path | None], best: Path | None, errors: Path | None) -> dict[str, Path | None]:
    """Batch outputs by the option that names them, as messages show them (`-o (warnings file)`)."""
    given = {"visits": "-o", "best": "--best" if best else None, "errors": "--errors" if errors else None}
    return {(given.get(kind) or f"-o ({kind} file)"): path for kind, path in outputs.items()}


def _write_batch(result: BatchResult, outputs: dict[str, Path | None], safe_csv: bool) -> None:
    from .trial import ERROR_COLUMNS
    from .writers import remove_later, write_table

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
        write_table(frame, path, safe_csv=safe_csv)


def _write_summary_file(result: Any, summary_file: Path | None) -> None:
    from .summary import summary_table
    from .writers import write_table, write_text

    if summary_file is None:
        return
    if summary_file.suffix.lower() == ".json":
        dates = getattr(result, "dates", None)
        extra = {"parameters": dates.parameters()} if dates is not None else {}
        write_text(summary_file, to_json({"summary": result.summary, "counts": result.counts, **extra}))
    else:
        write_table(summary_table(result.summary), summary_file)


def _report_batch(
    result: Any, outputs: dict[str, Path | None], summary: bool, strict: bool, dates_matter: bool = False
) -> None:
    """Accounting, outputs written, warnings and (--summary) the summary. How dates were used (the stable-disease
    reference, imputation) is said in the summary, and after the accounting when the run met partial dates or
    was asked to treat dates otherwise than by default."""
    from .render import render_batch_warnings, render_summary

    err = _console(stderr=True)
    for line in result.accounting_lines():
        err.print(line)
    dates_line = result.dates.describe() if getattr(result, "dates", None) is not None else None
    if dates_line and dates_matter and not summary:
        err.print(dates_line)
    written = [str(p) for name, p in outputs.items() if p is not None and Path(p).exists()]
    if written:
        err.print("wrote " + ", ".join(written), style="dim")
    render_batch_warnings(err, result.warning_summary(), result.n_subjects_with_warnings, outputs.get("warnings"))
    if summary:
        if dates_line and result.summary:
            _console().print(dates_line)
        render_summary(_console(), result.summary)
    nothing = result.nothing_scored()
    if nothing:
        where = f" (see {outputs['errors']})" if outputs.get("errors") else ""
        raise CrlmError(nothing + where)
    rejected = sum(c["rejected"] for c in result.counts.values())
    if strict and (rejected or result.n_warnings):
        raise click.ClickException(f"--strict: {rejected:,} row(s) rejected and {result.n_warnings:,} warning(s)")


@cli.command("bor", context_settings=CONTEXT_SETTINGS)
@click.argument("visits", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="One row per subject (.csv, .parquet, .json, .ndjson; `-` or none: CSV on stdout).",
)
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Rejected rows (default: OUTPUT stem + .errors).",
)
@click.option(
    "--confirm/--no-confirm",
    default=False,
    show_default=True,
    help="CR and PR need a confirming assessment (E2009 §4.6).",
)
@click.option(
    "--sd-min-days",
    type=click.IntRange(0, 3650),
    default=42,
    show_default=True,
    help="SD (and NON-CR/NON-PD) counts only from this many days after the reference date.",
)
@click.option(
    "--confirm-days",
    type=click.IntRange(1, 3650),
    default=28,
    show_default=True,
    help="Minimum interval to a confirming assessment.",
)
@click.option(
    "--max-ne-between",
    type=click.IntRange(0, 100),
    default=1,
    show_default=True,
    help="NE assessments allowed between a response and its confirmation.",
)
@click.option(
    "--accept-sd-between/--no-accept-sd-between",
    default=False,
    show_default=True,
    help="Allow SD between a PR and its confirmation.",
)
@click.option("--missing-as-ne", is_flag=True, help="Treat missing / ND responses as NE instead of dropping them.")
@click.option(
    "--stop-at-pd/--no-stop-at-pd", default=True, show_default=True, help="Ignore assessments after the first PD."
)
@click.option(
    "--reference-date",
    callback=lambda ctx, param, value: _check_date(value),
    help="Reference date (YYYY-MM-DD) when the input has dates instead of days.",
)
@click.option(
    "--pd-dates",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Progression from another source: subject_id and day or date; later visits are ignored (admiralonco "
    "source_pd).",
)
@click.option(
    "--criteria",
    "-c",
    default="recist1.1",
    show_default=True,
    metavar="ID",
    help="Criteria set whose words, roles and ranking apply (an ADRS: its PARCAT3 records).",
)
@click.option("--encoding", default="auto", show_default=True)
@click.option("--sheet", metavar="NAME", help="Excel inputs (.xlsx): the sheet to read (default: the first).")
def bor_cmd(
    visits: Path,
    output: Path | None,
    errors_path: Path | None,
    confirm: bool,
    sd_min_days: int,
    confirm_days: int,
    max_ne_between: int,
    accept_sd_between: bool,
    missing_as_ne: bool,
    stop_at_pd: bool,
    reference_date: str | None,
    pd_dates: Path | None,
    criteria: str,
    encoding: str,
    sheet: str | None,
) -> None:
    """Best overall response from responses already assigned per visit.

    Reads a simple CSV (subject_id, day or date, response), SDTM RS (OVRLRESP rows) or ADaM ADRS (OVR rows with
    ANL01FL = Y), and applies the same best-response code `assess` uses (REFERENCE §1.9).

    Example:

        crlm-response bor visits.csv --confirm --sd-min-days 42 --confirm-days 28 --max-ne-between 1 -o bor.csv
    """
    from .assessment import get_rules
    from .bor import BorSettings, best_by_reader
    from .outputs import check_outputs
    from .sdtm import rs_category_of
    from .trial import progression_days, read_responses, read_subject_days
    from .writers import all_or_nothing, csv_text, write_table

    output = _file_output(output)
    errors_out = errors_path or (_default_path(output, "errors") if output else None)
    check_outputs({"-o": output, ("--errors" if errors_path else "-o (errors file)"): errors_out}, [visits, pd_dates])
    rules = get_rules(criteria)
    if rules.schema.best_response is None:
        raise click.UsageError(f"--criteria {criteria}: this criteria set has no best overall response")
    data = read_responses(
        visits,
        rules.scale,
        reference_date,
        encoding,
        sheet=sheet,
        criteria_name=rs_category_of(rules),
        criteria_id=rules.schema.id,
    )
    settings = BorSettings(
        confirmation_required=confirm,
        min_confirmation_interval_days=confirm_days,
        sd_min_days=sd_min_days,
        max_ne_between_confirmation=max_ne_between,
        accept_sd_between_pr_confirmation=accept_sd_between,
        stop_at_first_pd=stop_at_pd,
        missing_as_ne=missing_as_ne,
    )
    pd_day = progression_days(data, read_subject_days(pd_dates, "--pd-dates"), str(pd_dates)) if pd_dates else None
    method = rules.schema.best_response.method
    table, result = best_by_reader(data.frame, settings, rules.scale, method, pd_day, data.population)
    err = _console(stderr=True)
    (counts,) = data.ledger.counts().values()
    err.print(
        f"{visits.name}: rows read {counts['read']:,} = rows scored {counts['scored']:,} + rows rejected "
        f"{counts['rejected']:,}"
    )
    with all_or_nothing():
        if output is not None:
            write_table(table, output)
        if errors_out is not None:
            from .trial import ERROR_COLUMNS

            rejected = data.ledger.table()
            write_table(rejected if not rejected.empty else pd.DataFrame(columns=ERROR_COLUMNS), errors_out)
    if output is None:
        click.echo(csv_text(table), nl=False)
    for w in result.cr_then_pr.itertuples():
        err.print(
            f"warning recist_cr_then_pr: {w.subject}: a PR follows a CR; re-read both scans (E2009 Table 3 note)",
            style="yellow",
        )
    nothing = data.nothing_scored(len(table))
    if nothing:
        raise CrlmError(nothing + (f" (see {errors_out})" if output is not None and errors_out is not None else ""))


def _load_cohort(
    path: Path, column_map: Path | None, organs: Path | None, encoding: str, sheet: str | None = None
) -> tuple[Any, dict[str, Any], list[str]]:
    """A cohort for `diff`: case files (one YAML, or a folder of them) or any batch input (CSV / Parquet).

    Returns prepared tables, per-subject case settings, and accounting lines."""
    from .assessment import problems_to_error
    from .readers import load_case_with_lines
    from .tables import object_strings, tables_from_cases
    from .trial import SourceOptions, load_column_map, read_long
    from .validate import validate_and_prepare

    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".yaml", ".yml"):
        files = sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
        if not files:
            raise CrlmError("no case files (*.yaml) in this folder", file=path)
        loaded = []
        for file in files:
            case, lines = load_case_with_lines(file)
            loaded.append((case, str(file), lines))
        ids = [c.case_id for c, _, _ in loaded]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise CrlmError(
                f"case_id given in more than one file: {', '.join(dup)}",
                file=path,
                hint="every case in a cohort needs its own case_id",
            )
        with object_strings():
            prepared, problems = validate_and_prepare(tables_from_cases(loaded))
        if (problems["severity"] == "error").any():
            raise problems_to_error(problems)
        return prepared, {c.case_id: c.settings for c, _, _ in loaded}, [f"{len(loaded)} case file(s)"]
    options = SourceOptions(encoding, sheet, load_column_map(column_map))
    read = read_long(path, organs=organs, options=options)
    with object_strings():
        prepared, problems = validate_and_prepare(read.tables)
    read.set_aside(problems)
    accounting = [
        f"{Path(f).name}: rows read {c['read']:,} = rows scored {c['scored']:,} + rows rejected {c['rejected']:,}"
        for f, c in read.counts().items()
    ]
    return prepared, {}, accounting


def _score_by_settings(prepared: Any, rules: Any, case_settings: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """Score a cohort; subjects whose case files set this rule set's parameters are scored with them."""
    from .engine import RuleSetResult, resolve_params, score

    groups: dict[str, list[str]] = {}
    layers: dict[str, dict[str, Any]] = {}
    for subject in prepared.subjects["subject_id"]:
        own = (case_settings.get(subject) or {}).get(rules.id, {})
        key = repr(sorted(own.items()))
        groups.setdefault(key, []).append(subject)
        layers[key] = own
    results = []
    for key, subjects in groups.items():
        params = resolve_params(rules, layers[key], overrides)
        result = score(prepared, rules, params, explain=True)
        if len(groups) > 1:
            keep = set(subjects)
            result = RuleSetResult(
                result.rule_set,
                result.params,
                result.timepoints.loc[result.timepoints["subject_id"].isin(keep)],
                result.lesions.loc[result.lesions["subject_id"].isin(keep)],
                result.baseline.loc[result.baseline["subject_id"].isin(keep)],
                result.best.loc[result.best["subject_id"].isin(keep)] if result.best is not None else None,
                result.flags.loc[result.flags["subject_id"].isin(keep)] if len(result.flags) else result.flags,
                result.warnings.loc[result.warnings["subject_id"].isin(keep)]
                if len(result.warnings)
                else result.warnings,
            )
        results.append(result)
    if len(results) == 1:
        return results[0]
    first = results[0]
    return RuleSetResult(
        first.rule_set,
        first.params,
        pd.concat([r.timepoints for r in results], ignore_index=True),
        pd.concat([r.lesions for r in results], ignore_index=True),
        pd.concat([r.baseline for r in results], ignore_index=True),
        pd.concat([r.best for r in results], ignore_index=True) if first.best is not None else None,
        pd.concat([r.flags for r in results], ignore_index=True),
        pd.concat([r.warnings for r in results], ignore_index=True),
    )


@cli.command("diff", context_settings=CONTEXT_SETTINGS)
@click.argument("rule_set_a")
@click.argument("rule_set_b")
@click.option(
    "--cases",
    type=click.Path(path_type=Path),
    help="Cohort to compare verdicts on: a case file, a folder of case files, or a batch CSV/Parquet.",
)
@click.option("--set-a", "set_a", multiple=True, metavar="ID.PARAM=VALUE", help="Parameter override for set A.")
@click.option("--set-b", "set_b", multiple=True, metavar="ID.PARAM=VALUE", help="Parameter override for set B.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write the reclassified subjects as CSV."
)
@click.option(
    "--map", "column_map", type=click.Path(dir_okay=False, path_type=Path), help="Column map for a CSV cohort."
)
@click.option("--organs", type=click.Path(dir_okay=False, path_type=Path), help="Organ table for a CSV cohort.")
@click.option("--encoding", default="auto", show_default=True)
@click.option("--sheet", metavar="NAME", help="Excel inputs (.xlsx): the sheet to read (default: the first).")
def diff_cmd(
    rule_set_a: str,
    rule_set_b: str,
    cases: Path | None,
    set_a: tuple[str, ...],
    set_b: tuple[str, ...],
    fmt: str,
    output: Path | None,
    column_map: Path | None,
    organs: Path | None,
    encoding: str,
    sheet: str | None,
) -> None:
    """Compare two criteria sets: the rules that differ, and (with --cases) whose verdict changes.

    Example:

        crlm-response diff recist1.1 choi --cases sample_cases/
    """
    from .diff import diff_rule_sets
    from .engine import resolve_params
    from .outputs import check_outputs, rule_inputs
    from .render import render_diff
    from .writers import write_table

    for ref, hint in ((rule_set_a, "RULE_SET_A"), (rule_set_b, "RULE_SET_B")):
        if ref not in builtin_ids() and not Path(ref).is_file():
            raise click.BadParameter(
                f"unknown rule set `{ref}`; choose from {', '.join(builtin_ids())} or give a file", param_hint=hint
            )
    check_outputs({"-o": output}, [cases, column_map, organs, *rule_inputs([rule_set_a, rule_set_b])])
    rules_a, rules_b = get_rules(rule_set_a), get_rules(rule_set_b)
    overrides_a = parse_set_options(set_a, [rule_set_a], "--set-a").get(rules_a.id, {})
    overrides_b = parse_set_options(set_b, [rule_set_b], "--set-b").get(rules_b.id, {})
    for values, rules, option in ((set_a, rules_a, "--set-a"), (set_b, rules_b, "--set-b")):
        for item in values:
            if not item.startswith(rules.id + "."):
                raise click.BadParameter(f"{item!r} does not name set `{rules.id}`", param_hint=option)
    params_a, params_b = resolve_params(rules_a, overrides_a), resolve_params(rules_b, overrides_b)
    rule_diff = diff_rule_sets(rules_a, rules_b, params_a, params_b)
    label_a = rules_a.id + (" (A)" if rules_a.id == rules_b.id else "")
    label_b = rules_b.id + (" (B)" if rules_a.id == rules_b.id else "")
    verdicts = None
    accounting: list[str] = []
    if cases is not None:
        prepared, case_settings, accounting = _load_cohort(cases, column_map, organs, encoding, sheet)
        if rules_a.schema.best_response is None or rules_b.schema.best_response is None:
            raise click.UsageError("verdicts can only be compared between sets with a best response (not toxicity)")
        from .diff import compare_results
        from .tables import object_strings

        with object_strings():
            result_a = _score_by_settings(prepared, rules_a, case_settings, overrides_a)
            result_b = _score_by_settings(prepared, rules_b, case_settings, overrides_b)
            verdicts = compare_results(result_a, result_b, label_a, label_b)
    if fmt == "json":
        data: dict[str, Any] = {
            "a": label_a,
            "b": label_b,
            "rules": {"identical": rule_diff.identical, "changes": [c.as_dict() for c in rule_diff.ordered()]},
        }
        if verdicts is not None:
            data["verdicts"] = verdicts.as_dict()
        click.echo(to_json(data), nl=False)
    else:
        render_diff(_console(), rule_diff, verdicts, label_a, label_b)
    for line in accounting:
        _console(stderr=True).print(line)
    if output is not None and verdicts is not None:
        write_table(verdicts.reclassified(), output)


@cli.group("plot", cls=CrlmGroup, context_settings=CONTEXT_SETTINGS)
def plot_group() -> None:
    """Waterfall, spider and swimmer plots from batch results (.png, .svg or .pdf).

    Example:

        crlm-response plot waterfall responses.csv -o waterfall.png
    """


def _plot_command(kind: str, summary: str, example: str) -> None:
    grouped = kind in ("waterfall", "swimmer")

    @plot_group.command(kind, help=f"{summary}\n\nExample:\n\n    {example}")
    @click.argument("results", type=click.Path(dir_okay=False, path_type=Path))
    @click.option(
        "--output",
        "-o",
        type=click.Path(dir_okay=False, path_type=Path),
        required=True,
        help="Picture to write: .png, .svg or .pdf.",
    )
    @click.option("--criteria", "-c", help="Criteria set to plot (default: the first one with sizes in the file).")
    @click.option(
        "--rules",
        "rules_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Rule file of a criteria set that is not shipped (what its words mean, its thresholds).",
    )
    @click.option("--title", help="Title instead of the default.")
    @click.option("--label-subjects", is_flag=True, help="Name each subject (up to 100 subjects).")
    @_grouping_options(grouped)
    @click.option(
        "--data-cut",
        type=click.FloatRange(min=0),
        metavar="WEEK",
        hidden=kind != "swimmer",
        help="Draw the data cut-off at this week (swimmer).",
    )
    def command(
        results: Path,
        output: Path,
        criteria: str | None,
        rules_file: Path | None,
        title: str | None,
        label_subjects: bool,
        group_by: str | None = None,
        groups_file: Path | None = None,
        data_cut: float | None = None,
    ) -> None:
        from .outputs import check_outputs
        from .plots import PLOTS, group_column, read_groups, read_results

        if data_cut is not None and kind != "swimmer":
            raise click.UsageError("--data-cut is for the swimmer plot")
        if groups_file is not None and group_by is None:
            raise click.UsageError("--groups needs --group-by COLUMN")
        best_file = results.with_name(f"{results.stem}.best{results.suffix}")
        check_outputs({"-o": output}, [results, best_file, rules_file, groups_file])
        visits, best = read_results(results)
        rules = get_rules(rules_file) if rules_file is not None else None
        extra: dict[str, Any] = {"rules": rules, "label_subjects": label_subjects}
        if group_by is not None:
            extra["groups"] = (
                read_groups(groups_file, group_by) if groups_file else group_column(visits, best, group_by, results)
            )
        if data_cut is not None:
            extra["data_cut_week"] = data_cut
        info = PLOTS[kind](visits, best, output, criteria, title, **extra)
        _console(stderr=True).print(f"wrote {output} ({info['subjects']:,} subjects, {info['name']})")


def _grouping_options(grouped: Any) -> Any:
    """--group-by and --groups, for the plots that can be split by group."""

    def add(func: Any) -> Any:
        if not grouped:
            return func
        func = click.option(
            "--groups",
            "groups_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Table with subject_id and the --group-by column (e.g. the lesion table given to batch).",
        )(func)
        return click.option(
            "--group-by",
            metavar="COLUMN[=VALUE]",
            help="Split by a column fixed per subject (arm, regimen); COLUMN=VALUE splits by whether the column "
            "holds VALUE (e.g. agents=bevacizumab).",
        )(func)

    return add


_plot_command(
    "waterfall",
    "One bar per subject: best % change of the target sum, coloured by best overall response; n per category, "
    "ORR and DCR; threshold lines from the criteria set's parameters.",
    "crlm-response plot waterfall responses.csv -o waterfall.png --group-by agents=bevacizumab --groups lesions.csv",
)
_plot_command(
    "spider",
    "% change from baseline over time, one line per subject, visits scored as progression marked.",
    "crlm-response plot spider responses.csv -o spider.svg --criteria recist1.1",
)
_plot_command(
    "swimmer",
    "Time on study per subject with assessments, first response, first new lesion, first progression and "
    "arrows for subjects without progression.",
    "crlm-response plot swimmer responses.csv -o swimmer.pdf --data-cut 52",
)


@cli.command("report", context_settings=CONTEXT_SETTINGS)
@click.argument("case_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    required=True,
    help="HTML file to write (self-contained, prints on A4); `-` for stdout.",
)
@criteria_opt
@set_opt
def report_cmd(case_file: Path, output: Path, criteria: str | None, set_values: tuple[str, ...]) -> None:
    """A printable one-page report for a tumour board: responses with reasons, chart, toxicity, warnings.

    Example:

        crlm-response report sample_cases/folfox_bev_partial_response.yaml -o case.html
    """
    from .outputs import case_inputs, check_outputs
    from .readers import load_case
    from .report import render_report
    from .writers import write_text

    requested = _criteria_option(criteria)
    file_output = _file_output(output)
    if file_output is not None:
        check_outputs({"-o": file_output}, case_inputs(case_file, requested))
    settings = parse_set_options(set_values, requested or ())
    result = assess(case_file, criteria=requested, settings=settings, explain=True)
    html = render_report(load_case(case_file), result)
    if file_output is None:
        click.echo(html, nl=False)
        return
    write_text(file_output, html)
    _console(stderr=True).print(f"wrote {file_output}")


@cli.command("import-sr", context_settings=CONTEXT_SETTINGS)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Case file (YAML) to write."
)
@click.option(
    "--id-from",
    type=click.Choice(["identifier", "uid", "label"]),
    default="identifier",
    show_default=True,
    help="Lesion id from the tracking identifier, the tracking UID or the viewer's label.",
)
@click.option("--targets", metavar="IDS", help="Comma-separated target lesions, when the reports do not say.")
@click.option("--non-targets", metavar="IDS", help="Comma-separated non-target lesions, when the reports do not say.")
@click.option("--case-id", help="case_id to write (default: the reports' Patient ID).")
def import_sr_cmd(
    paths: tuple[Path, ...],
    output: Path,
    id_from: str,
    targets: str | None,
    non_targets: str | None,
    case_id: str | None,
) -> None:
    """A case file from one patient's DICOM SR measurement reports (TID 1500: OHIF, 3D Slicer, ePAD, PACS).

    PATHS are SR files or folders. Each report is a timepoint (by study date); what is not imported is listed.

    Example:

        crlm-response import-sr baseline.dcm week8.dcm -o case.yaml
    """
    from .dicom_sr import import_sr
    from .outputs import check_outputs
    from .writers import write_text

    check_outputs({"-o": output}, paths)
    result = import_sr(
        paths,
        id_from=id_from,  # type: ignore[arg-type]  # click.Choice checked it
        targets=[targets] if targets else None,
        non_targets=[non_targets] if non_targets else None,
        case_id=case_id,
    )
    check_outputs({"-o": output}, result.files)
    write_text(output, result.text)
    for item in result.left_out:
        click.echo(f"left out: {item}", err=True)
    for warning in result.warnings:
        click.echo(f"warning {warning.code}: {warning.message}", err=True)
    timepoints = result.case["timepoints"]
    lesions = len({lesion["id"] for tp in timepoints for lesion in tp["lesions"]})
    click.echo(
        f"wrote {output}: {len(timepoints)} timepoint(s), {lesions} lesion(s) from {len(result.files)} report(s); "
        f"{len(result.left_out)} item(s) left out",
        err=True,
    )


def main() -> None:
    _share_freed_memory()
    cli(prog_name="crlm-response")


def _share_freed_memory() -> None:
    """Arrow's own allocator keeps the blocks it frees for Arrow alone; the system allocator lets numpy, which does
    most of a run's work, reuse them (a 1 M-row batch peaks about 60 MiB lower, at the same speed). A pool chosen
    with ARROW_DEFAULT_MEMORY_POOL is kept."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


if __name__ == "__main__":  # pragma: no cover
    main()
