import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hilstudy import demos as D
from hilstudy import params as P


def small(**sections) -> P.StudyParams:
    raw = {"demos": {"num_episodes": 2}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return P.validate(raw)


def data_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("demos") / "dataset"
    rec = D.record_demos(small(), root, progress=False)
    return root, rec


def test_lerobot_loads_the_dataset(recorded):
    root, rec = recorded
    ds = D.load_demos(root)
    assert ds.num_episodes == 2 and ds.num_frames == sum(e["length"] for e in rec.episodes)
    for key in ["observation.state", "action", "next.reward", "next.done", "next.truncated",
                "complementary_info.is_intervention"]:
        assert key in ds.meta.features
    frame = ds[0]
    assert frame["task"] == P.DemosParams().task
    frames = ds.hf_dataset.with_format("numpy")
    actions = np.stack(frames["action"])
    assert actions.shape[1] == 4 and actions.min() >= -1.0 and actions.max() <= 1.0
    assert np.all(np.asarray(frames["complementary_info.is_intervention"]) == 1.0)


def test_done_is_termination_and_ends_each_successful_episode(recorded):
    root, rec = recorded
    frames = D.load_demos(root).hf_dataset.with_format("numpy")
    ep = np.asarray(frames["episode_index"])
    done = np.asarray(frames["next.done"]).astype(bool).ravel()
    reward = np.asarray(frames["next.reward"]).ravel()
    for e in range(2):
        m = ep == e
        assert done[m][-1] and not done[m][:-1].any()  # the last frame ends the episode, no other
        assert reward[m][-1] == 1.0 and reward[m][:-1].sum() == 0  # sparse: success only at the end
    assert rec.summary()["success_rate"] == 1.0


def test_replay_buffer_consumes_the_dataset(recorded):
    from lerobot.rl.buffer import ReplayBuffer

    root, _ = recorded
    ds = D.load_demos(root)
    buf = ReplayBuffer.from_lerobot_dataset(ds, device="cpu", state_keys=["observation.state"])
    assert len(buf) == ds.num_frames
    batch = buf.sample(8)
    assert batch["state"]["observation.state"].shape == (8, ds.meta.features["observation.state"]["shape"][0])
    assert batch["complementary_info"]["is_intervention"].shape[0] == 8


def test_same_seed_same_bytes_other_seed_other_cubes(recorded, tmp_path):
    root, rec = recorded
    again = D.record_demos(small(), tmp_path / "again", progress=False)
    data = lambda r: {k: v for k, v in data_digests(r).items() if k.startswith("data/")}  # noqa: E731
    assert data(root) and data(root) == data(tmp_path / "again")
    assert data_digests(root) == data_digests(tmp_path / "again")  # meta (info, stats, episodes, tasks) too
    other = D.record_demos(small(demos={"seed": 100}), tmp_path / "other", progress=False)
    cubes = lambda r: [tuple(e["cube_pos"]) for e in r.episodes]  # noqa: E731
    assert cubes(again) == cubes(rec)
    assert set(cubes(other)).isdisjoint(cubes(rec))


def test_failed_recording_leaves_the_previous_dataset(recorded, tmp_path, monkeypatch):
    root, _ = recorded
    target = tmp_path / "dataset"
    D.record_demos(small(demos={"num_episodes": 1}), target, progress=False)
    before = data_digests(target)
    calls = {"n": 0}
    real_rollout = D.rollout

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("operator walked away")
        return real_rollout(*args, **kwargs)

    monkeypatch.setattr(D, "rollout", crashing)
    with pytest.raises(KeyboardInterrupt):
        D.record_demos(small(demos={"num_episodes": 3, "seed": 50}), target, progress=False)
    assert data_digests(target) == before


def test_pixel_demos_store_images(tmp_path):
    params = small(env={"obs": "pixels", "image_size": 32}, demos={"num_episodes": 1})
    D.record_demos(params, tmp_path / "px", progress=False)
    ds = D.load_demos(tmp_path / "px")
    assert ds.meta.features["observation.images.front"]["dtype"] == "image"
    img = ds[0]["observation.images.front"]
    assert tuple(img.shape) == (3, 32, 32) and 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    assert "observation.images.wrist" in ds.meta.features


KILLABLE = """
import sys
from pathlib import Path
from hilstudy import params as P
from hilstudy.demos import record_demos
record_demos(P.validate({"demos": {"num_episodes": int(sys.argv[2])}}), Path(sys.argv[1]), progress=False)
"""


def committed_attempts(partial: Path) -> int:
    for d in (partial, partial.with_name(partial.name + ".old")):
        try:
            return json.loads((d / D.RECORDING_STATE).read_text())["attempts"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            continue
    return 0


def test_sigkill_during_recording_keeps_every_completed_episode_and_resumes_to_the_same_bytes(tmp_path):
    """Kill a recording (SIGKILL, the machine's view of a crash) at random points, several times: what is on
    disk must load as a LeRobotDataset holding exactly the committed episodes, byte for byte those of an
    uninterrupted recording; running again resumes and ends with the uninterrupted recording's files."""
    n = 6
    reference = tmp_path / "ref" / "dataset"
    D.record_demos(small(demos={"num_episodes": n}), reference, progress=False)
    ref_files = data_digests(reference)
    root = tmp_path / "killed" / "dataset"
    partial = root.with_name("dataset.partial")
    rng = np.random.default_rng(11)
    kills = []
    for _ in range(3):
        before = committed_attempts(partial)
        proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(root), str(n)])
        while proc.poll() is None and committed_attempts(partial) <= before:
            time.sleep(0.02)  # this run has committed something of its own: it resumed, not restarted
        time.sleep(rng.uniform(0.0, 0.5))  # then anywhere: in an episode, in a commit, between its renames
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if root.exists():
            break  # it finished before the kill
        durable = partial if partial.exists() else partial.with_name("dataset.partial.old")
        state = json.loads((durable / D.RECORDING_STATE).read_text())
        kept = len(state["kept"])
        kills.append(kept)
        assert kept >= 1
        ds = D.load_demos(durable)
        assert ds.num_episodes == kept and ds.num_frames == sum(e["length"] for e in state["kept"])
        on_disk = data_digests(durable)
        for i in range(kept):  # one data file per episode: the committed ones are the reference's
            for f in (f"data/chunk-000/file-{i:03d}.parquet", f"meta/episodes/chunk-000/file-{i:03d}.parquet"):
                assert on_disk[f] == ref_files[f], f
        assert f"data/chunk-000/file-{kept:03d}.parquet" not in on_disk  # no partial episode
    print("episodes committed at each kill:", kills)
    assert kills, "every run finished before its kill: the test tried no kill point"
    rec = D.record_demos(small(demos={"num_episodes": n}), root, progress=False)
    assert data_digests(root) == ref_files
    assert len(rec.episodes) == n and not partial.exists()


