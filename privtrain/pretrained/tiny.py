"""A tiny, randomly initialised BERT and its word-level tokenizer, built here from a fixed public word list.

For the tests, the benchmark and a first try of ``model=pretrained`` without any download: the directory
it writes is what ``save_pretrained`` writes for a real model (``config.json``, ``model.safetensors``, a
``PreTrainedTokenizerFast``). :func:`sentiment_rows` writes a synthetic text task whose label depends on words.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE = ["good", "great", "fine", "happy", "bright", "calm", "kind", "warm", "clean", "fresh"]
NEGATIVE = ["bad", "awful", "poor", "sad", "dark", "angry", "cruel", "cold", "dirty", "stale"]
NEUTRAL = [
    "the",
    "a",
    "room",
    "was",
    "day",
    "food",
    "service",
    "staff",
    "and",
    "very",
    "quite",
    "our",
    "stay",
    "with",
    "view",
    "bed",
    "it",
    "of",
    "in",
    "on",
    "at",
    "this",
    "that",
    "hotel",
    "place",
    "time",
    "night",
    "we",
    "they",
    "team",
]
WORDS = SPECIAL + POSITIVE + NEGATIVE + NEUTRAL


def build_tiny_bert(folder: str | Path, *, hidden: int = 32, layers: int = 2, heads: int = 2, seed: int = 0) -> Path:
    """Write a randomly initialised ``BertForSequenceClassification`` and its tokenizer into ``folder``.

    Returns:
        The folder (a Hugging Face model directory).
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    folder = Path(folder)
    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(WORDS),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        num_labels=2,
    )  # type: ignore[call-arg]
    BertForSequenceClassification(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def sentiment_rows(n: int, *, seed: int = 0, length: int = 8) -> tuple[list[str], list[int]]:
    """``n`` texts of ``length`` words: neutral words and one or two words of one sentiment, which is the label."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.integers(2))
        words = list(rng.choice(NEUTRAL, size=length))
        for _ in range(int(rng.integers(1, 3))):
            words[int(rng.integers(length))] = str(rng.choice(POSITIVE if label else NEGATIVE))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels
