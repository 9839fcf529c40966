"""What an SD run does with its prompts: A1111 syntax in, pipeline embeddings and notes out.

The engines call ``encode_run_prompts`` instead of handing text to the pipeline: LoRA tags are taken
out of the text the encoder reads (they stay in the recorded prompt and PNG), embeddings named in
the prompts are loaded from assets/embeddings/, and the prompts are encoded in 75-token chunks
with A1111 weights (``encode.encode_texts``). What happened is returned as a plain dict for
details.json (token counts, chunks, embeddings, and a note whenever something is worth saying).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import settings
from ..models.embeddings import embeddings_in
from . import encode
from .prompt_syntax import strip_lora_tags


def embeddings_dir() -> Path:
    return settings.assets_dir() / "embeddings"


@dataclass
class RunPrompts:
    encoded: encode.Encoded
    record: dict = field(default_factory=dict)       # details.json "prompt_encoding"

    def kwargs(self, index: int = 0, negative_index: int | None = -1) -> dict:
        negative_index = len(self.encoded.embeds) - 1 if negative_index == -1 else negative_index
        return encode.pipeline_kwargs(self.encoded, index, negative_index)


def encoder_texts(prompts: list[str]) -> list[str]:
    """The texts the encoder reads: the prompts without their ``<lora:...>`` tags."""
    return [strip_lora_tags(p or "") for p in prompts]


def encode_run_prompts(pipe, prompts: list[str], negative: str, clip_skip: int = 1) -> RunPrompts:
    """Encode ``prompts`` + ``negative`` (last) for ``pipe`` (SD 1.x/2.x/SDXL) on its execution device."""
    texts = encoder_texts([*prompts, negative or ""])
    embeddings = embeddings_in(texts, embeddings_dir())
    encoded = encode.encode_texts(encode.branches_of(pipe), texts, clip_skip=clip_skip, embeddings=embeddings,
                                  device=pipe._execution_device)
    return RunPrompts(encoded, _record(encoded, clip_skip))


def _record(encoded: encode.Encoded, clip_skip: int) -> dict:
    note = encode.chunk_note(encoded)
    return {"syntax": "a1111", "tokens": encoded.token_counts[:-1], "negative_tokens": encoded.token_counts[-1],
            "chunks": encoded.chunks, "truncated": False, "clip_skip": clip_skip,
            "embeddings": {name: emb.hash for name, emb in encoded.embeddings_used.items()},
            "notes": [note] if note else []}


def ti_hashes(record: dict) -> str | None:
    """A1111's "TI hashes" value ("name: hash, ...") from a run's encoding record."""
    used = (record or {}).get("embeddings") or {}
    return ", ".join(f"{name.replace(':', '').replace(',', '')}: {h}" for name, h in used.items()) or None