def test_recordings_in_processes_with_other_hash_seeds_are_byte_identical(tmp_path):
    """lerobot orders meta/stats.json by a set of names, i.e. by the process's string-hash seed; hilstudy sorts it,
    so a recording's bytes (and its DVC hash) do not depend on the process that made it."""
    import os

    digests = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", KILLABLE, str(tmp_path / hash_seed), "2"], env=env, check=True)
        digests.append(data_digests(tmp_path / hash_seed))
    assert digests[0] == digests[1]


def test_a_partial_recording_by_other_code_is_not_resumed_and_a_persons_is_kept(tmp_path, monkeypatch):
    """The resume rule covers the code and versions (hilstudy.provenance): a partial recording made by other code
    is not resumed. In the sim it is deleted and re-recorded; a person's (real arm) is kept and refused, naming
    what to do, since re-recording costs a person's session."""
    import hilstudy.provenance as prov
    from hilstudy.demos import RECORDING_STATE, recording_digest, recover_partial

    params = P.validate({})
    before = recording_digest(params)
    monkeypatch.setattr(prov, "provenance", lambda entry: {"code": "0" * 16, "versions": "0" * 16})
    assert recording_digest(params) != before
    partial = tmp_path / "dataset.partial"
    partial.mkdir()
    (partial / RECORDING_STATE).write_text(json.dumps({"digest": before, "kept": [0, 1]}))
    with pytest.raises(RuntimeError, match="partial recording of 2 episodes was made with other params, code or package versions; it is kept"):
        recover_partial(partial, recording_digest(params), keep_other=True)
    assert (partial / RECORDING_STATE).exists()
    assert recover_partial(partial, recording_digest(params)) is None and not partial.exists()
