"""Closed-loop load (``arrival = { kind = "closed", ... }``): clients send their next request the
moment the previous ends; Little's law holds; fast-forward is exact; the warm-up is not measured;
``chiron sweep`` runs it at several concurrencies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chiron_gym.backends.simulate import run_static
from chiron_gym.scenario import ScenarioError, load
from tests.conftest import REPO

SCENARIO = """
description = "closed loop"
horizon_s = 3600.0
decision_interval_s = 10.0
[slo.interactive]
ttft_s = 1.0
itl_s = 0.1
[instance]
profile = "h100-llama2-7b-tp1"
max_num_batched_tokens = 8192
max_batch_cap = 256
[pools.interactive]
initial = 1
batch_cap = 256
[[workload]]
class = "interactive"
arrival = {{ kind = "closed", concurrency = {n}, requests = {m}, warmup = {w} }}
prompt = {{ kind = "lognormal", mean = 600, cv = 0.5, high = 2000 }}
output = {{ kind = "lognormal", mean = 150, cv = 0.8, high = 600 }}
"""


def _scenario(tmp: Path, n: int, m: int, w: int = 0, extra: str = "") -> Path:
    p = tmp / f"closed-{n}-{m}-{w}.toml"
    p.write_text(SCENARIO.format(n=n, m=m, w=w) + extra)
    return p


def test_one_client_sends_each_request_when_the_previous_ends(tmp_path: Path) -> None:
    sc = load(_scenario(tmp_path, 1, 40))
    cluster, _ = run_static(sc, 0)
    led = cluster.ledger
    assert led.num_arrived == 40 and not np.any(led.outcome == 0)
    assert led.arrival_s[0] == 0.0
    # request k is sent at the instant request k - 1 finished, never before
    assert np.array_equal(led.arrival_s[1:], led.finish_s[:-1])
    assert cluster.now < sc.horizon_s  # the episode ended when the last request did


@pytest.mark.parametrize("clients", [4, 32])
def test_littles_law_holds_in_a_closed_loop(tmp_path: Path, clients: int) -> None:
    """Little's law on the sample path: until the last request is sent, every client has one
    request in the system, so the time requests spend there adds up to clients x that span; and
    throughput x mean response time = clients over it."""
    sc = load(_scenario(tmp_path, clients, clients * 30, w=clients))
    cluster, _ = run_static(sc, 1)
    led = cluster.ledger
    t = float(led.arrival_s[-1])  # the last request sent: no client idles before it
    in_system = np.minimum(led.finish_s, t) - np.minimum(led.arrival_s, t)
    assert float(in_system.sum()) == pytest.approx(clients * t, rel=1e-9)
    done = led.finish_s <= t
    x = done.sum() / t
    r = float(np.mean(led.finish_s[done] - led.arrival_s[done]))
    assert x * r == pytest.approx(clients, rel=0.1)


def test_fast_forward_is_exact_with_a_closed_loop(tmp_path: Path) -> None:
    sc = load(_scenario(tmp_path, 16, 200, w=16))
    fast = run_static(sc, 2)[0].ledger
    slow = run_static(sc, 2, fast_forward=False)[0].ledger
    assert fast.num_arrived == slow.num_arrived == 200
    np.testing.assert_array_equal(fast.outcome, slow.outcome)
    np.testing.assert_array_equal(fast.preemptions, slow.preemptions)
    for name in ("arrival_s", "admitted_s", "first_token_s", "finish_s"):
        np.testing.assert_allclose(
            getattr(fast, name), getattr(slow, name), rtol=1e-9, atol=0, err_msg=name
        )


def _sweep_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``chiron sweep --profile h100-llama2-7b-tp1 ARGS`` in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "chiron_gym.cli", "sweep", "--profile", "h100-llama2-7b-tp1",
         *args],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip


def test_the_warmup_is_served_but_not_measured(tmp_path: Path) -> None:
    sc = load(_scenario(tmp_path, 8, 80, w=24))
    cluster, _ = run_static(sc, 3)
    rep = cluster.summary()["interactive"]
    led = cluster.ledger
    assert rep.arrived == 80 and rep.met + rep.late == 80  # every request accounted for
    ttft = led.first_token_s[24:] - led.arrival_s[24:]
    assert rep.ttft_mean_s == pytest.approx(float(np.mean(ttft)))
    out = cluster.workload.output_tokens[24:]
    tpot = (led.finish_s[24:] - led.first_token_s[24:])[out > 1] / (out[out > 1] - 1)
    assert rep.tpot_mean_s == pytest.approx(float(np.mean(tpot)))
    span = led.finish_s[24:].max() - led.arrival_s[24:].min()
    assert rep.output_tokens_per_s == pytest.approx(out.sum() / span)


def test_closed_loop_scenario_errors_name_the_field(tmp_path: Path) -> None:
    bad = _scenario(tmp_path, 0, 10)
    with pytest.raises(ScenarioError, match=r"workload\[0\].arrival.concurrency.*>= 1"):
        load(bad)
    with pytest.raises(ScenarioError, match=r"arrival.warmup.*fewer than requests"):
        load(_scenario(tmp_path, 2, 10, w=10))
    extra = (
        '\n[[workload]]\nclass = "interactive"\narrival = { kind = "poisson", rate_per_s = 1.0 }\n'
        'prompt = { kind = "fixed", mean = 100 }\noutput = { kind = "fixed", mean = 10 }\n'
    )
    with pytest.raises(ScenarioError, match="closed loop must be the scenario's only"):
        load(_scenario(tmp_path, 2, 10, extra=extra))


def test_chiron_sweep_shows_kv_running_out_at_high_concurrency(tmp_path: Path) -> None:
    out = str(tmp_path / "sw")
    r = _sweep_cli("--concurrency", "1,8,128", "--isl", "1024", "--osl", "1024",
                   "--requests-per-client", "3", "--out", out, "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    points = json.loads(r.stdout)
    assert [p["concurrency"] for p in points] == [1, 8, 128]
    tpot = [p["tpot_mean_s"] for p in points]
    tput = [p["output_tokens_per_s"] for p in points]
    assert tpot[0] < tpot[1] < tpot[2] and tput[0] < tput[1] < tput[2]
    # 128 x 2,048 tokens exceed this profile's 117,648 KV tokens: vLLM preempts, and so do we
    assert points[0]["preempted_requests"] == 0 and points[2]["preempted_requests"] > 0
    for name in ("sweep.md", "sweep.csv", "sweep.json", "sweep.png"):
        assert (tmp_path / "sw" / name).is_file()
    bad = _sweep_cli("--concurrency", "0,8")
    assert bad.returncode == 2 and "expected integers >= 1" in bad.stderr


def test_a_sweep_counted_as_vllm_bench_serve_measures_every_request() -> None:
    """``--like vllm-bench --num-prompts N``: N requests, none left out (``vllm bench serve``
    times a request from when the semaphore lets it go, and its means include the first burst
    of C simultaneous prefills), where the default leaves each client's first request out."""
    from chiron_gym.sweep import run_point, sweep_scenario

    kw = {"isl": 1024, "osl": 64, "max_num_seqs": 256, "max_num_batched_tokens": 8192}
    bench = sweep_scenario("h100-llama2-7b-tp1", 64, num_prompts=192, **kw)
    steady = sweep_scenario("h100-llama2-7b-tp1", 64, requests_per_client=3, **kw)
    cluster, _ = run_static(bench, 0)
    led, rep = cluster.ledger, cluster.summary()["interactive"]
    assert len(cluster.workload) == 192 and cluster.workload.warmup == 0
    assert rep.ttft_mean_s == pytest.approx(float(np.mean(led.first_token_s - led.arrival_s)))
    other, _ = run_static(steady, 0)  # the same requests, served the same way
    np.testing.assert_array_equal(other.ledger.first_token_s, led.first_token_s)
    b, s = run_point(bench), run_point(steady)
    assert (b.requests, b.measured) == (192, 192) and (s.requests, s.measured) == (192, 128)
    # only what enters the means differs: the first wave waits behind 64 prompts' prefills,
    # so counting it raises the mean
    assert b.ttft_mean_s > 1.2 * s.ttft_mean_s
    assert b.ttft_p99_s > s.ttft_p99_s
    with pytest.raises(ValueError, match="--num-prompts must be >= 1"):
        sweep_scenario("h100-llama2-7b-tp1", 8, num_prompts=0, **kw)
    bad = _sweep_cli("--num-prompts", "100")
    assert bad.returncode == 2 and "--num-prompts needs --like vllm-bench" in bad.stderr


def test_a_closed_loop_workload_is_checked() -> None:
    from chiron_gym.sim import Workload

    cols = {
        "klass": np.zeros(3, dtype=np.int8),
        "prompt_tokens": np.full(3, 10),
        "output_tokens": np.full(3, 5),
        "deadline_s": np.full(3, np.nan),
    }
    Workload(arrival_s=np.array([0.0, np.inf, np.inf]), clients=1, warmup=1, **cols)
    with pytest.raises(ValueError, match="arrival inf"):
        Workload(arrival_s=np.array([0.0, 1.0, np.inf]), clients=1, **cols)
    with pytest.raises(ValueError, match="warmup applies to a closed-loop"):
        Workload(arrival_s=np.array([0.0, 1.0, 2.0]), warmup=1, **cols)
