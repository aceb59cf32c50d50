"""Shipped profiles: they load, agree with the fast-forward contract, reject bad files, and
regenerate byte for byte from the raw data with the error they claim."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chiron_gym import profiles
from chiron_gym.profiles.profile import ProfileError, data_dir
from chiron_gym.sim import BatchComposition
from tests.conftest import require_data
from tests.sim.strategies import random_case, run_case
from tests.sim.test_fast_forward import assert_same_timestamps

REQUIRED = {
    "a100-llama3-8b-tp1",
    "a100-llama2-7b-tp1",
    "a100-llama2-70b-tp4",
    "h100-llama2-7b-tp1",
    "h100-llama2-70b-tp4",
}


def test_the_five_required_profiles_ship() -> None:
    assert set(profiles.names()) >= REQUIRED


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_profile_is_physically_sensible(name: str) -> None:
    """Iteration times grow with tokens and context, and land in the right range."""
    p = profiles.load(name)
    m = p.perf_model()
    one = m.iteration_time_s(BatchComposition.with_decodes([], [], [1000]))
    many = m.iteration_time_s(BatchComposition.with_decodes([], [], [1000] * 64))
    long = m.iteration_time_s(BatchComposition.with_decodes([], [], [8000] * 64))
    prefill = m.iteration_time_s(BatchComposition.with_decodes([2048], [0], []))
    assert 3e-3 < one < 0.1, one  # a decode step of one request: milliseconds, not seconds
    assert one < many < long
    assert prefill > many
    assert p.kv.capacity_blocks * p.kv.block_size_tokens == p.kv.capacity_tokens
    assert p.model.weight_bytes / p.tensor_parallel < p.gpu_memory_bytes
    assert p.cold_start.median_s > 30


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(sorted(REQUIRED)),
    n=st.integers(1, 600),
    mean_ctx=st.integers(1, 20_000),
    steps=st.integers(1, 5_000),
)
def test_decode_cost_is_exact_on_its_piece(name: str, n: int, mean_ctx: int, steps: int) -> None:
    """``decode_cost`` equals ``iteration_time_s`` everywhere on the piece it names."""
    m = profiles.load(name).perf_model()
    contexts = [mean_ctx] * n
    s0 = float(sum(contexts))
    base, slope, until = m.decode_cost(n, s0)
    assert until >= s0
    for k in (0, steps):
        x = s0 + n * k
        if x > until:
            continue
        batch = BatchComposition.with_decodes([], [], [mean_ctx + k] * n)
        assert math.isclose(m.iteration_time_s(batch), base + slope * x, rel_tol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_fast_forward_matches_reference_with_a_profile(seed: int) -> None:
    """The closed-form stretches stay exact with the piecewise decode model of a profile."""
    model = profiles.load("h100-llama2-70b-tp4").perf_model()
    case = random_case(seed, perf_model=model)
    assert_same_timestamps(run_case(case, fast_forward=True), run_case(case, fast_forward=False))


def _shipped(name: str) -> dict[str, object]:
    return json.loads((data_dir() / f"{name}.json").read_text())  # type: ignore[no-any-return]


def _write(tmp_path: Path, doc: dict[str, object]) -> Path:
    p = tmp_path / "broken.json"
    p.write_text(json.dumps(doc))
    return p


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_to_document_writes_back_the_file_it_was_parsed_from(name: str) -> None:
    """``Profile.to_document`` is ``parse``'s inverse: the shipped file, byte for byte."""
    from chiron_gym.profiles.fit import dumps

    assert dumps(profiles.load(name).to_document()) == (data_dir() / f"{name}.json").read_text()


def test_missing_field_names_file_and_field(tmp_path: Path) -> None:
    doc = _shipped("a100-llama3-8b-tp1")
    del doc["iteration"]["decode_attention"]["base_s"]  # type: ignore[index, attr-defined]
    p = _write(tmp_path, doc)
    with pytest.raises(ProfileError, match=r"broken\.json.*iteration\.decode_attention\.base_s"):
        profiles.load(p)


def test_mistyped_field_names_file_field_and_expectation(tmp_path: Path) -> None:
    doc = _shipped("a100-llama3-8b-tp1")
    doc["model"]["layers"] = "32"  # type: ignore[index]
    p = _write(tmp_path, doc)
    with pytest.raises(
        ProfileError, match=r"broken\.json: model\.layers = '32': expected an integer"
    ):
        profiles.load(p)


def test_misspelt_field_suggests_the_right_one(tmp_path: Path) -> None:
    doc = _shipped("a100-llama3-8b-tp1")
    doc["iteration"]["cpu"]["const"] = doc["iteration"]["cpu"].pop("const_s")  # type: ignore[index, attr-defined]
    p = _write(tmp_path, doc)
    with pytest.raises(
        ProfileError, match=r"iteration\.cpu\.const.*did you mean 'iteration\.cpu\.const_s'"
    ):
        profiles.load(p)


def test_unknown_profile_name_suggests_the_nearest() -> None:
    with pytest.raises(ProfileError, match=r"did you mean 'a100-llama2-7b-tp1'"):
        profiles.load("a100-llama2-7b-tp2")


def test_not_json_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text('{\n  "schema": 1,\n  oops\n}')
    with pytest.raises(ProfileError, match=r"bad\.json: not valid JSON: line 3"):
        profiles.load(p)


@pytest.mark.real_data
def test_fit_regenerates_shipped_profiles_byte_for_byte(tmp_path: Path) -> None:
    """``chiron profile fit`` on the raw data gives the shipped files and their errors."""
    pytest.importorskip("pandas")
    data = require_data("vidur-profiling")
    from chiron_gym.cli import main

    assert main(["profile", "fit", "--data", str(data.parent), "--out", str(tmp_path)]) == 0
    for name in sorted(REQUIRED):
        fresh = (tmp_path / f"{name}.json").read_text()
        assert fresh == (data_dir() / f"{name}.json").read_text(), name
        mape = json.loads(fresh)["validation"]["mape_pct"]
        # The GEMM/element-wise part dominates iteration time: it must meet the 5% target.
        assert mape["layer_linear"] <= 5.0, (name, mape)
        # Every other component is reported in docs/profiles.md; none may regress past these.
        assert max(mape.values()) <= 16.0, (name, mape)
        assert mape["pooled"] <= 5.0, (name, mape)  # the target of issue 3


@pytest.mark.real_data
def test_docs_show_the_shipped_errors() -> None:
    """docs/profiles.md carries the table of the shipped files (regenerate, don't hand-edit)."""
    from chiron_gym.profiles.fit import mape_table

    docs = (Path(__file__).resolve().parents[2] / "docs" / "profiles.md").read_text()
    table = mape_table([_shipped(n) for n in profiles.names()])  # type: ignore[misc]
    assert table in docs


def test_heldout_split_is_a_fifth() -> None:
    """The held-out fraction and seed are what the docs say."""
    for name in REQUIRED:
        v = _shipped(name)["validation"]
        assert v["heldout_fraction"] == 0.2 and v["seed"] == 0  # type: ignore[index]
        assert np.all(np.array(list(v["points"].values())) >= 10)  # type: ignore[index, attr-defined]
