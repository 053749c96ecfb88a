"""Training: determinism, resume equivalence, safe checkpoints, the run folder, free-running validation."""

import dataclasses
import json
import pickle

import pytest
import torch

from capkit import build, checkpoints, decode, evaluation, prepare, retrieval, runs, store, train


@pytest.fixture(scope="module")
def prep(sample_dir, cache_dir, tmp_path_factory):
    cfg = train.TrainConfig(data_dir=str(sample_dir), run_dir=str(tmp_path_factory.mktemp("runs")), smoke=True,
                            epochs=3, batch_size=8, cache_dir=str(cache_dir), dropout=0.3)
    return train.prepare(cfg, progress=False)


def with_run(prep, run_dir, **changes):
    return dataclasses.replace(prep, config=dataclasses.replace(prep.config, run_dir=str(run_dir), **changes))


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def strip_times(history):
    return [{k: v for k, v in row.items() if "seconds" not in k} for row in history]


def test_prepare_splits_vocab_and_pairs(prep):
    assert set(prep.records) == {"train", "val", "test"} and all(prep.records.values())
    pairs = prep.pairs("train")
    assert len(pairs) == sum(len(refs) for refs in prep.tokens["train"])
    assert all(ids[0] == 2 and ids[-1] == 3 for _, ids in pairs)  # <start> ... <end>
    assert prep.features([r.image for r in prep.records["val"][:3]]).shape == (3, 196, 112)
    # the vocabulary comes from the training split only
    train_tokens = {t for refs in prep.tokens["train"] for toks in refs for t in toks}
    assert set(prep.vocab.itos[4:]) <= train_tokens


def test_batches_cover_every_pair_once_longest_first(prep):
    pairs = prep.pairs("train")
    seen = []
    for images, caps, lengths in prepare.batches(pairs, 8, torch.Generator().manual_seed(3)):
        assert lengths.tolist() == sorted(lengths.tolist(), reverse=True)  # the order the decoder steps them in
        for img, row, n in zip(images, caps, lengths.tolist()):
            assert row[n:].eq(0).all()
            seen.append((img, row[:n].tolist()))
    assert sorted(seen) == sorted(pairs)


def test_same_seed_same_model_on_cpu(prep, tmp_path):
    a, sa = train.fit(with_run(prep, tmp_path / "a", epochs=2), progress=False)
    b, sb = train.fit(with_run(prep, tmp_path / "b", epochs=2), progress=False)
    assert same_weights(weights(a), weights(b))
    assert strip_times(sa.history) == strip_times(sb.history)
    c, _ = train.fit(with_run(prep, tmp_path / "c", epochs=2, seed=1), progress=False)
    assert not same_weights(weights(a), weights(c))


def test_resume_reaches_the_uninterrupted_result(prep, tmp_path):
    full, s_full = train.fit(with_run(prep, tmp_path / "full"), progress=False)
    p = with_run(prep, tmp_path / "killed")
    train.fit(p, progress=False, stop_after=1)  # "killed" after its first epoch
    assert json.loads((p.config.path / "history.json").read_text())[-1]["epoch"] == 1
    resumed, s_res = train.fit(p, progress=False)
    assert s_res.epoch == s_full.epoch == 3
    assert strip_times(s_res.history) == strip_times(s_full.history)
    assert same_weights(weights(full), weights(resumed))
    last_a = store.load_checkpoint(tmp_path / "full" / p.config.run_name / "last.pt")
    last_b = store.load_checkpoint(p.config.path / "last.pt")
    assert same_weights(last_a["model"], last_b["model"])


def test_a_changed_config_does_not_resume_or_overwrite(prep, tmp_path):
    p = with_run(prep, tmp_path)
    train.fit(dataclasses.replace(p, config=dataclasses.replace(p.config, epochs=1)), progress=False)
    folder = tmp_path / p.config.run_name
    before = {f.name: f.read_bytes() for f in folder.iterdir()}
    other = dataclasses.replace(p, config=dataclasses.replace(p.config, epochs=2, lr=1e-3))
    with pytest.raises(checkpoints.RunExists, match=r"other settings \(lr: 0.0005 -> 0.001\)"):
        train.fit(other, progress=False)
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before  # nothing written
    more = dataclasses.replace(p, config=dataclasses.replace(p.config, epochs=2))  # more epochs: resumes
    _, state = train.fit(more, progress=False)
    assert state.epoch == 2


class Evil:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_pickled_payloads_are_refused(prep, tmp_path):
    model, _ = train.fit(with_run(prep, tmp_path, epochs=1), progress=False)
    good = tmp_path / prep.config.run_name / "best.pt"
    ckpt = store.load_checkpoint(good)
    assert {"model", "optimizer", "config", "vocab", "decoder_config", "state"} <= set(ckpt)
    bad = tmp_path / "evil.pt"
    torch.save({**ckpt, "extra": Evil()}, bad)
    with pytest.raises(store.CheckpointError, match="evil.pt"):
        store.load_checkpoint(bad)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(store.CheckpointError):
        store.load_checkpoint(raw)


