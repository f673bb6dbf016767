"""CPU-scale demo assets: a synthetic fine-grained retrieval domain and a tiny pretrained CLIP.

Build both with ``python -m tools.demo.build --data DATA_ROOT``. The modules:

* ``drawing``: the one renderer (shapes, patterns, noise) both image sources use;
* ``scenes``: attribute vocabulary, scene sampling and caption templates, shared likewise;
* ``synthetic_domain``: the ``synthetic`` domain in FDRD Format A and the CoOp layout;
* ``generic_pool``: the generic captioned pool the tiny CLIP is pretrained on;
* ``tiny_clip``: architecture, contrastive pretraining, cached save and load;
* ``zero_shot``: zero-shot Recall@K on the synthetic test split;
* ``build``: the command line tying them together.
"""
