"""bench/rehearsal.py builds a stand-in of a real captioned set (several texts per photo) that capkit reads as
any manifest: every photo keeps its split and gets its post plus fresh draws of the writer from the same scene."""

import json

import rehearsal  # bench/rehearsal.py (on the path through conftest)

from capkit import data as D
from capkit import sample


def test_the_manifest_has_several_texts_per_photo(sample_dir, tmp_path):
    out = rehearsal.write_manifest(sample_dir, tmp_path / "data", refs=5, seed=1)
    posts = {p["key"]: p for p in map(json.loads, open(sample_dir / "manifest.jsonl", encoding="utf-8"))}
    records, report = D.load("manifest", out)
    assert len(records) == len(posts) and not report.skipped
    draws = sample.oracle_draws(sample_dir, seed=1, n=4)
    for r in records:
        post = posts[r.key]
        assert (r.split, r.category, r.hashtags[:1]) == (post["split"], post["category"], post["hashtags"][:1])
        want = D.make_record(D.LoadReport(source="test"), r.key, key=r.key, image=r.image,
                             texts=[post["text"]] + [d["text"] for d in draws[r.key]], hashtags=[])
        assert r.texts == want.texts  # the post first, then its draws
    assert sum(len(r.texts) for r in records) > 4.5 * len(records)  # draws rarely repeat each other
    first = (out / "manifest.jsonl").read_bytes()  # seeded: a second build writes the same file
    rehearsal.write_manifest(sample_dir, tmp_path / "data", refs=5, seed=1)
    assert (out / "manifest.jsonl").read_bytes() == first