def test_atomic_save_keeps_the_old_file_when_killed(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    store.save_checkpoint({"format": store.CKPT_FORMAT, "x": torch.ones(3)}, path)

    def dies(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # the process is killed mid-write

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        store.save_checkpoint({"format": store.CKPT_FORMAT, "x": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(store.load_checkpoint(path)["x"], torch.ones(3))


def test_validation_decodes_free_running(prep, tmp_path, monkeypatch):
    """Early stopping reads greedy decoding, never teacher forcing."""
    calls = []
    real = decode.greedy

    def spy(*args, **kwargs):
        calls.append(args[1].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(decode, "greedy", spy)
    model = build.build_model(prep.config, len(prep.vocab))
    score = evaluation.val_score(model, prep)
    assert sum(calls) == len(prep.records["val"]) and 0 <= score["score"] <= 1


def test_run_folder_and_load_run(prep, tmp_path):
    p = with_run(prep, tmp_path, epochs=1)
    model, _ = train.fit(p, progress=False)
    result = train.test(model, p, beam_size=2)
    folder = p.config.path
    for name in ("config.json", "vocab.json", "detokenizer.json", "best.pt", "last.pt", "history.json",
                 "metrics.json", "predictions.jsonl"):
        assert (folder / name).exists(), name
    lines = [json.loads(x) for x in (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == result["n"] == len(p.records["test"])
    assert lines[0]["reference_tokens"] == p.tokens["test"][0]
    run = runs.load_run(folder)
    assert same_weights(weights(run.model), weights(model)) and run.vocab.itos == p.vocab.itos
    json.loads((folder / "metrics.json").read_text())  # standard JSON (no NaN)


def test_start_from_continues_a_copy_with_self_critical_epochs(prep, tmp_path):
    base = with_run(prep, tmp_path, epochs=2)
    train.fit(base, progress=False)
    src = base.config.path
    before = {f.name: f.read_bytes() for f in src.iterdir()}
    fork = with_run(prep, tmp_path, epochs=2, run_name="forked", start_from=str(src), scst_epochs=1,
                    scst_batch=8, scst_samples=2)
    _, state = train.fit(fork, progress=False)
    assert [r["phase"] for r in state.history] == ["xe", "xe", "scst"]  # no cross-entropy epoch again
    assert state.history[:2] == json.loads(before["history.json"])
    assert {f.name: f.read_bytes() for f in src.iterdir()} == before  # the source run is untouched
    with pytest.raises(FileNotFoundError, match="no last.pt"):
        train.fit(with_run(prep, tmp_path, run_name="x", start_from=str(tmp_path / "nothing")), progress=False)


def test_mbr_evidence_is_the_nearest_images_references_in_order():
    """What MBR reads besides its samples (retrieval.mbr_evidence): the references of the nearest training images,
    closest image first, cut at m; as vocabulary ids (an unknown word is <unk>)."""
    import numpy as np
    from types import SimpleNamespace

    from capkit import text

    train_rows = [("a", [1.0, 0.0], [["red", "boat"], ["a", "boat"]]), ("b", [0.0, 1.0], [["snow"]]),
                  ("c", [0.9, 0.3], [["blue", "sea"]])]
    test_rows = [("t", [1.0, 0.1]), ("u", [0.1, 1.0])]
    vecs = {k: np.asarray(v, dtype=np.float32) for k, v, *_ in train_rows + test_rows}
    vocab = text.Vocab.build([t for _, _, refs in train_rows for t in refs if t != ["blue", "sea"]], min_freq=1)
    prep = SimpleNamespace(config=train.TrainConfig(smoke=True), vocab=vocab,
                           records={"train": [SimpleNamespace(image=k) for k, *_ in train_rows],
                                    "test": [SimpleNamespace(image=k) for k, _ in test_rows]},
                           tokens={"train": [refs for *_, refs in train_rows]},
                           store=SimpleNamespace(global_dim=2, global_pooled=lambda ims: np.stack([vecs[i] for i in ims])))
    ids = lambda words: [vocab.stoi.get(w, text.UNK_ID) for w in words]  # noqa: E731
    got = retrieval.mbr_evidence(prep, "test", 3)
    assert got[0] == [ids(["red", "boat"]), ids(["a", "boat"]), ids(["blue", "sea"])]  # a, then c
    assert got[1] == [ids(["snow"]), ids(["blue", "sea"]), ids(["red", "boat"])]  # b, c, then a's first
    assert ids(["blue"]) == [text.UNK_ID]
    assert retrieval.mbr_evidence(prep, "test", 1, limit=1) == [[ids(["red", "boat"])]]
    with pytest.raises(ValueError, match="mbr_neighbours"):
        train.TrainConfig(mbr_neighbours=-1)


def test_weights_digest_names_the_weights():
    """The test fingerprint's weights: equal weights give one digest, any changed value or buffer another; 0-dim
    buffers and other dtypes are read too."""
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    b = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    b.load_state_dict(a.state_dict())
    assert evaluation.weights_digest(a) == evaluation.weights_digest(b)
    with torch.no_grad():
        b[0].weight[1, 2] += 1e-6
    assert evaluation.weights_digest(a) != evaluation.weights_digest(b)
    b.load_state_dict(a.state_dict())
    b[1].num_batches_tracked += 1  # a 0-dim buffer
    assert evaluation.weights_digest(a) != evaluation.weights_digest(b)
    b.load_state_dict(a.state_dict())
    assert evaluation.weights_digest(b.to(torch.float64)) != evaluation.weights_digest(a)  # the same values, another dtype
