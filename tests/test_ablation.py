"""Choosing a setting on validation only (capkit.ablation.choose / choose_shared) on a scripted table."""

import pandas as pd

from capkit import ablation


def table():
    rows = [  # encoder, decoder, lambda, val CIDEr-D, val pointing / chance, test CIDEr-D (never looked at)
        ("a", "soft", 0.0, 0.350, 0.8, 0.30), ("a", "soft", 1.0, 0.345, 2.9, 0.40), ("a", "soft", 4.0, 0.300, 3.5, 0.50),
        ("a", "lb", 0.0, 0.330, 1.0, 0.30), ("a", "lb", 1.0, 0.336, 2.0, 0.20), ("a", "lb", 4.0, 0.334, 2.5, 0.10),
    ]
    return pd.DataFrame(rows, columns=["encoder", "decoder", "lambda_att", "val CIDEr-D", "val pointing / chance",
                                       "test CIDEr-D"])


def test_plain_choice_is_the_best_validation_score():
    picked = ablation.choose(table(), "val CIDEr-D", within=["encoder", "decoder"])
    assert list(picked["lambda_att"]) == [1.0, 0.0]  # lb first (groupby sorts), then soft


def test_within_tolerance_the_better_grounded_setting_wins():
    picked = ablation.choose(table(), "val CIDEr-D", within=["encoder", "decoder"], tolerance=0.03,
                             then="val pointing / chance")
    # soft: 0.345 is within 3 % of 0.350 and points 2.9x; 0.300 is not near -> lambda 1; lb: all near -> lambda 4
    assert dict(zip(picked["decoder"], picked["lambda_att"])) == {"soft": 1.0, "lb": 4.0}
    # the test column plays no part: scrambling it changes nothing
    shuffled = table().assign(**{"test CIDEr-D": [0.9, 0.0, 0.0, 0.9, 0.0, 0.0]})
    again = ablation.choose(shuffled, "val CIDEr-D", within=["encoder", "decoder"], tolerance=0.03,
                            then="val pointing / chance")
    assert list(again["lambda_att"]) == list(picked["lambda_att"])


def test_one_shared_value_from_the_means():
    value, means = ablation.choose_shared(table(), tolerance=0.03, then="val pointing / chance")
    # means: 0 -> 0.340 / 0.9, 1 -> 0.3405 / 2.45, 4 -> 0.317 / 3.0: 4 is 7 % below the best mean, so lambda 1
    assert value == 1.0
    assert round(float(means.set_index("lambda_att").loc[1.0, "val CIDEr-D"]), 4) == 0.3405
    assert ablation.choose_shared(table())[0] == 1.0  # plain: the best mean validation CIDEr-D
