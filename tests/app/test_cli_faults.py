"""Fault injection against the command line's batch mode: concurrent writers, changed arguments, edited
inputs, reruns over an existing output, damaged Parquet parts, Ctrl-C at start-up and swallowed Ctrl-C,
and the memory bound of the unknown-word report. Every case ends in a clear error naming what to do, or in
a valid output; none ends silently with wrong or mixed records.

In process (``cli.main``) except the start-up signals, which need a real process: bounded by timeouts.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrpjax.app import cli
from lrpjax.app.model import SSTModel
from lrpjax.data.sst import PAD, UNK, Vocabulary
from lrpjax.models import bilstm

ROOT = Path(__file__).resolve().parents[2]
WORDS = ("good", "bad", "movie", "not", "a", "film", "very", "dull", "fun", ".")
LINES = [f"a {w} film" for w in WORDS]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two tiny SST bundles (E=4, H=3, float64) that differ in their weights only."""
    folder = tmp_path_factory.mktemp("models")
    paths = []
    for seed in (0, 1):
        vocab = Vocabulary([PAD, UNK, *WORDS])
        key_m, key_e = jax.random.split(jax.random.PRNGKey(seed))
        params = {"embed": np.array(jax.random.normal(key_e, (len(vocab), 4), jnp.float64)),
                  "model": jax.tree_util.tree_map(np.asarray, bilstm.init(key_m, 4, 3, 5, jnp.float64))}
        paths.append(SSTModel(vocab, params, {"note": "tiny"}).save(folder / f"tiny{seed}.npz"))
    return paths


def run(checkpoint, source, out, *extra, method="random"):
    return cli.main(["explain", "--checkpoint", str(checkpoint), "--method", method, "--seed", "7",
                     "--batch-size", "4", "--input", str(source), "--output", str(out), *extra])


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


# --- concurrent writers -------------------------------------------------------------------------------

def test_a_second_writer_is_refused_naming_the_holder_and_a_stale_lock_is_taken_over(tmp_path, capsys, checkpoints,
                                                                                     source):
    from lrpjax.io.locks import lock_path_for

    out = tmp_path / "out.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tick = int(Path(f"/proc/{holder.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        Path(lock_path_for(out)).write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename,
                                                        "started": time.time(), "tick": tick}))
        assert run(checkpoints[0], source, out) == 1
        err = capsys.readouterr().err
        assert f"being written by process {holder.pid} on host" in err and "lock file" in err
        assert not out.exists()   # nothing written by the refused run
    finally:
        holder.kill()
        holder.wait(timeout=10)
    # The holder is gone: its lock is stale and taken over; the lock is released at the end.
    assert run(checkpoints[0], source, out) == 0
    assert len(out.read_text().splitlines()) == len(LINES) and not Path(lock_path_for(out)).exists()


# --- existing outputs ---------------------------------------------------------------------------------

def test_an_existing_output_is_refused_without_resume_or_overwrite_and_overwrite_replaces_only_when_complete(
        tmp_path, capsys, checkpoints, source, monkeypatch):
    out = tmp_path / "out.jsonl"
    assert run(checkpoints[0], source, out) == 0
    before = out.read_bytes()
    assert run(checkpoints[0], source, out, "--seed", "8") == 1
    assert "holds the output of an earlier run; pass --resume" in capsys.readouterr().err
    assert out.read_bytes() == before

    # --overwrite interrupted half-way: the old output stays, no temporary file is left.
    from lrpjax.app import model as model_module

    original = model_module.SSTModel.explain_stream

    def interrupted(self, *args, **kwargs):
        for k, item in enumerate(original(self, *args, **kwargs)):
            if k == 4:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(model_module.SSTModel, "explain_stream", interrupted)
    assert run(checkpoints[0], source, out, "--overwrite", "--seed", "8") == 130
    assert "is left as it was" in capsys.readouterr().err
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [".out.jsonl.run.json",
                                                                                         "in.txt", "out.jsonl"]
    monkeypatch.setattr(model_module.SSTModel, "explain_stream", original)
    assert run(checkpoints[0], source, out, "--overwrite", "--seed", "8") == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(LINES) and {r["seed"] for r in records} == {8}
    assert json.loads((tmp_path / ".out.jsonl.run.json").read_text())["--seed"] == 8


# --- changed arguments and inputs on --resume -------------------------------------------------------------

@pytest.mark.parametrize("change, named", [
    (("--seed", "8"), "--seed 7, and this run has --seed 8"),
    (("--batch-size", "2"), "--batch-size 4, and this run has --batch-size 2"),
    (("--target", "positive"), "--target pred, and this run has --target positive"),
    ("checkpoint", "--checkpoint"),
])
def test_resume_with_another_option_is_refused_naming_it(tmp_path, capsys, checkpoints, source, change, named):
    out = tmp_path / "out.jsonl"
    assert run(checkpoints[0], source, out) == 0
    out.write_text("".join(line + "\n" for line in out.read_text().splitlines()[:6]))
    before = out.read_bytes()
    capsys.readouterr()
    if change == "checkpoint":
        status = run(checkpoints[1], source, out, "--resume")
    else:
        status = cli.main(["explain", "--checkpoint", str(checkpoints[0]), "--method", "random", "--seed", "7",
                           "--batch-size", "4", "--input", str(source), "--output", str(out), "--resume", *change])
    err = capsys.readouterr().err
    assert status == 1 and "cannot resume" in err and named in err, err
    assert out.read_bytes() == before


