"""What ``ftlab predict`` and ``ftlab monitor`` read, and how they refuse what they cannot: the
training readers' rules, errors named before any model loads, a bounded monitor sample, SIGTERM,
and the wording of the errors around them. No model is trained here: a model directory holding only
its ``ftlab.json`` fails to load, so every error below comes before the model would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftlab import stages
from ftlab.core.config import MonitorConfig
from ftlab.data.readers import read_table
from ftlab.learning.config import default_task, load_config
from ftlab.learning.tasks import DataError
from ftlab.serving.intake import read_chunks, texts_of
from ftlab.serving.monitor import monitor, read_input
from ftlab.serving.predict import predict_file
from ftlab.serving.versions import RollbackError

META = {"text_column": "text", "label_column": "label", "labels": ["neg", "pos"], "max_length": 32,
        "task_type": "classification", "layout": "transformers"}


@pytest.fixture
def weightless(tmp_path) -> Path:
    """A promoted model's ftlab.json without its weights: loading it fails."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "ftlab.json").write_text(json.dumps(META))
    return model


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_predict_reads_every_text_exactly_as_training_does(tmp_path, suffix):
    """pandas cut "bad\\x00 film" to "bad" and read NA and null as missing; training keeps all three."""
    texts = ["bad\x00 film", "NA", "null", 'a "quoted", comma', "1e5"]
    path = tmp_path / f"new{suffix}"
    if suffix == ".csv":
        path.write_text("text,label\n" + "".join(f'"{t.replace(chr(34), 2 * chr(34))}",neg\n' for t in texts))
    else:
        path.write_text("".join(json.dumps({"text": t, "label": "neg"}) + "\n" for t in texts))
    (chunk,) = read_chunks(path)
    assert texts_of(chunk, path, "text") == texts == read_table(path, default_task())["text"].tolist()
    assert chunk.origins == [f"{path}:{n}" for n in range(2 if suffix == ".csv" else 1, 7 if suffix == ".csv" else 6)]


def test_a_blank_text_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "new.csv"
    path.write_text('text\nfine\n"multi\nline"\n \u200b \nok\n')
    with pytest.raises(DataError, match=r"new\.csv: 1 empty or missing text\(s\) in column 'text' cannot be scored: "
                                        r"row 2 \(line 5\)"):
        texts_of(next(read_chunks(path)), path, "text")


def _loop(tmp_path: Path) -> Path:
    (tmp_path / "a.csv").symlink_to(tmp_path / "b.csv")
    (tmp_path / "b.csv").symlink_to(tmp_path / "a.csv")
    return tmp_path / "a.csv"


UNREADABLE = {
    "header only": (lambda d: d / "h.csv", "text,label\n", r"h\.csv: no rows to score \(a header alone\)"),
    "empty file": (lambda d: d / "e.csv", "", r"e\.csv: file is empty"),
    "symlink loop": (_loop, None, r"a\.csv: a loop of symbolic links"),
    "URL": (lambda d: Path("https://example.com/data.csv"), None,
            r"--input https://example\.com/data\.csv is a URL: ftlab reads local files; download it first"),
}


