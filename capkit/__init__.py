"""capkit: Korean Instagram image captioning and hashtag prediction.

Data flows one way through the modules:
records (data) -> tokens and vocabularies (text) -> features (encoders)
-> decoders (models) -> search (decode) -> scores (metrics) -> pictures (viz, widgets).
"""

__version__ = "0.1.0"
