"""make demo's program on the small embedded dataset (smoke sizes): it trains both runs, captions test photos with a
text and hashtags, draws the attention figure and says where everything is; a second call reuses the runs."""

import json

from capkit import demo


def test_demo_writes_captions_hashtags_and_a_figure(sample_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    figure = demo.main(["--run-dir", str(out), "--data-dir", str(sample_dir), "--images", "3", "--smoke"])
    lines = [json.loads(x) for x in (out / "captions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 3 and all({"image", "text", "hashtags"} <= set(x) for x in lines)
    assert all(isinstance(x["hashtags"], list) for x in lines)
    assert figure.exists() and figure.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert str(out / "captions.jsonl") in printed and str(figure) in printed and "next:" in printed
    # a second call finds both runs finished: nothing is trained again (the checkpoints stay as they were)
    best = {p: p.stat().st_mtime_ns for p in out.glob("*/best.pt")}
    demo.main(["--run-dir", str(out), "--data-dir", str(sample_dir), "--images", "3", "--smoke"])
    assert len(best) == 2 and {p: p.stat().st_mtime_ns for p in out.glob("*/best.pt")} == best
