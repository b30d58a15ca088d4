"""The bounded-memory chunks and the Dask engine give exactly what the in-memory pandas engine gives."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from crlm_response.engines import bucket_of
from crlm_response.synthetic import generate_cohort
from crlm_response.writers import write_csv

OUTPUTS = ("", ".best", ".errors", ".warnings", ".flags")


def cohort_with_bad_rows(path: Path, subjects: int = 160) -> Path:
    """A synthetic cohort with a few planted mistakes, so rejected rows cross partitions too."""
    frame = generate_cohort(subjects=subjects, seed=11).astype(object)
    frame.loc[5, "longest_diameter_mm"] = -3.0  # negative size
    frame.loc[40, "status"] = "gone"  # unknown word
    follow = frame.index[(frame["timepoint"] == "FU1") & (frame["subject_id"] == "S7")][0]
    frame.loc[follow, ["lesion_id", "kind"]] = ["T99", "target"]  # a target first seen at follow-up
    frame.loc[77, "day"] = "soon"  # text in a number column
    frame.to_csv(path, index=False)
    return path


def read_sorted(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    if path.is_dir():
        parts = sorted(path.glob("*.parquet"))
        frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if parts else pd.DataFrame()
        text = path.with_suffix(".as.csv")
        write_csv(frame, text)  # the CSV writer the CSV outputs use, so numbers print the same way
        frame = pd.read_csv(text, dtype=str, keep_default_na=False)
    else:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    columns = columns or list(frame.columns)
    frame = frame.reindex(columns=columns).fillna("")
    return frame.sort_values(columns, kind="stable").reset_index(drop=True)


def run_reference(tmp_path: Path, source: Path) -> Path:
    out = tmp_path / "ref" / "responses.csv"
    result = run_cli("batch", source, "-o", out, "--summary-file", tmp_path / "ref" / "summary.json")
    assert result.exit_code == 0, result.stderr
    return out


def assert_same_outputs(reference: Path, other: Path) -> None:
    for suffix in OUTPUTS:
        ref = reference.with_name(f"responses{suffix}.csv")
        got = other.with_name(f"responses{suffix}.csv")
        want = read_sorted(ref)
        assert got.exists(), f"{got.name} was not written"
        have = read_sorted(got, list(want.columns))
        assert list(have.columns) == list(want.columns)
        pd.testing.assert_frame_equal(have, want, check_dtype=False, obj=f"responses{suffix}")


def accounting(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if "rows read" in line).split(": ", 1)[1]


def test_bucket_is_a_fixed_function_of_the_subject() -> None:
    subjects = np.array(["S1", "S2", "S10", "S1"], dtype=object)
    first, second = bucket_of(subjects, 7), bucket_of(subjects[::-1], 7)[::-1]
    assert (first == second).all() and first[0] == first[3]
    assert set(bucket_of(np.array([f"S{i}" for i in range(2000)], dtype=object), 5)) == set(range(5))


def test_chunks_give_exactly_the_in_memory_answers(tmp_path: Path) -> None:
    source = cohort_with_bad_rows(tmp_path / "cohort.csv")
    reference = run_reference(tmp_path, source)
    out = tmp_path / "chunked" / "responses.csv"
    result = run_cli(
        "batch", source, "--chunk-rows", "1000", "-o", out, "--summary-file", tmp_path / "chunked" / "summary.json"
    )
    assert result.exit_code == 0, result.stderr
    assert_same_outputs(reference, out)
    ref_run = run_cli("batch", source, "-o", tmp_path / "again" / "responses.csv")
    assert accounting(result.stderr) == accounting(ref_run.stderr)
    assert "rows rejected 0" not in accounting(result.stderr)
    ref_summary = json.loads((tmp_path / "ref" / "summary.json").read_text())["summary"]
    assert json.loads((tmp_path / "chunked" / "summary.json").read_text())["summary"] == ref_summary


def test_a_dataset_folder_is_replaced_whole_on_a_second_run(tmp_path: Path) -> None:
    """Running again into the same dataset folder (as every re-run of a pipeline does) must not leave parts of
    the earlier run mixed in: the first run writes many parts, the second one part, and only that part remains."""
    source = cohort_with_bad_rows(tmp_path / "cohort.csv")
    reference = run_reference(tmp_path, source)
    folder = tmp_path / "dataset"
    for chunk_rows in ("1000", "1000000"):
        result = run_cli("batch", source, "--chunk-rows", chunk_rows, "-o", f"{folder}/")
        assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (folder / "visits").iterdir()) == ["part-00000.parquet"]
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "staging folder left behind"
    want = read_sorted(reference)
    pd.testing.assert_frame_equal(read_sorted(folder / "visits", list(want.columns)), want, check_dtype=False)


def test_a_failed_run_into_a_dataset_folder_leaves_the_earlier_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dataset is published with the run's other outputs: when the summary file cannot be written (the last
    write of a run), the earlier run's dataset stays whole and no staging folder is left behind."""
    from crlm_response import writers

    source = cohort_with_bad_rows(tmp_path / "cohort.csv")
    folder = tmp_path / "dataset"
    first = run_cli("batch", source, "--chunk-rows", "1000", "-o", f"{folder}/")
    assert first.exit_code == 0, first.stderr
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*.parquet")}
    assert len(before) > 2

    def full_disk(path: object, text: str) -> None:
        raise writers.OutputError("cannot write: No space left on device", file=path)

    monkeypatch.setattr(writers, "write_text", full_disk)
    second = run_cli(
        "batch", source, "--chunk-rows", "1000000", "-o", f"{folder}/", "--summary-file", tmp_path / "s.json"
    )
    assert second.exit_code == 1 and "No space left on device" in second.stderr, second.stderr
    after = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*.parquet")}
    assert after == before
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "staging folder left behind"


