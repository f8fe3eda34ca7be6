"""DP fine-tuning of a pretrained model: ``model=pretrained`` and ``dataset=text`` (docs/pretrained.md).

- :mod:`.spec`: what ``model.*`` says (local path, fine-tuning mode, LoRA settings), checked.
- :mod:`.load`: the weights from a local path only (a Hugging Face ``transformers`` directory, or a
  torch state dict for a privtrain-built network), and their SHA-256 (a public input).
- :mod:`.modes`: which parameters train (``all``, ``last_k``, ``lora``); everything else is frozen,
  so Opacus clips and noises the trainable parameters only.
- :mod:`privtrain.data.text`: ``dataset=text``: a CSV of texts and labels, tokenized by the model's own tokenizer.

The pretrained weights are a public input: the privacy guarantee covers the fine-tuning rows only.
"""