def test_resume_checks_every_kept_record_not_only_the_last(tmp_path, capsys, checkpoints, source):
    out = tmp_path / "out.jsonl"
    assert run(checkpoints[0], source, out) == 0
    out.write_text("".join(line + "\n" for line in out.read_text().splitlines()[:6]))
    # An input line before the resume point edited; the last kept line unchanged.
    edited = LINES.copy()
    edited[2] = "a very good film"
    source.write_text("\n".join(edited) + "\n", encoding="utf-8")
    assert run(checkpoints[0], source, out, "--resume") == 1
    assert "its record 3 is for 'a movie film', but line 3" in capsys.readouterr().err
    # A kept record from another run (its run identity differs) spliced in before the last one.
    source.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    records[1]["run"] = "0badf00d"
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert run(checkpoints[0], source, out, "--resume") == 1
    assert "its record 2 was written by a run with other options" in capsys.readouterr().err
    # The identity kept beside the output is compared first, naming the option.
    records[1].pop("run")
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert run(checkpoints[0], source, out, "--resume") == 0
    assert len(out.read_text().splitlines()) == len(LINES)


def test_a_parquet_output_with_a_deleted_or_altered_part_is_refused_on_resume(tmp_path, capsys, checkpoints, source):
    pytest.importorskip("pyarrow")
    out = tmp_path / "out.parquet"
    assert run(checkpoints[0], source, out, "--chunk-size", "3") == 0
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 4
    data = bytearray(parts[1].read_bytes())
    data[len(data) // 2] ^= 0x10
    parts[1].write_bytes(bytes(data))
    assert run(checkpoints[0], source, out, "--chunk-size", "3", "--resume") == 1
    assert "part-000001.parquet (lines 4-6) does not match its size and checksum" in capsys.readouterr().err
    parts[1].unlink()
    assert run(checkpoints[0], source, out, "--chunk-size", "3", "--resume") == 1
    assert "part-000001.parquet (lines 4-6) is missing" in capsys.readouterr().err


# --- signals ------------------------------------------------------------------------------------------

def test_a_swallowed_ctrl_c_still_stops_the_run_with_130_and_a_valid_prefix(tmp_path, capsys, checkpoints, source,
                                                                           monkeypatch):
    """A KeyboardInterrupt raised inside a callback that ignores exceptions (as jax's garbage-collector
    hook does) is lost; the handler's record of the signal still stops the run."""
    from lrpjax.app import model as model_module

    original = model_module.SSTModel.explain_stream

    def swallowed(self, *args, **kwargs):
        for k, item in enumerate(original(self, *args, **kwargs)):
            if k == 3:
                try:
                    signal.raise_signal(signal.SIGINT)   # the handler raises here ...
                except KeyboardInterrupt:
                    pass                                  # ... and the exception is swallowed
            yield item

    monkeypatch.setattr(model_module.SSTModel, "explain_stream", swallowed)
    out = tmp_path / "out.jsonl"
    assert run(checkpoints[0], source, out) == 130
    assert "interrupted" in capsys.readouterr().err
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert 1 <= len(kept) < len(LINES) and [r["line"] for r in kept] == list(range(1, len(kept) + 1))
    monkeypatch.setattr(model_module.SSTModel, "explain_stream", original)
    assert run(checkpoints[0], source, out, "--resume") == 0
    assert len(out.read_text().splitlines()) == len(LINES)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("delay", [0.7, 1.6])
def test_ctrl_c_during_start_up_exits_130_without_a_traceback(tmp_path, checkpoints, source, delay):
    """While jax is imported (the launcher guards the import) or the model loads. (A signal within the
    interpreter's own first ~0.2 s, before any lrpjax code runs, is beyond any program's reach.)"""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "lrpjax_cli", "explain", "--checkpoint", str(checkpoints[0]),
                                "--input", str(source), "--output", str(tmp_path / "out.jsonl")],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    if process.returncode == 0:   # finished before the signal: a complete output
        assert len((tmp_path / "out.jsonl").read_text().splitlines()) == len(LINES)
        return
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err and "interrupted" in err, err


# --- memory bounds ------------------------------------------------------------------------------------

def test_the_unknown_word_report_is_bounded_in_count_and_length(tmp_path, capsys, checkpoints):
    source = tmp_path / "in.txt"
    source.write_text("".join(f"a {'x' * 500}{k} film {k}y\n" for k in range(1100)), encoding="utf-8")
    tally = cli._Tally(keep_records=False)
    assert run(checkpoints[0], source, tmp_path / "out.jsonl", "--batch-size", "64", "--chunk-size", "600",
               method="gi") == 0
    err = capsys.readouterr().err
    warning = next(line for line in err.splitlines() if "not in the vocabulary" in line)
    assert "more than 1000 word(s)" in warning and len(warning) < 30 * (cli._MAX_WORD + 2) + 200
    # The tally itself keeps at most _MAX_UNKNOWN clipped words whatever the input.
    words = [f"{k}{'y' * 300}" for k in range(3000)]

    class Result:
        unknown = words
        finite = True

        @staticmethod
        def to_json():
            return {}

    class Line:
        number, error, text = 1, None, ""

    tally.record(Line, Result)
    assert len(tally.unknown) == cli._Tally._MAX_UNKNOWN and tally.more_unknown
    assert max(map(len, tally.unknown)) == cli._MAX_WORD


def test_an_lrp_record_with_relevance_far_beyond_its_score_is_flagged():
    record = {"method": "lrp-prop", "scores": [0.001, 2.0], "target": 0, "relevance": [40.0, -39.999]}
    assert "raise --eps" in cli._health(record)
    assert cli._health({**record, "relevance": [0.0006, 0.0004]}) is None
    assert cli._health({**record, "method": "gi"}) is None   # only LRP's relevance is bound to the score