def test_chunks_of_a_parquet_dataset_of_several_files(tmp_path: Path) -> None:
    """A folder of Parquet files (one layout) through the bounded-memory engine: the same answers as one file,
    and one accounting line per file."""
    frame = generate_cohort(subjects=120, seed=5)
    single = tmp_path / "single.csv"
    frame.to_csv(single, index=False)
    reference = run_reference(tmp_path, single)
    folder = tmp_path / "cohort"
    folder.mkdir()
    sizes = []
    for i, chunk in enumerate(np.array_split(frame["subject_id"].unique(), 3)):
        part = frame.loc[frame["subject_id"].isin(chunk)]
        part.to_parquet(folder / f"part{i}.parquet", index=False)
        sizes.append(len(part))
    out = tmp_path / "chunked" / "responses.csv"
    result = run_cli("batch", folder, "--chunk-rows", "1000", "-o", out)
    assert result.exit_code == 0, result.stderr
    for i, size in enumerate(sizes):
        assert f"part{i}.parquet: rows read {size:,} = rows scored {size:,} + rows rejected 0" in result.stderr
    want = read_sorted(reference)
    pd.testing.assert_frame_equal(read_sorted(out, list(want.columns)), want, check_dtype=False)


def test_chunks_refuse_files_of_different_layouts(tmp_path: Path) -> None:
    frame = generate_cohort(subjects=10, seed=2)
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.drop(columns=["agents"]).to_csv(tmp_path / "b.csv", index=False)
    result = run_cli("batch", str(tmp_path / "*.csv"), "--chunk-rows", "1000", "-o", tmp_path / "out" / "r.csv")
    assert result.exit_code == 1
    assert f"{tmp_path / 'b.csv'}: the files have different columns" in result.stderr
    assert not (tmp_path / "out" / "r.csv").exists()


def test_chunks_into_single_parquet_files_equal_the_in_memory_engine(tmp_path: Path) -> None:
    """Parquet outputs of the chunked engine are joined part by part on disk (bounded memory); columns a part
    leaves empty must not break the join, and the files must hold what the in-memory engine writes."""
    source = cohort_with_bad_rows(tmp_path / "cohort.csv")
    files = {}
    for name, extra in (("memory", []), ("chunked", ["--chunk-rows", "1000"])):
        out = tmp_path / name / "responses.parquet"
        result = run_cli("batch", source, "-o", out, *extra)
        assert result.exit_code == 0, result.stderr
        files[name] = out
    for suffix in ("", ".best", ".errors", ".warnings", ".flags"):
        frames = []
        for name in ("memory", "chunked"):
            frame = pd.read_parquet(files[name].with_name(f"responses{suffix}.parquet")).astype(str)
            frames.append(frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True))
        assert list(frames[1].columns) == list(frames[0].columns), suffix
        pd.testing.assert_frame_equal(frames[1], frames[0], obj=f"responses{suffix}.parquet")
    assert not [p.name for p in (tmp_path / "chunked").iterdir() if p.name.startswith(".")], "part files left"


def test_chunks_of_a_parquet_input(tmp_path: Path) -> None:
    frame = generate_cohort(subjects=60, seed=4)
    source = tmp_path / "cohort.parquet"
    frame.to_parquet(source, index=False)
    reference = tmp_path / "ref" / "responses.csv"
    assert run_cli("batch", source, "-o", reference).exit_code == 0
    out = tmp_path / "chunked" / "responses.csv"
    result = run_cli("batch", source, "--chunk-rows", "1000", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert_same_outputs(reference, out)


dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
    ) as local:
        yield local


def test_dask_equals_pandas_row_for_row(tmp_path: Path, cluster) -> None:  # type: ignore[no-untyped-def]
    source = cohort_with_bad_rows(tmp_path / "cohort.csv")
    reference = run_reference(tmp_path, source)
    out = tmp_path / "dask" / "responses.csv"
    result = run_cli(
        "batch",
        source,
        "--engine",
        "dask",
        "--scheduler",
        cluster.scheduler_address,
        "--partitions",
        "9",
        "-o",
        out,
        "--summary-file",
        tmp_path / "dask" / "summary.json",
    )
    assert result.exit_code == 0, result.stderr
    assert_same_outputs(reference, out)
    ref_run = run_cli("batch", source, "-o", tmp_path / "again" / "responses.csv")
    assert accounting(result.stderr) == accounting(ref_run.stderr)
    ref_summary = json.loads((tmp_path / "ref" / "summary.json").read_text())["summary"]
    assert json.loads((tmp_path / "dask" / "summary.json").read_text())["summary"] == ref_summary


