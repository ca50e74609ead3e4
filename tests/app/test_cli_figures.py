"""The command line's figures, pages, report, --table bookkeeping, --version and front-door files."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lrpjax
from lrpjax.app import cli

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args):
    env = dict(os.environ, NO_COLOR="1")
    env.pop("JAX_ENABLE_X64", None)
    return subprocess.run([sys.executable, "-m", "lrpjax.app.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"lrpjax {lrpjax.__version__}"


def test_table_shows_target_score_biases_and_residual_for_lrp(capsys):
    assert cli.main(["explain", "--table", "--color", "never", "the plot is dull but the actors are wonderful"]) == 0
    out = capsys.readouterr().out
    values = {}
    for line in out.splitlines():
        match = re.match(r"^\s+(sum|target score|biases|initial states|residual)\s+([+-]\S+)$", line)
        if match:
            values[match[1]] = float(match[2])
    assert set(values) == {"sum", "target score", "biases", "initial states", "residual"}
    total = values["sum"] + values["biases"] + values["initial states"] + values["residual"]
    assert total == pytest.approx(values["target score"], abs=1e-3)


def test_table_of_a_gradient_method_has_no_lrp_bookkeeping(capsys):
    assert cli.main(["explain", "--table", "--method", "gi", "--color", "never", "a fine film"]) == 0
    out = capsys.readouterr().out
    assert "sum" in out and "biases" not in out and "target score" not in out


def test_explain_writes_figure_latex_and_html(tmp_path, capsys):
    pdf, svg, tex, page = tmp_path / "h.pdf", tmp_path / "h.svg", tmp_path / "h.tex", tmp_path / "h.html"
    assert cli.main(["explain", "--color", "never", "--figure", str(pdf), "--latex", str(tex), "--html", str(page),
                     "a gorgeous , witty film at 50 %"]) == 0
    assert cli.main(["explain", "--color", "never", "--png", str(svg), "a gorgeous , witty film"]) == 0
    assert pdf.read_bytes()[:4] == b"%PDF" and "<svg" in svg.read_text()
    assert "\\colorbox[RGB]{" in tex.read_text() and "\\%" in tex.read_text()
    html = page.read_text()
    assert "target score" in html and "biases" in html and "lrp-legend" in html


@pytest.mark.parametrize("argv, message", [
    (["explain", "--figure", "a.jpg", "a film"], ".png, .pdf or .svg"),
    (["explain", "--input", "x.txt", "--figure", "a.png"], "--figure"),
    (["explain", "--input", "x.txt", "--latex", "a.tex"], "--latex"),
    (["report", "--input", "x.txt", "--output", "r.html", "--methods", "lrp-all,magic"], "invalid methods"),
    (["report", "--input", "x.txt", "--output", "r.html", "--methods", "gi,gi"], "named twice"),
    (["report", "--input", "x.txt", "--output", "r.html", "--methods", ","], "invalid methods"),
    (["report", "--output", "r.html"], "--input"),
    (["report", "--input", "x.txt"], "--output"),
    (["report", "--input", "x.txt", "--output", "r.html", "--scale", "page"], "--scale"),
])
def test_figure_and_report_option_errors_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--figure", "--latex", "--html"])
def test_an_unwritable_output_exits_1(tmp_path, capsys, option):
    suffix = {"--figure": "a.png", "--latex": "a.tex", "--html": "a.html"}[option]
    assert cli.main(["explain", "--color", "never", option, str(tmp_path / "missing" / suffix), "a film"]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_report_bad_input_exits_1(tmp_path, capsys):
    assert cli.main(["report", "--input", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "r.html")]) == 1
    assert "cannot read input file" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert cli.main(["report", "--input", str(empty), "--output", str(tmp_path / "r.html")]) == 1
    assert "holds no lines" in capsys.readouterr().err
    source = tmp_path / "in.txt"
    source.write_text("a film\n")
    assert cli.main(["report", "--input", str(source), "--output", str(tmp_path / "no" / "r.html"),
                     "--methods", "gi"]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_report_command_writes_one_page(tmp_path):
    source, out = tmp_path / "in.txt", tmp_path / "report.html"
    source.write_text("a fine film\n\nnot good at all\n")
    done = run_cli("report", "--input", str(source), "--output", str(out), "--methods", "lrp-all,gi,occlusion-f",
                   "--target", "positive", "--title", "T")
    assert done.returncode == 0, done.stderr
    assert "3 sentence(s) (1 could not be explained)" in done.stderr
    page = out.read_text()
    assert "<title>T</title>" in page and page.count('<tr class="row"') == 3
    for method in ("lrp-all", "gi", "occlusion-f"):
        assert f'data-method="{method}"' in page
    assert "explained class: class positive" in page


def test_help_states_the_eps_defaults_and_lists_report():
    top = run_cli("--help")
    assert top.returncode == 0 and "report" in top.stdout and "--version" in top.stdout
    sub = run_cli("explain", "--help")
    flat = " ".join(sub.stdout.split())
    assert "preset(name, eps=0.0) defaults to eps 0" in flat and "0.2 for lrp-prop" in flat
    for word in ("--figure", "--png", "--latex", "--html", "--table"):
        assert word in sub.stdout
    rep = run_cli("report", "--help")
    assert rep.returncode == 0 and "--methods" in rep.stdout and "--scale" in rep.stdout


def test_license_and_typing_marker_are_shipped():
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "the lrpjax authors" in license_text
    assert (ROOT / "lrpjax" / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'lrpjax = \[[^\]]*"py\.typed"', pyproject) and 'license = {text = "MIT"}' in pyproject
