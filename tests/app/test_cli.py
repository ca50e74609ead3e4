"""The ``lrpjax`` command line, end to end in subprocesses on the shipped checkpoint."""

import json
import os
import subprocess
import sys

import pytest

from lrpjax.app import cli


def run_cli(*args, env_extra=None, stdin=None):
    env = dict(os.environ, NO_COLOR="1", **(env_extra or {}))
    env.pop("JAX_ENABLE_X64", None)
    return subprocess.run([sys.executable, "-m", "lrpjax.app.cli", *args], capture_output=True, text=True,
                          env=env, input=stdin, timeout=300)


def test_explain_prints_prediction_plain_relevance_table_html_and_png(tmp_path):
    html, png = tmp_path / "page.html", tmp_path / "bars.png"
    done = run_cli("explain", "--table", "--html", str(html), "--png", str(png),
                   "A gorgeous, witty, seductive movie.")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("prediction: ") and "probabilities: very negative" in lines[0]
    assert lines[1].startswith("relevance for: ") and "method: lrp-all, eps 0.001" in lines[1]
    assert "\x1b[" not in done.stdout  # NO_COLOR and a pipe: plain text
    words = lines[2].split()
    assert [w.split("[")[0] for w in words] == ["a", "gorgeous", ",", "witty", ",", "seductive", "movie", "."]
    assert all(w.endswith("]") and w.split("[")[1][0] in "+-" for w in words)
    assert lines[3].split() == ["pos", "word", "relevance", "|share|"]
    assert [line.split()[0] for line in lines[-5:]] == ["sum", "target", "biases", "initial", "residual"]
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "gorgeous" in page
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_batch_mode_writes_json_lines_and_reports_empty_lines_and_unknown_words(tmp_path):
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("a fine film\n\nthe qwzxplk movie is terrible\n   \nnot good\n")
    done = run_cli("explain", "--input", str(source), "--output", str(out), "--method", "gi",
                   "--target", "positive")
    assert done.returncode == 1, done.stderr          # empty lines are failed records (docs/guide/reliability.md)
    assert "2 empty line(s) (2, 4)" in done.stderr
    assert "not in the vocabulary" in done.stderr and "qwzxplk" in done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5]
    assert "error" in records[1] and "error" in records[3] and records[1]["sentence"] == ""
    assert records[1]["failed"] is True and records[3]["failed"] is True and "failed" not in records[0]
    third = records[2]
    assert third["tokens"] == ["the", "qwzxplk", "movie", "is", "terrible"] and third["unknown"] == ["qwzxplk"]
    for r in (records[0], records[2], records[4]):
        assert r["target"] == 3 and r["target_name"] == "positive" and r["method"] == "gi"
        assert len(r["relevance"]) == len(r["tokens"]) and len(r["probabilities"]) == 5
        assert abs(sum(r["probabilities"]) - 1) < 1e-5 and 0 <= r["prediction"] < 5


def test_bad_options_exit_2_and_bad_input_exits_1(tmp_path):
    bad_target = run_cli("explain", "--target", "happy", "a film")
    assert bad_target.returncode == 2 and "invalid target 'happy'" in bad_target.stderr
    bad_method = run_cli("explain", "--method", "lrp-magic", "a film")
    assert bad_method.returncode == 2 and "lrp-magic" in bad_method.stderr
    missing = run_cli("explain", "--input", str(tmp_path / "missing.txt"))
    assert missing.returncode == 1 and "cannot read input file" in missing.stderr
    empty = run_cli("explain", "   ")
    assert empty.returncode == 1 and "empty" in empty.stderr
    no_model = run_cli("explain", "--checkpoint", str(tmp_path / "none.npz"), "a film")
    assert no_model.returncode == 1 and "cannot load the model" in no_model.stderr


@pytest.mark.parametrize("argv, message", [
    (["explain"], "give a sentence"),
    (["explain", "--input", "x.txt", "a film"], "not both"),
    (["explain", "--method", "gi", "--eps", "0.1", "a film"], "--eps applies"),
    (["explain", "--eps", "-1", "a film"], "invalid eps"),
    (["explain", "--input", "x.txt", "--png", "a.png"], "--png"),
])
def test_option_errors_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_lists_commands_methods_and_options():
    top = run_cli("--help")
    assert top.returncode == 0 and "explain" in top.stdout and "info" in top.stdout
    sub = run_cli("explain", "--help")
    assert sub.returncode == 0
    for word in ("--method", "--target", "--eps", "--checkpoint", "--table", "--html", "--png", "--input",
                 "--output", "occlusion-p", "NO_COLOR"):
        assert word in sub.stdout


def test_info_reports_accuracy_and_training_command():
    done = run_cli("info")
    assert done.returncode == 0, done.stderr
    assert "five-class accuracy" in done.stdout and "train_sst.py" in done.stdout


def test_color_always_uses_truecolor_and_target_names_work_in_process(capsys):
    assert cli.main(["explain", "--color", "always", "--method", "occlusion-f", "--target", "very_negative",
                     "a dull , boring film"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[48;2;" in out and "relevance for: very negative (0)" in out
