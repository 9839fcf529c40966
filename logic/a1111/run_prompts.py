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
from .prompt_syntax import parse_attention, strip_lora_tags


def embeddings_dir() -> Path:
    return settings.assets_dir() / "embeddings"


@dataclass
class RunPrompts:
    encoded: encode.Encoded | None                   # None: the pipeline takes text (T5 families)
    record: dict = field(default_factory=dict)       # details.json "prompt_encoding"
    texts: list[str] = field(default_factory=list)   # what the encoder reads, negative last

    def kwargs(self, index: int = 0, negative_index: int | None = -1) -> dict:
        if self.encoded is None:
            return {"prompt": self.texts[index], "negative_prompt": self.texts[-1] or None}
        negative_index = len(self.encoded.embeds) - 1 if negative_index == -1 else negative_index
        return encode.pipeline_kwargs(self.encoded, index, negative_index)


# T5 pipelines (SD 3.x: tokenizer_3, Flux: tokenizer_2) read at most this many tokens by default.
T5_DEFAULT_LIMITS = {"tokenizer_3": 256, "tokenizer_2": 512}


def is_clip_only(pipe) -> bool:
    """SD 1.x/2.x/SDXL: every text encoder is a CLIP (A1111's chunked encoding applies)."""
    if getattr(pipe, "text_encoder_3", None) is not None or "text_encoder_3" in getattr(pipe, "components", {}):
        return False   # SD 3.x, its T5 loaded or not (a file run on its CLIPs alone still pools both)
    second = getattr(pipe, "text_encoder_2", None)
    return second is None or "CLIP" in type(second).__name__


def encoder_texts(prompts: list[str]) -> list[str]:
    """The texts the encoder reads: the prompts without their ``<lora:...>`` tags."""
    return [strip_lora_tags(p or "") for p in prompts]


def encode_run_prompts(pipe, prompts: list[str], negative: str, clip_skip: int = 1) -> RunPrompts:
    """Encode ``prompts`` + ``negative`` (last) for ``pipe`` (SD 1.x/2.x/SDXL) on its execution device.

    A pipeline with a T5 encoder (SD 3.x, Flux) gets plain text instead, and a note when T5 cuts it.
    """
    texts = encoder_texts([*prompts, negative or ""])
    if not is_clip_only(pipe):
        return text_prompts(pipe, texts)
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


def text_prompts(pipe, texts: list[str], max_length: int | None = None) -> RunPrompts:
    """For T5 families: A1111 weights do not apply (said once), and a cut prompt is said, never silent."""
    plain = [plain_text(text) for text in texts]
    name = "tokenizer_3" if getattr(pipe, "tokenizer_3", None) is not None else "tokenizer_2"
    tokenizer, limit = getattr(pipe, name), max_length or T5_DEFAULT_LIMITS[name]
    notes = [note for note in (encode.truncation_note(tokenizer, text, limit, "T5") for text in plain[:1]) if note]
    if any(plain_text(t) != t.strip() for t in texts):
        notes.append("Prompt weights like (word:1.2) are not applied by this model family (its T5 encoder reads "
                     "plain text): the brackets were removed.")
    record = {"syntax": "plain", "tokens": [encode.token_count(tokenizer, t) for t in plain[:-1]],
              "negative_tokens": encode.token_count(tokenizer, plain[-1]), "max_tokens": limit - 1,
              "truncated": any("were cut" in n for n in notes), "notes": notes}
    return RunPrompts(None, record, plain)


def plain_text(text: str) -> str:
    """The words of an A1111 prompt without its weight syntax (BREAK becomes a space)."""
    pieces = [piece if weight != -1 else " " for piece, weight in parse_attention(text or "")]
    return " ".join("".join(pieces).split())
