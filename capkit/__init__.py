"""capkit: Korean Instagram image captioning and hashtag prediction.

Data flows one way through the modules:
records (data) -> tokens and vocabularies (text) -> features (encoders)
-> decoders (fused, models) -> search (decode) -> scores (metrics) -> training and run folders (train, runs)
-> pictures (viz, widgets). Every file is written through store (atomic writes), which imports none of them.
"""

__version__ = "0.1.0"
