"""Ctrl-C during ``chiron evaluate``: every finished episode kept, ``--resume`` completes it."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

ARGS = [
    "-m",
    "chiron_gym.cli",
    "evaluate",
    "--agents",
    "static,chiron",
    "--scenarios",
    "mixed-diurnal",
    "--seeds",
    "0-5",
    "--executor",
    "local",
    "--no-plots",
    "--no-tensorboard",
]  # fmt: skip  (2 h of traffic: about a second an episode, time to interrupt mid-grid)


def rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.reader(f))[1:]


def test_sigint_keeps_finished_episodes_and_resume_completes(tmp_path: Path) -> None:
    full = tmp_path / "full"
    subprocess.run([sys.executable, *ARGS, "--out", str(full)], check=True, capture_output=True)
    reference = (full / "results.csv").read_bytes()
    assert len(rows(full / "results.csv")) == 12

    part = tmp_path / "part"
    # Ctrl-C's default action in the child, whatever this process inherited: a shell without job
    # control starts background jobs (``make test &``) with SIGINT ignored, and children inherit it
    proc = subprocess.Popen(
        [sys.executable, *ARGS, "--out", str(part)],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while len(rows(part / "results.csv")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    kept = rows(part / "results.csv")
    assert 2 <= len(kept) < 12, err
    assert f"interrupted: {len(kept)} of 12 episodes are in" in err and "--resume" in err
    assert "Traceback" not in err
    # the kept rows are those of the full run, and the tables were rebuilt from them
    assert all(r in rows(full / "results.csv") for r in kept)
    md = (part / "results.md").read_text()
    assert "### mixed-diurnal" in md and "static" in md

    done = subprocess.run(
        [sys.executable, *ARGS, "--out", str(part), "--resume"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (part / "results.csv").read_bytes() == reference  # as if never interrupted
