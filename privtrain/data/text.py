"""``dataset=text`` (for ``model=pretrained``, :mod:`privtrain.pretrained`): a CSV with a text column and a label,
tokenized by the pretrained model's own tokenizer.

The tokenizer is loaded from the model's directory (``dataset.tokenizer``, by default ``model.path``) with
``local_files_only=True``; it is public and never fitted on the private text. Every row becomes
``(2, max_length)`` int64: token ids over the attention mask, padded and truncated to the public
``dataset.max_length``. The label's classes are declared in ``dataset.schema.TARGET.categories`` as for
any file. The table itself (every column) is what the ledger fingerprints and compares, as for CSV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from privtrain.data.schema import Schema, declared_schema
from privtrain.errors import UserError

TEXT_NOTE = (
    "texts tokenized by the pretrained model's own tokenizer (public, never fitted on the private text), "
    "padded or truncated to dataset.max_length={max_length} tokens"
)


@dataclass(frozen=True, eq=False)
class TextSchema:
    """Token ids from a public tokenizer, and the declared classes of the label."""

    text_column: str
    max_length: int
    tokenizer_path: str
    tokenizer: Any = field(repr=False)  # a transformers PreTrainedTokenizerBase
    labels: Schema = field(repr=False)  # the target's declared categories
    source: str = "declared"
    features: tuple = ()  # no per-column bounds: the text column is tokenized
    kind: str = "text"

    @property
    def classes(self) -> tuple:
        return self.labels.classes

    @property
    def notes(self) -> tuple[str, ...]:
        return (TEXT_NOTE.format(max_length=self.max_length),)

    @property
    def inferred(self) -> bool:
        return False

    @property
    def n_inputs(self) -> int:
        return 2 * self.max_length

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """(n, 2, max_length) int64: token ids, then the attention mask. A missing text is the empty text."""
        texts = frame[self.text_column].fillna("").astype(str).tolist()
        enc = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="np"
        )
        return np.stack([enc["input_ids"], enc["attention_mask"]], axis=1).astype(np.int64)

    def encode_target(self, values: pd.Series) -> np.ndarray:
        return self.labels.encode_target(values)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "classes": list(self.classes),
            "text_column": self.text_column,
            "max_length": self.max_length,
            "tokenizer": self.tokenizer_path,
            "source": self.source,
            "notes": list(self.notes),
        }


LLM_EXTRA = "model=pretrained and dataset=text need the llm extra (transformers, peft): pip install 'privtrain[llm]'"


def require_llm() -> None:
    """Switch the Hugging Face hub offline, then import transformers and peft; one line if the extra is missing.

    Raises:
        UserError: transformers or peft is not installed.
    """
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"  # read when huggingface_hub is imported: set before, and for good
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import peft  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise UserError(LLM_EXTRA) from None


def load_tokenizer(path: str | None):
    """The tokenizer saved in a model's directory, from local files only.

    Raises:
        UserError: no path, the ``.[llm]`` extra missing, or no tokenizer there.
    """
    from pathlib import Path

    from privtrain.errors import user_paths

    if not path:
        raise UserError(
            "dataset=text needs the model's tokenizer: use model=pretrained model.path=DIR (a Hugging "
            "Face directory), or dataset.tokenizer=DIR."
        )
    folder = Path(str(path)).expanduser()
    with user_paths("dataset.tokenizer"):
        found = folder.is_dir()
    if not found:
        raise UserError(
            f"dataset.tokenizer (by default model.path): no directory {str(folder)!r}; point model.path "
            "at a local Hugging Face model directory, which holds the tokenizer (nothing is downloaded)."
        )
    require_llm()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"dataset.tokenizer={str(folder)!r}: no tokenizer loads from it ({first[:160]}); save the "
            "model's tokenizer there (tokenizer.save_pretrained)."
        ) from None


def text_schema(frame: pd.DataFrame, spec) -> TextSchema:
    """The schema of a text table: the declared label classes and the model's tokenizer.

    Args:
        frame: the raw table.
        spec: the ``DatasetSpec`` (``text``: ``column``, ``max_length``, ``tokenizer``).

    Raises:
        UserError: a missing column, an undeclared label, a bad max_length or tokenizer.
    """
    text = dict(spec.text or {})
    column, max_length = text.get("column"), text.get("max_length", 128)
    if column not in frame.columns:
        raise UserError(
            f"dataset.text_column={column!r} is not a column of {spec.path}; columns are {list(frame.columns)[:20]}."
        )
    if spec.target not in frame.columns or spec.target == column:
        raise UserError(
            f"dataset.target={spec.target!r} must be a column of {spec.path} other than the text; columns "
            f"are {list(frame.columns)[:20]}."
        )
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 2 <= max_length <= 8192:
        raise UserError(f"dataset.max_length={max_length!r} must be a whole number of tokens in 2..8192.")
    if not spec.schema or spec.target not in spec.schema:
        raise UserError(
            f"dataset.schema.{spec.target} is not declared: declare the label's classes, e.g. "
            f"+dataset.schema.{spec.target}='{{categories: [0, 1]}}'."
        )
    labels = declared_schema({spec.target: spec.schema[spec.target]}, [], spec.target)
    tokenizer = load_tokenizer(text.get("tokenizer"))
    if getattr(tokenizer, "pad_token", None) is None:
        raise UserError(
            f"dataset.tokenizer={text.get('tokenizer')!r}: the tokenizer has no padding token; set one "
            "and save it again (tokenizer.pad_token = ...)."
        )
    return TextSchema(str(column), max_length, str(text.get("tokenizer")), tokenizer, labels)


def text_pii(frame: pd.DataFrame, spec, schema: TextSchema) -> dict:
    """The PII gate for a text table. The text column is free text by design (the gate's ``free_text`` finding
    there is recorded as the declared input); any other identifier found in it (e-mails, phone numbers, ...)
    or in the label is refused unless declared in ``dataset.pii.allow``, as for any file.

    Raises:
        IdentifiersFound: identifiers in used columns, neither dropped nor declared.
    """
    from privtrain.data import pii_gate
    from privtrain.data.pii import detect

    column = schema.text_column
    free_text = [f for f in detect(frame, columns=[column]) if f.kind == "free_text"]
    masked = frame.drop(columns=[column]) if free_text else frame
    used = [spec.target] if free_text else [column, spec.target]
    record = pii_gate.check(masked, used, drop=spec.drop, allow=spec.pii_allow, where=f"dataset.path={spec.path}")
    record["findings"] += [
        {
            "column": f.column,
            "kind": f.kind,
            "reason": f.reason,
            "status": "the text input of dataset=text (protected per example by DP-SGD)",
        }
        for f in free_text
    ]
    return record
