"""`make bench` compares capkit with bench/reference.py (the study's algorithm run the study's way). Speed must never
change the result: for the same weights and batch, capkit's training step and the reference's give the same loss,
the same gradients, the same weights after an Adam step, and the same greedy captions."""

import pytest
import torch

from capkit.decode import greedy
from capkit.models import CaptionDecoder, DecoderConfig

import reference  # bench/reference.py (on the path through conftest)

START, END = 2, 3


def batch(B=6, T=11, V=40, L=16, D=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, T + 1, (B,), generator=g)
    lengths[0] = T  # the longest fills the width
    caps = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(lengths.tolist()):
        caps[b, 0], caps[b, n - 1] = START, END
        caps[b, 1:n - 1] = torch.randint(4, V, (n - 2,), generator=g)
    return torch.randn(B, L, D, generator=g), caps, lengths


@pytest.mark.parametrize("attention", ["soft", "lookback"])
def test_training_step_equals_the_reference(attention):
    torch.manual_seed(0)
    feats, caps, lengths = batch()
    cfg = DecoderConfig(vocab_size=40, encoder_dim=24, embed_dim=10, attention_dim=14, decoder_dim=18, dropout=0.0,
                        attention=attention)
    fast = CaptionDecoder(cfg)
    ref = reference.StudyDecoder.like(fast)
    # plain SGD: Adam divides by sqrt(v), which turns rounding noise in near-zero gradients into full-size steps
    opt_fast = torch.optim.SGD(fast.parameters(), lr=0.5)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.5)
    for step in range(3):  # several steps: weights stay equal after each update
        loss_fast, _ = fast.loss(feats, caps, lengths, lambda_att=1.0)
        loss_ref = ref.loss(feats, caps, lengths, lambda_att=1.0)
        assert abs(float(loss_fast) - float(loss_ref)) < 1e-5, (step, float(loss_fast), float(loss_ref))
        for opt, loss in ((opt_fast, loss_fast), (opt_ref, loss_ref)):
            opt.zero_grad()
            loss.backward()
        grads_ref = dict(ref.named_parameters())
        for name, p in fast.named_parameters():
            torch.testing.assert_close(p.grad, grads_ref[name].grad, atol=1e-5, rtol=1e-4, msg=name)
        opt_fast.step()
        opt_ref.step()
    ref_params = dict(ref.named_parameters())
    for name, p in fast.named_parameters():
        torch.testing.assert_close(p, ref_params[name], atol=1e-5, rtol=1e-4, msg=name)


def test_reference_train_step_runs_and_learns():
    torch.manual_seed(0)
    feats, caps, lengths = batch(B=4)
    ref = reference.StudyDecoder(40, 24, 10, 14, 18, dropout=0.0)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    losses = [reference.train_step(ref, opt, feats, caps, lengths, lambda_att=0.0) for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("attention", ["soft", "lookback"])
def test_greedy_equals_the_reference_one_image_at_a_time(attention):
    torch.manual_seed(1)
    feats, _, _ = batch(B=7)
    cfg = DecoderConfig(vocab_size=40, encoder_dim=24, embed_dim=10, attention_dim=14, decoder_dim=18,
                        attention=attention)
    fast = CaptionDecoder(cfg).eval()
    with torch.no_grad():  # let the image matter, and make <end> likely enough that captions differ in length
        fast.L_o.weight.mul_(30)
        fast.L_o.bias[END] += 1.0
    ref = reference.StudyDecoder.like(fast).eval()
    batched = greedy(fast, feats, START, END, max_len=12)
    one_by_one = [ref.greedy_one(feats[i:i + 1], START, END, max_len=12) for i in range(len(feats))]
    assert [h.tokens for h in batched] == one_by_one
    assert len({len(t) for t in one_by_one}) > 1, "the check needs captions of different lengths"


def test_bench_script_runs_and_checks_equality(sample_dir, tmp_path):
    """`make bench` end to end at toy sizes: every section reports, and the equality checks inside it hold."""
    import json

    import run as bench_run

    out = tmp_path / "bench.json"
    report = bench_run.main(["--smoke", "--data-dir", str(sample_dir), "--out", str(out)])
    assert json.loads(out.read_text())["targets"].keys() == bench_run.TARGETS.keys()
    for attention in ("soft", "lookback"):
        step = report["train_step"][attention]
        assert step["loss_abs_diff"] < 1e-5 and step["flops"] > 0 and step["capkit_s"] > 0
    assert report["decoding"]["same_captions"] == 1.0
    assert report["epoch"]["pairs"] > 0 and report["epoch"]["capkit_epoch_s"] > 0
    assert report["tokenize"]["cache_speedup"] > 1
    kiwi = report["tokenize_kiwi"]
    assert "skipped" in kiwi or (kiwi["tokenizer"] == "kiwi" and kiwi["cold_sentences_per_s"] > 0
                                 and kiwi["cache_speedup"] > 1)
    assert "kiwi tokenization" in bench_run.table(report)
