"""TensorBoard runs carry the real time they were written (they were all 1 January 1970), and
their content is still checkable for determinism: ``reporting.tb_content`` reads every event
without its wall time, and two runs of the same episode give the same bytes."""

from __future__ import annotations

import time
from pathlib import Path

from agents.run import reporting
from agents.run.evaluate import evaluate


def test_events_have_real_wall_times_and_the_same_content_run_after_run(tmp_path: Path) -> None:
    t0 = time.time()
    runs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        evaluate(["static"], ["default"], [0], out, plots=False, progress=False)
        runs.append(out / "tb")
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    files = sorted(runs[0].rglob("events.out.tfevents.*"))
    assert files
    times = [e.wall_time for f in files for e in EventFileLoader(str(f)).Load()]
    assert min(times) >= t0 - 1 and max(times) <= time.time() + 1  # now, not 1970
    first, second = (reporting.tb_content(r) for r in runs)
    assert len(first) > 100  # scalars of every step, texts and the figure
    assert first == second
    tags = b"".join(first)
    assert b"cluster/gpus" in tags and b"episode/summary" in tags and b"config/scenario" in tags
