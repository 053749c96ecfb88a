"""Presets: one source of run settings for the notebook, the Makefile and the command line."""

import nbformat
import pytest

from capkit import settings
from conftest import NOTEBOOKS


@pytest.mark.parametrize("name", sorted(settings.PRESETS))
@pytest.mark.parametrize("target,decoder", [("text", "soft"), ("text", "lookback"), ("hashtag", "soft"),
                                            ("hashtag", "multilabel")])
def test_every_preset_is_a_complete_config(name, target, decoder):
    config = settings.preset(name, target=target, decoder=decoder)
    assert config.preset == name and config.overrides == {"target": target, "decoder": decoder}
    base = settings.TrainConfig(target=target, decoder=decoder)
    changed = {k for k, v in config.to_dict().items() if v != base.to_dict()[k]} - {"preset", "overrides", "run_name"}
    assert changed == {k for k, v in settings.preset_settings(name, target).items() if v != base.to_dict()[k]}


def test_the_study_preset_is_the_studys_recipe():
    for target in ("text", "hashtag"):
        c = settings.preset("study", target=target)
        assert (c.lambda_att, c.lr_schedule, c.lr, c.batch_size, c.epochs, c.patience) == (0.0, "constant", 5e-4, 32,
                                                                                          40, 5)
        assert (c.search, c.beam_size) == ("beam", 1)  # greedy
        assert (c.embed_dim, c.attention_dim, c.decoder_dim, c.dropout, c.min_freq) == (300, 512, 512, 0.5, 5)


def test_overrides_win_none_keeps_the_presets_and_typos_are_refused():
    c = settings.preset("study", epochs=1, lr=None)
    assert c.epochs == 1 and c.lr == 5e-4 and c.overrides == {"epochs": 1}
    assert settings.preset("default").lambda_att != settings.preset("default", target="hashtag").lambda_att
    with pytest.raises(ValueError, match="unknown setting.*epoch"):
        settings.preset("default", epoch=3)
    with pytest.raises(ValueError, match="unknown preset"):
        settings.preset("mine")


def test_03_with_its_parameters_untouched_trains_the_default_preset():
    nb = nbformat.read(NOTEBOOKS / "03_train.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    namespace: dict = {}
    exec(code[0], namespace)  # the parameters cell
    exec(code[1], namespace)  # the cell that builds the config
    want = settings.preset("default", target="text")
    got = namespace["config"]
    assert got.to_dict() | {"overrides": {}} == want.to_dict() | {"overrides": {}}
    assert got.preset == "default"