def test_dask_partitioned_parquet_output_of_several_files(tmp_path: Path, cluster) -> None:  # type: ignore[no-untyped-def]
    frame = generate_cohort(subjects=90, seed=8)
    folder = tmp_path / "cohort"
    folder.mkdir()
    subjects = frame["subject_id"].unique()
    sizes = []
    for i, chunk in enumerate(np.array_split(subjects, 3)):
        part = frame.loc[frame["subject_id"].isin(chunk)]
        part.to_parquet(folder / f"part{i}.parquet", index=False)
        sizes.append(len(part))
    single = tmp_path / "single.csv"
    frame.to_csv(single, index=False)
    reference = tmp_path / "ref" / "responses.csv"
    assert run_cli("batch", single, "-o", reference).exit_code == 0
    out = tmp_path / "scored"
    result = run_cli(
        "batch",
        str(folder / "*.parquet"),
        "--engine",
        "dask",
        "--scheduler",
        cluster.scheduler_address,
        "-o",
        f"{out}/",
    )
    assert result.exit_code == 0, result.stderr
    for i, size in enumerate(sizes):  # accounting per input file
        assert f"part{i}.parquet: rows read {size:,} = rows scored {size:,} + rows rejected 0" in result.stderr
    want = read_sorted(reference)
    have = read_sorted(out / "visits", list(want.columns))
    pd.testing.assert_frame_equal(have, want, check_dtype=False)
    best_want = read_sorted(reference.with_name("responses.best.csv"))
    pd.testing.assert_frame_equal(read_sorted(out / "best", list(best_want.columns)), best_want, check_dtype=False)


def test_unreachable_scheduler_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    source = tmp_path / "cohort.csv"
    generate_cohort(subjects=5, seed=1).to_csv(source, index=False)
    start = time.monotonic()
    result = run_cli(
        "batch", source, "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9", "-o", tmp_path / "out.csv"
    )
    assert time.monotonic() - start < 20
    assert result.exit_code == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_dask_missing_gives_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "dask" or name.startswith("dask.") or name.startswith("distributed"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    source = tmp_path / "cohort.csv"
    generate_cohort(subjects=3, seed=1).to_csv(source, index=False)
    result = run_cli("batch", source, "--engine", "dask", "-o", tmp_path / "out.csv")
    assert result.exit_code == 1
    assert 'pip install "crlm-response[dask]"' in result.stderr


def test_engine_options_are_checked(tmp_path: Path) -> None:
    source = tmp_path / "cohort.csv"
    generate_cohort(subjects=3, seed=1).to_csv(source, index=False)
    assert run_cli("batch", source, "--scheduler", "tcp://x:1", "-o", tmp_path / "o.csv").exit_code == 2
    assert run_cli("batch", source, "--engine", "dask", "--chunk-rows", "5000", "-o", tmp_path / "o.csv").exit_code == 2


def organ_table(frame: pd.DataFrame, path: Path) -> Path:
    """Spleen volumes in a second table, plus a row for a subject the lesion file does not have."""
    visits = frame[["subject_id", "timepoint", "spleen_volume_ml"]].drop_duplicates(["subject_id", "timepoint"])
    extra = pd.DataFrame({"subject_id": ["NOBODY"], "timepoint": ["baseline"], "spleen_volume_ml": [200.0]})
    pd.concat([visits, extra], ignore_index=True).to_csv(path, index=False)
    return path


def test_organ_table_through_chunks_and_dask(tmp_path: Path, cluster) -> None:  # type: ignore[no-untyped-def]
    frame = generate_cohort(subjects=80, seed=21)
    organs = organ_table(frame, tmp_path / "organs.csv")
    lesions = tmp_path / "lesions.csv"
    frame.drop(columns=["spleen_volume_ml"]).to_csv(lesions, index=False)
    reference = tmp_path / "ref" / "responses.csv"
    ref = run_cli("batch", lesions, "--organs", organs, "-o", reference)
    assert ref.exit_code == 0, ref.stderr
    assert "organs.csv: rows read" in ref.stderr and "rows rejected 1" in ref.stderr
    for name, args in (
        ("chunked", ["--chunk-rows", "1000"]),
        ("dask", ["--engine", "dask", "--scheduler", cluster.scheduler_address, "--partitions", "5"]),
    ):
        out = tmp_path / name / "responses.csv"
        result = run_cli("batch", lesions, "--organs", organs, *args, "-o", out)
        assert result.exit_code == 0, result.stderr
        assert_same_outputs(reference, out)
        assert [line for line in result.stderr.splitlines() if "rows read" in line] == [
            line for line in ref.stderr.splitlines() if "rows read" in line
        ]
