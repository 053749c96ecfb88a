"""The decoders capkit ships, registered by name: one line each (a run's ``decoder``, the Makefile's DECODERS).

A new decoder is a module of its own with a class that satisfies :class:`capkit.models.SequenceDecoder` (or
:class:`capkit.models.SetDecoder`) and one line here; a decoder kept outside capkit calls
:func:`capkit.models.register_decoder` itself before a run names it.
"""

from capkit import models, multilabel, predict_forward, transformer
from capkit.models import DECODERS, register_decoder

register_decoder("soft", models.SOFT)
register_decoder("lookback", models.LOOKBACK)
register_decoder("pf", predict_forward.PF)
register_decoder("lbpf", predict_forward.LBPF)
register_decoder("multilabel", multilabel.SPEC)
register_decoder("transformer", transformer.SPEC)

__all__ = ["DECODERS"]
