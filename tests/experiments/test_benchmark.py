"""The scale benchmark (experiments/benchmark.py) in --quick form: one run writes every section into
benchmark.{json,md} with finite positive figures; the PyTorch part is skipped with a note without torch;
``--only direct`` writes the direct-call section alone into benchmark_direct.{json,md}. Nothing here
asserts a timing."""

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "benchmark.py"
spec = importlib.util.spec_from_file_location("benchmark", SCRIPT)
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)

SECTIONS = ("machine", "throughput", "lrp_over_forward", "ratios", "driver", "memory", "cd", "embed", "cli", "torch",
            "load")
TORCH_INSTALLED = importlib.util.find_spec("torch") is not None


def positive(value, what: str) -> None:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{what}: {value!r} is not a number"
    assert math.isfinite(value) and value > 0, f"{what}: {value!r} is not finite and positive"


def check_dataset_row(row: dict, what: str) -> None:
    for key in ("sentences", "first_call_s", "warm_s", "sentences_per_s_with_compile", "sentences_per_s_warm",
                "compilations", "tokens", "padded_steps"):
        positive(row[key], f"{what} {key}")
    assert row["sentences_per_s_warm"] == pytest.approx(row["sentences"] / row["warm_s"])


def check_ratios(ratios: dict, presets, what: str) -> None:
    assert ratios["per_bucket"], what
    for row in ratios["per_bucket"]:
        assert set(row["seconds"]) == {"jax.grad", *presets}
        for name, seconds in row["seconds"].items():
            positive(seconds, f"{what} {name} at {row['length']}")
        for name in presets:
            positive(row["ratio_to_grad"][name], f"{what} ratio {name}")
    assert set(ratios["ratio_to_grad"]) == set(presets)
    for name, value in ratios["ratio_to_grad"].items():
        positive(value, f"{what} median ratio {name}")


