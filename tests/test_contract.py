"""The decoder contract, run over every registered decoder (as timm tests every model): each satisfies its
Protocol, a few training steps lower its loss, it decodes greedily, by beam search, by sampling and by MBR (or, a
set decoder, through its scores and maps), it saves and loads to the same outputs, its attention maps have the
regions' shape, and its loss splits into DDP shares that give one process's gradient (two gloo processes)."""


import pytest
import torch
import torch.multiprocessing as mp

from capkit import decode, loops, mbr, metrics, models
from capkit.decoders import DECODERS

V, D, L, B = 23, 12, 9, 6
START, END, UNK = 2, 3, 1  # capkit.text's ids
SIZES = dict(vocab_size=V, encoder_dim=D, embed_dim=16, attention_dim=16, decoder_dim=24, dropout=0.1, gate="scalar")
# small sizes of each decoder's own options (the transformer's width is d_model, not the trainer's sizes)
OPTIONS = {"transformer": {"d_model": 24, "layers": 2, "heads": 2, "ff_dim": 32, "dropout": 0.1}}


def build(name):
    torch.manual_seed(0)
    return DECODERS[name].build(options=OPTIONS.get(name), **SIZES)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, L, D, generator=g)
    lengths = torch.tensor([7, 7, 6, 5, 4, 3])
    captions = torch.zeros(B, 7, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        captions[i, 0], captions[i, n - 1] = START, END
        captions[i, 1:n - 1] = torch.randint(4, V, (n - 2,), generator=g)
    return feats, captions, lengths


def test_the_registry_holds_capkits_decoders():
    assert {"soft", "lookback", "pf", "lbpf", "multilabel", "transformer"} <= set(DECODERS)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_satisfies_its_protocol_and_learns(name, one_thread):
    spec, model = DECODERS[name], build(name)
    assert isinstance(model, spec.interface)
    feats, captions, lengths = batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    first = None
    for _ in range(15):
        loss, parts = model.loss(feats, captions, lengths, 0.25, 0.0)
        assert {"ce", "att", "loss"} <= set(parts) and torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(parts["loss"]) if first is None else first
    assert float(parts["loss"]) < 0.7 * first


@pytest.mark.parametrize("name", sorted(n for n in DECODERS if DECODERS[n].search == "sequence"))
def test_sequence_decoders_search_every_way(name, one_thread):
    model = build(name).eval()
    feats, captions, lengths = batch()
    greedy = decode.greedy(model, feats, START, END, max_len=6, unk_id=UNK)
    beam1 = decode.beam_search(model, feats, START, END, beam_size=1, max_len=6, unk_id=UNK)
    beam3 = decode.beam_search(model, feats, START, END, beam_size=3, max_len=6, unk_id=UNK)
    assert [h.tokens for h in greedy] == [h.tokens for h in beam1]  # beam 1 is greedy
    for h in greedy + beam3:
        assert h.alphas.shape == (len(h.tokens), L) and all(0 <= t < V and t not in (START, UNK) for t in h.tokens)
        if len(h.tokens):
            assert torch.allclose(h.alphas.sum(1), torch.ones(len(h.tokens)), atol=1e-4)  # a map over the regions
    # beam 3 finds a finished caption at least as likely as greedy's (same scoring: summed log-probabilities)
    assert all(b.score >= g.score - 1e-4 for b, g in zip(beam3, greedy) if b.finished and g.finished)
    drawn, finished = decode.sample(model, feats, START, END, max_len=6, unk_id=UNK, repeats=4,
                                    generator=torch.Generator().manual_seed(0))
    again, _ = decode.sample(model, feats, START, END, max_len=6, unk_id=UNK, repeats=4,
                             generator=torch.Generator().manual_seed(0))
    assert len(drawn) == 4 * B and drawn == again  # seeded
    refs = [[[4, 5, 6]], [[7, 8]]] * 3
    cider = metrics.CiderD(refs)
    picked = mbr.mbr_decode(model, feats, cider, START, END, 5, 0.5, 6, UNK, torch.Generator().manual_seed(0))
    assert len(picked) == B and all({"tokens", "score", "finished"} <= set(p) for p in picked)


@pytest.mark.parametrize("name", sorted(n for n in DECODERS if DECODERS[n].search == "sequence"))
def test_step_by_step_is_teacher_forcing(name, one_thread):
    """init_state / step / reorder_state compute what the training path computes at every position."""
    model = build(name).eval()
    feats, captions, lengths = batch()
    with torch.no_grad():
        logits, alphas, rows = model.forward_packed(feats, captions, lengths)
        want = torch.log_softmax(logits.float(), dim=1)
        state = model.reorder_state(model.init_state(feats), torch.arange(B))
        T = captions.size(1)
        got = {}
        for t in range(T - 1):
            logp, alpha, state = model.step(captions[:, t], state)
            for b in range(B):
                got[b * (T - 1) + t] = (logp[b], alpha[b])
    for r, row in enumerate(rows.tolist()):
        if name in ("pf", "lbpf"):  # (their step adds the forward prediction: compare the maps only)
            assert torch.allclose(got[row][1], alphas[r], atol=1e-5)
            continue
        assert torch.allclose(got[row][0], want[r], atol=1e-4), (name, row)
        assert torch.allclose(got[row][1], alphas[r], atol=1e-5)


@pytest.mark.parametrize("name", sorted(n for n in DECODERS if DECODERS[n].search == "set"))
def test_set_decoders_score_and_map(name, one_thread):
    model = build(name).eval()
    feats, _, _ = batch()
    with torch.no_grad():
        scores, maps = model.scores(feats), model.attention(feats)
    assert scores.shape == (B, V) and ((scores >= 0) & (scores <= 1)).all()
    assert maps.shape == (B, V, L)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_saves_and_loads_to_the_same_outputs(name, tmp_path, one_thread):
    from capkit import store

    spec, model = DECODERS[name], build(name).eval()
    store.save_checkpoint({"format": store.CKPT_FORMAT, "model": model.state_dict(),
                           "decoder_config": model.config.to_dict()}, tmp_path / "m.pt")
    ckpt = store.load_checkpoint(tmp_path / "m.pt")
    again = spec.load(ckpt["decoder_config"])
    again.load_state_dict(ckpt["model"])
    again.eval()
    feats, captions, lengths = batch()
    with torch.no_grad():
        assert torch.equal(model.loss(feats, captions, lengths, 0.25)[0], again.loss(feats, captions, lengths, 0.25)[0])


def test_unknown_decoder_options_are_refused():
    with pytest.raises(ValueError, match="unknown option.*layers.*its options are.*attention_dim"):
        DECODERS["soft"].build(options={"layers": 3}, **SIZES)
    assert DECODERS["soft"].build(options={"attention_dim": 8}, **SIZES).config.attention_dim == 8


def _ddp_rank(rank, world, init_file, names, out):
    import torch.distributed as tdist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for name in names:
            model = build(name)
            model.eval()  # no dropout: both processes and the reference compute the same function
            net = DistributedDataParallel(models.Objective(model))
            feats, captions, lengths = batch()
            images = list(range(B))
            unit = DECODERS[name].loss_unit
            mine, caps, lens, share = loops.rank_share(images, captions, lengths, unit)
            loss, _ = loops.shared_loss(net, feats[mine], caps, lens, 0.25, 0.0, *share)
            loss.backward()
            if rank == 0:
                out[name] = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    finally:
        tdist.destroy_process_group()


def test_ddp_shares_give_one_process_gradient(tmp_path):
    """Two gloo processes, each with its share of one batch, average to the whole batch's gradient in one process."""
    names = sorted(DECODERS)
    out = mp.Manager().dict()
    mp.spawn(_ddp_rank, args=(2, str(tmp_path / "init"), names, out), nprocs=2, join=True)
    for name in names:
        model = build(name)
        model.eval()
        feats, captions, lengths = batch()
        loss, _ = model.loss(feats, captions, lengths, 0.25, 0.0)
        loss.backward()
        got = out[name]
        assert set(got) == {k for k, p in model.named_parameters() if p.grad is not None}, name
        if name in ("pf", "lbpf"):  # their word-after-next term is a mean over each share's own positions:
            flat = torch.cat([got[k].flatten() for k in got])  # the same direction, not the same numbers
            ref = torch.cat([p.grad.flatten() for k, p in model.named_parameters() if k in got])
            assert torch.nn.functional.cosine_similarity(flat, ref, dim=0) > 0.98, name
            continue
        for k, p in model.named_parameters():
            if k in got:
                assert torch.allclose(got[k], p.grad, atol=1e-5, rtol=1e-4), (name, k)