@pytest.mark.parametrize("case", UNREADABLE)
def test_predict_names_an_unreadable_input_before_the_model_loads(tmp_path, weightless, case):
    make, content, message = UNREADABLE[case]
    path = make(tmp_path)
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message):
        predict_file(weightless, path, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_monitor_calls_a_symlink_loop_what_it_is(tmp_path, weightless):
    with pytest.raises(DataError, match=r"a\.csv: a loop of symbolic links"):
        monitor(weightless, _loop(tmp_path), MonitorConfig(), tmp_path / "out")


@pytest.mark.parametrize("command", ["predict", "monitor"])
def test_a_model_of_a_task_not_trained_is_refused_by_name_before_its_input_is_read(tmp_path, command):
    """A bi-encoder's STS-B scores were once read as class labels ("neither the model's labels ['score']
    ..."); predict and monitor serve every task ftlab trains now, and a model of any other task (a
    directory a later version wrote) is named first, whatever the input holds, and nothing is written."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "ftlab.json").write_text(json.dumps({**META, "task_type": "summarization", "layout": "ftlab", "labels": []}))
    (tmp_path / "pairs.csv").write_text("sentence1,sentence2,score\na man plays,a man is playing,4.6\n"
                                        "a cat,the stock fell,0.25\n")
    message = (rf"model: ftlab {command} serves the tasks ftlab trains \(classification, .*\); this model is a "
               r"summarization model: load it with ftlab\.analysis\.runs\.load_run")
    with pytest.raises(DataError, match=message):
        if command == "predict":
            predict_file(model, tmp_path / "pairs.csv", tmp_path / "out.csv")
        else:
            monitor(model, tmp_path / "pairs.csv", MonitorConfig(min_rows=1), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "pairs.csv"]


def test_a_second_text_column_for_a_model_of_single_texts_is_refused(tmp_path, weightless):
    (tmp_path / "new.csv").write_text("text,other\ngreat film,fine\n")
    with pytest.raises(DataError, match=r"--text-pair-column other: this model reads single texts \(classification\)"):
        predict_file(weightless, tmp_path / "new.csv", tmp_path / "out.csv", text_pair_column="other")
    assert not (tmp_path / "out.csv").exists()


def test_prepare_names_a_symlink_loop_and_says_a_url_is_no_source(tmp_path):
    for source, message in ((_loop(tmp_path), r"a\.csv: a loop of symbolic links"),
                            ("https://example.com/data.csv", r"https://example\.com/data\.csv is a URL: ftlab reads "
                             r"local files; download it into data/raw/ .* or give data\.source: hub:NAME")):
        cfg = load_config(None, {"data.source": str(source), "data.prepared_dir": str(tmp_path / "prepared")})
        with pytest.raises(DataError, match=message):
            stages.prepare(cfg)


def _rows_csv(path: Path, n: int, blank_at: int | None = None) -> Path:
    with open(path, "w") as f:
        f.write("text,label\n")
        f.writelines(f"{'' if i == blank_at else f'review {i}'},{('neg', 'pos')[i % 2]}\n" for i in range(n))
    return path


def test_monitor_judges_a_uniform_sample_of_at_most_max_rows(tmp_path):
    """20,000 rows, max_rows 500: 500 rows are kept, each the row the file holds at its line, in input
    order, spread over the file, the same each time; every row's text is checked, kept or not."""
    path = _rows_csv(tmp_path / "new.csv", 20_000)
    cfg = MonitorConfig(max_rows=500)
    found, files = read_input(path, cfg)
    assert files == [path] and len(found.frame) == 500 and found.read == 20_000
    rows = found.frame.index.to_numpy()
    assert (rows[1:] > rows[:-1]).all() and abs(rows.mean() - 10_000) < 1_500  # 6 standard errors
    assert found.frame["text"].tolist() == [f"review {i}" for i in rows]
    assert found.origins == [f"{path}:{i + 2}" for i in rows]
    assert read_input(path, cfg)[0].frame.index.tolist() == rows.tolist()
    _rows_csv(path, 20_000, blank_at=next(i for i in range(20_000) if i not in set(rows)))
    with pytest.raises(DataError, match="1 empty or missing text"):
        read_input(path, cfg)


def open_files(fds: Path) -> set[str]:
    """The files a process has open now; a descriptor closed while they are listed is left out (a CI run
    met one: FileNotFoundError on /proc/<pid>/fd/4)."""
    paths = set()
    for fd in fds.iterdir():
        try:
            paths.add(os.readlink(fd))
        except OSError:
            continue
    return paths


def test_sigterm_stops_a_monitor_reading_a_large_file(tmp_path, weightless):
    """A 40 MB file takes the monitor seconds to read: SIGTERM while it reads ends it within 3 s, exit
    143, nothing written."""
    block = "".join(f"the film was fine and the plot was long {i},{('neg', 'pos')[i % 2]}\n" for i in range(1000))
    (tmp_path / "big.csv").write_text("text,label\n" + block * 800)
    started = subprocess.Popen([sys.executable, "-m", "ftlab.cli", "monitor", "--model", str(weightless), "--input",
                                str(tmp_path / "big.csv"), "--out-dir", str(tmp_path / "out")],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    fds = Path(f"/proc/{started.pid}/fd")
    deadline = time.monotonic() + 60
    while started.poll() is None and time.monotonic() < deadline:  # until it has the file open
        if str(tmp_path / "big.csv") in open_files(fds):
            break
        time.sleep(0.05)
    assert started.poll() is None, started.communicate()[0]
    time.sleep(0.3)
    started.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    output = started.communicate(timeout=30)[0]
    assert started.returncode == 128 + signal.SIGTERM and time.monotonic() - sent < 3, output
    assert not (tmp_path / "out").exists()


def test_rollback_before_any_promotion_says_nothing_was_promoted(tmp_path):
    cfg = load_config(None, {"promote.dir": str(tmp_path / "models")})
    with pytest.raises(RollbackError, match=r"nothing has been promoted yet") as raised:
        stages.rollback(cfg)
    assert "None" not in str(raised.value)
    with pytest.raises(RollbackError, match=r"nothing has been promoted yet"):
        stages.rollback(cfg, to=1)
