"""Untrusted models: nothing in a model's files runs unless the user trusts them."""

from __future__ import annotations

import base64
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from agents.model_files import ObsNormalizer, UntrustedModel
from agents.ppo import PPOAgent
from chiron_gym.cli import main
from tests.conftest import REPO

SHIPPED = REPO / "agents" / "models" / "ppo-default"


class Payload:
    """Unpickling this writes ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def crafted(tmp: Path, key: str) -> tuple[Path, Path]:
    """A copy of the shipped model whose zip carries the payload under ``data[key]``."""
    import cloudpickle

    folder = tmp / "model"
    shutil.copytree(SHIPPED, folder)
    marker = tmp / "marker"
    evil = base64.b64encode(cloudpickle.dumps(Payload(marker))).decode()
    src = folder / "model.zip"
    with zipfile.ZipFile(src) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    data = json.loads(entries["data"])
    if key in data:
        data[key][":serialized:"] = evil
    else:
        data[key] = {":type:": "<class 'x'>", ":serialized:": evil}
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(src, "w") as z:
        for n, b in entries.items():
            z.writestr(n, b)
    return folder, marker


def test_a_payload_in_a_known_field_never_runs(tmp_path: Path) -> None:
    """The safe loader replaces every pickled field it knows with its own object: the
    crafted observation space is never unpickled, and the model acts as the shipped one."""
    folder, marker = crafted(tmp_path, "observation_space")
    agent = PPOAgent.load(folder)
    assert not marker.exists()
    shipped = PPOAgent.load(SHIPPED)
    obs = np.random.default_rng(0).uniform(0, 1, size=agent.model.observation_space.shape)
    a = agent.model.predict(obs.astype(np.float32), deterministic=True)[0]
    b = shipped.model.predict(obs.astype(np.float32), deterministic=True)[0]
    assert np.array_equal(a, b)


def test_an_unknown_pickled_field_needs_trust(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pickled field the loader does not know is refused (exit 2, saying why) before any
    episode; with --trust-model SB3 loads it the plain way, and the payload runs."""
    monkeypatch.delenv("CHIRON_TRUST_MODELS", raising=False)
    folder, marker = crafted(tmp_path, "evil")
    with pytest.raises(UntrustedModel, match=r"data\.evil is a pickled object"):
        PPOAgent.load(folder)
    code = main(["evaluate", "--agents", f"ppo:{folder}", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "--trust-model" in err and "runs code from the file" in err, err
    assert not marker.exists() and not (tmp_path / "o" / "results.csv").exists()
    monkeypatch.setenv("CHIRON_TRUST_MODELS", "1")
    PPOAgent.load(folder)
    assert marker.read_text() == "ran"  # what trust means: the file's code ran


def test_pickled_statistics_alone_need_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Statistics only as SB3's vecnormalize.pkl (a model made by plain SB3): refused
    without trust, loaded with it."""
    monkeypatch.delenv("CHIRON_TRUST_MODELS", raising=False)
    folder = tmp_path / "sb3"
    shutil.copytree(SHIPPED, folder)
    (folder / "vecnormalize.npz").unlink()
    marker = tmp_path / "marker"
    (folder / "vecnormalize.pkl").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(UntrustedModel, match=r"vecnormalize\.pkl: observation statistics as a"):
        PPOAgent.load(folder)
    assert not marker.exists()


def test_normalizer_matches_vecnormalize_and_saves_arrays_only(tmp_path: Path) -> None:
    """The .npz statistics give VecNormalize's float32 values exactly and hold no object."""
    from stable_baselines3.common.running_mean_std import RunningMeanStd

    class Fake:
        obs_rms = RunningMeanStd(shape=(5,))
        clip_obs, epsilon = 10.0, 1e-8

    rng = np.random.default_rng(1)
    Fake.obs_rms.update(rng.normal(3, 2, size=(50, 5)))
    n = ObsNormalizer.of(Fake)
    n.save(tmp_path / "s.npz")
    back = ObsNormalizer.load(tmp_path / "s.npz")
    x = rng.normal(3, 5, size=(20, 5)).astype(np.float32)
    expected = np.clip(
        (x - Fake.obs_rms.mean) / np.sqrt(Fake.obs_rms.var + 1e-8), -10.0, 10.0
    ).astype(np.float32)
    assert np.array_equal(back.normalize_obs(x), expected)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["clip_obs", "epsilon", "mean", "var"]