def check_direct_rows(direct: dict) -> None:
    rows = direct["rows"]
    assert [r["call"].split("(")[0] for r in rows] == ["bilstm.apply", "model.apply", "lrp", "lrp"]
    for row in rows:
        for key in ("first_s", "direct_ms", "jit_ms", "ratio"):
            positive(row[key], f"direct {row['call']} {key}")
        assert row["ratio"] == pytest.approx(row["direct_ms"] / row["jit_ms"])


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads((out / "benchmark.json").read_text(encoding="utf-8"))
    return out, report, (out / "benchmark.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_quick_run_writes_every_section_with_finite_positive_figures(quick_run):
    out, report, _ = quick_run
    assert set(SECTIONS) <= set(report)
    assert sorted(p.name for p in out.iterdir()) == ["benchmark.json", "benchmark.md"]  # no partial file left
    assert set(report["load"]) == {"throughput", "ratios", "driver", "memory", "cd", "embed", "cli", "torch", "direct"}
    assert [r["config"] for r in report["throughput"]] == list(benchmark.QUICK_CONFIGS)
    for row in report["throughput"]:
        check_dataset_row(row, row["config"])
        positive(row["maxrss_mb"], f"{row['config']} maxrss_mb")
    positive(report["lrp_over_forward"], "lrp_over_forward")
    rate = {r["config"]: r["sentences_per_s_warm"] for r in report["throughput"]}
    assert report["lrp_over_forward"] == pytest.approx(rate["lrp-all"] / rate["forward"])

    check_ratios(report["ratios"], ["lrp-all"], "ratios")
    for key in ("sentences", "one_at_a_time_per_s", "batched_per_s", "speedup"):
        positive(report["ratios"]["one_at_a_time"][key], f"one_at_a_time {key}")

    driver = report["driver"]
    for key in ("dataset", "program", "forward"):
        positive(driver["seconds"][key], f"driver seconds {key}")
    assert math.isfinite(driver["driver_overhead"]) and driver["driver_overhead"] > -1
    positive(driver["lrp_over_forward"], "driver lrp_over_forward")
    positive(driver["mask_batch"]["without_over_with"], "driver without_over_with")
    assert "## The dataset driver and the forward pass" in (out / "benchmark.md").read_text()

    assert [(r["mode"], r["replicas"]) for r in report["memory"]] == [
        (mode, replicas) for mode in ("stream", "collect") for replicas in benchmark.QUICK_REPLICAS]
    for r in report["memory"]:
        assert r["sentences"] == r["replicas"] * benchmark.QUICK_SENTENCES
    for r in report["memory"]:
        for key in ("seconds", "maxrss_mb", "input_mb"):
            positive(r[key], f"memory {key}")
        (positive if r["mode"] == "collect" else lambda v, w: None)(r["result_mb"], "memory result_mb")

    cd = report["cd"]
    assert cd["sentences"] == benchmark.QUICK_CD_SENTENCES and cd["subset"] and cd["of"] == benchmark.QUICK_SENTENCES
    check_dataset_row(cd["cd"], "cd")
    check_dataset_row(cd["lrp-all"], "cd lrp-all")
    assert cd["cd"]["config"] == "cd" and cd["cd"]["sentences"] == cd["lrp-all"]["sentences"]
    positive(cd["lrp_over_cd"], "lrp_over_cd")

    embed = report["embed"]
    assert embed["sentences"] == 2210
    for key in ("tokens", "first_s", "warm_s"):
        positive(embed[key], f"embed {key}")

    check_direct_rows(report["direct"])

    cli = report["cli"]
    assert len(cli["warm_s"]) >= 2 and len(cli["import_s"]) >= 2
    for key in ("cold_s", "warm_min_s", "warm_median_s", "other_length_warm_s", "import_min_s",
                "import_median_s", "cache_files_after_cold"):
        positive(cli[key], f"cli {key}")
    for seconds in cli["warm_s"] + cli["import_s"]:
        positive(seconds, "cli run")
    assert cli["tokens"][0] != cli["tokens"][1] and cli["buckets"][0] == cli["buckets"][1]

    torch_part = report["torch"]
    if not TORCH_INSTALLED:
        assert "torch is not installed" in torch_part["skipped"]
        return
    assert [r["config"] for r in torch_part["throughput"]] == list(benchmark.QUICK_TORCH_CONFIGS)
    for row in torch_part["throughput"]:
        check_dataset_row(row, f"torch {row['config']}")
        assert row["sentences"] == benchmark.QUICK_SENTENCES
    check_ratios(torch_part["ratios"], ["lrp-all"], "torch ratios")


@pytest.mark.slow
def test_quick_markdown_has_one_section_per_part_with_its_target(quick_run):
    _, report, md = quick_run
    assert md == benchmark.markdown(report)
    for heading in ("## Throughput", "## LRP / jax.grad", "## Batched vs one sentence at a time", "## Peak memory",
                    "## Contextual Decomposition", "## Embedding", "## Command-line latency",
                    "## A model imported from PyTorch"):
        assert md.count(heading + "\n") == 1, heading
    for target in ("(target ≥ 0.85: ", "(target ≤ 3x: ", "Target: ≤ 0.1 s", "warm ≤ 1.0 s, cold ≤ 2.5 s",
                   "`--quick`"):
        assert target in md, target
    assert ("(target ≤ 1.2)" in md) == TORCH_INSTALLED
    assert not re.search(r"\b(nan|inf)\b", md, re.IGNORECASE)


@pytest.mark.slow
def test_markdown_of_a_run_without_torch_says_it_was_skipped(quick_run):
    _, report, _ = quick_run
    md = benchmark.markdown({**report, "torch": {"skipped": "torch is not installed (No module named 'torch')"}})
    section = md.split("## A model imported from PyTorch\n", 1)[1]
    assert section.strip().startswith("Skipped: torch is not installed")
    assert "pip install" in section and "(target ≤ 1.2)" not in section


@pytest.mark.slow
def test_only_direct_runs_the_direct_section_alone_into_its_own_files(quick_run, tmp_path, monkeypatch, capsys):
    # The direct worker itself ran in the quick run (its rows are checked above); here only what --only
    # direct does with its result: one worker job, benchmark_direct.{json,md}, no benchmark.{json,md}.
    _, report, _ = quick_run
    jobs = []
    monkeypatch.setattr(benchmark, "run_worker", lambda job: jobs.append(job) or report["direct"])
    assert benchmark.main(["--only", "direct", "--quick", "--out", str(tmp_path)]) == 0
    assert [job["kind"] for job in jobs] == ["direct"] and jobs[0]["calls"] == 5
    written = json.loads((tmp_path / "benchmark_direct.json").read_text(encoding="utf-8"))
    assert set(written) == {"machine", "command", "load", "direct"} and set(written["load"]) == {"direct"}
    check_direct_rows(written["direct"])
    markdown = (tmp_path / "benchmark_direct.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Direct calls without a user's jit\n") and "| `bilstm.apply(params, x)` |" in markdown
    assert markdown in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benchmark_direct.json", "benchmark_direct.md"]


def test_targets_are_judged_in_their_direction():
    assert benchmark._met(0.1, 0.1) == "met" and benchmark._met(0.11, 0.1) == "not met"
    assert benchmark._met(0.9, 0.85, at_least=True) == "met"
    assert benchmark._met(0.62, 0.85, at_least=True) == "not met"


def test_torch_part_is_skipped_with_a_note_when_torch_cannot_be_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)   # `import torch` raises ImportError
    result = benchmark.worker_torch({"quick": True, "buckets": 1, "chunk_size": 8, "seed": 0, "repeats": 1})
    assert set(result) == {"skipped"} and result["skipped"].startswith("torch is not installed")


def test_lrp_over_forward_needs_both_configurations():
    rows = [{"config": "forward", "sentences_per_s_warm": 200.0}, {"config": "lrp-all", "sentences_per_s_warm": 150.0}]
    assert benchmark.lrp_over_forward(rows) == pytest.approx(0.75)
    assert benchmark.lrp_over_forward(rows[:1]) is None


def test_evenly_spaced_subset_is_fixed_and_spans_the_set():
    assert list(benchmark.evenly_spaced(10, 0)) == list(range(10))
    assert list(benchmark.evenly_spaced(10, 25)) == list(range(10))
    chosen = benchmark.evenly_spaced(2210, 16)
    assert len(chosen) == 16 and chosen[0] == 0 and chosen[-1] == 2209
    assert list(chosen) == list(benchmark.evenly_spaced(2210, 16)) and list(chosen) == sorted(set(chosen))


@pytest.mark.parametrize("option", [["--repeats", "0"], ["--cd-sentences", "0"], ["--chunk-size", "0"],
                                    ["--buckets", "four"], ["--cli-runs", "-1"]])
def test_bad_options_are_refused_before_any_work(option, tmp_path, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the options were checked")

    for name in ("load_setup", "run_worker", "cli_latency"):
        monkeypatch.setattr(benchmark, name, no_work)
    with pytest.raises(SystemExit) as exit_:
        benchmark.main(["--out", str(tmp_path), *option])
    assert exit_.value.code == 2    # argparse's usage error, its message on stderr
    assert option[0] in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
