"""The embedded default dataset: a scene grammar, a renderer and a Korean post writer.

Every post is drawn from one scene: a category's landmark, a time of day, a season, a weather and zero to
three objects. The picture is painted with PIL from the scene; the Instagram-style text and hashtags are
written from the same scene (so a model can learn them) plus noise that pixels cannot explain (location
tags, generic tags, emoji, casual endings, synonyms). Every drawn object keeps its box and the Korean word
that names it, for checking attention against it.

The modules, in the order a post is made:

- `grammar`: the scene vocabulary and the draw of one post's scene;
- `posts`: the text and hashtags written from a scene;
- `render`: the picture painted from a scene, with the boxes of its objects (its `pen`: colours under the
  scene's light; its `objects`: each object's drawing and where it stands);
- `dataset`: every post made from its seeds and written into a dataset folder (`generate`, `ensure`;
  ``python -m capkit.sample OUT_DIR --seed N``);
- `oracle`: posts written again from the true scenes of a manifest (`oracle_posts`, `oracle_draws`), the
  scenes as facts (`scene_facts`), a written post as a record (`written_record`).

What this package is used for elsewhere (`data`, `oracles`, the notebooks) is exported here.
"""

from capkit.sample.dataset import ensure, generate
from capkit.sample.grammar import CATEGORIES, OBJECT_WORDS
from capkit.sample.oracle import SCENE_FACTS, oracle_draws, oracle_posts, scene_facts, written_record

__all__ = ["CATEGORIES", "OBJECT_WORDS", "SCENE_FACTS", "ensure", "generate", "oracle_draws", "oracle_posts",
           "scene_facts", "written_record"]
