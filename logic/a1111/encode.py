"""Prompts of any length with A1111 weights, encoded by the pipeline's own CLIP text encoders.

The method of A1111's ``sd_hijack_clip`` (re-implemented; same numbers):

1. the prompt is parsed into (text, weight) pieces (``prompt_syntax.parse_attention``) and each
   piece tokenised without special tokens;
2. tokens are packed into chunks of 75; a chunk that fills up moves the words after its last comma
   (if that comma is within the last 20 tokens) into the next chunk; ``BREAK`` closes a chunk;
   textual-inversion embeddings take as many slots as they have vectors and never straddle chunks;
3. each chunk becomes ``<start> 75 tokens <end>`` (SD 2.x / SDXL's CLIP-G: padding after the end
   token is the tokenizer's pad token) and goes through the text encoder on its own;
4. emphasis: the chunk's hidden states are multiplied by the token weights, then rescaled so their
   mean is the mean before weighting ("Original" emphasis);
5. the chunks are concatenated: 77 x k tokens; a prompt and its negative are padded to the same
   number of chunks with encoded empty chunks (A1111's "pad prompt/negative prompt" behaviour).

SDXL: the same chunks go through both encoders (CLIP-L and CLIP-G, penultimate layer), their states
are concatenated on the feature axis, and the pooled vector is CLIP-G's for the first chunk.
Clip skip N (A1111's "CLIP_stop_at_last_layers") takes the N-th layer from the end and applies the
final layer norm (SD 1.x/2.x); for SDXL it moves the penultimate layer N - 1 further back.

CLIP families have no length limit this way; ``truncation_note`` is for encoders that do (T5).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from ..errors import UserError
from .prompt_syntax import BREAK, parse_attention

CHUNK = 75               # tokens per chunk between the start and end tokens
COMMA_BACKTRACK = 20     # A1111's default "comma_padding_backtrack"


@dataclass
class Branch:
    """One CLIP text encoder with its tokenizer; ``sdxl`` selects SDXL's layer and pooled output."""

    tokenizer: object
    text_encoder: object
    sdxl: bool = False
    pooled: bool = False     # take the projected pooled output (SDXL's CLIP-G)

    @property
    def width(self) -> int:
        return int(self.text_encoder.get_input_embeddings().weight.shape[-1])


@dataclass
class Chunk:
    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    fixes: list[tuple[int, object]] = field(default_factory=list)   # (offset, Embedding)


@dataclass
class Encoded:
    """What a diffusers pipeline takes instead of text; ``pooled`` only for SDXL."""

    embeds: list[torch.Tensor]                   # one (1, 77*k, C) per text, all the same k
    pooled: list[torch.Tensor | None]
    token_counts: list[int]                      # tokens each text used (embeddings included)
    embeddings_used: dict = field(default_factory=dict)   # name -> Embedding

    @property
    def chunks(self) -> int:
        return self.embeds[0].shape[1] // (CHUNK + 2)


def branches_of(pipe) -> list[Branch]:
    """The CLIP encoders of an SD 1.x/2.x pipeline (one) or an SDXL pipeline (two)."""
    second = getattr(pipe, "text_encoder_2", None)
    if second is None:
        return [Branch(pipe.tokenizer, pipe.text_encoder)]
    first = [Branch(pipe.tokenizer, pipe.text_encoder, sdxl=True)] if pipe.text_encoder is not None else []
    return first + [Branch(pipe.tokenizer_2, second, sdxl=True, pooled=True)]


def encode_texts(branches: list[Branch], texts: list[str], clip_skip: int = 1, embeddings: dict | None = None,
                 device=None) -> Encoded:
    """Encode ``texts`` (e.g. [prompt, negative]) to embeddings of equal length, A1111's way."""
    embeddings = embeddings or {}
    per_text = [_tokenize_line(branches[0].tokenizer, text, embeddings) for text in texts]
    count = max(len(chunks) for chunks, _ in per_text)
    used = {fix[1].name: fix[1] for chunks, _ in per_text for chunk in chunks for fix in chunk.fixes}
    embeds, pooled = [], []
    for chunks, _ in per_text:
        chunks = chunks + [_empty_chunk()] * (count - len(chunks))
        states, first_pooled = [], None
        for branch in branches:
            outputs = [_encode_chunk(branch, chunk, clip_skip, device) for chunk in chunks]
            states.append(torch.cat([z for z, _ in outputs], dim=1))
            if branch.pooled:
                first_pooled = outputs[0][1]
        embeds.append(torch.cat(states, dim=-1))
        pooled.append(first_pooled)
    return Encoded(embeds, pooled, [n for _, n in per_text], used)


def pipeline_kwargs(encoded: Encoded, index: int = 0, negative_index: int | None = 1) -> dict:
    """``prompt_embeds`` (+ pooled for SDXL) for a diffusers pipeline call."""
    kwargs = {"prompt_embeds": encoded.embeds[index]}
    if negative_index is not None:
        kwargs["negative_prompt_embeds"] = encoded.embeds[negative_index]
    if encoded.pooled[index] is not None:
        kwargs["pooled_prompt_embeds"] = encoded.pooled[index]
        if negative_index is not None:
            kwargs["negative_pooled_prompt_embeds"] = encoded.pooled[negative_index]
    return kwargs


# 1-2. Tokens into chunks -----------------------------------------------------------------------------

def _tokenize_line(tokenizer, text: str, embeddings: dict) -> tuple[list[Chunk], int]:
    pieces = parse_attention(text or "")
    token_lists = tokenizer([piece for piece, _ in pieces], truncation=False, add_special_tokens=False, verbose=False)["input_ids"]
    comma = tokenizer.get_vocab().get(",</w>")
    by_first = _embeddings_by_first_token(tokenizer, embeddings)
    chunks: list[Chunk] = []
    chunk, last_comma = Chunk(), -1

    def close():
        nonlocal chunk, last_comma
        chunks.append(chunk)
        chunk, last_comma = Chunk(), -1

    for tokens, (piece, weight) in zip(token_lists, pieces):
        if piece == BREAK and weight == -1:
            close()
            continue
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == comma:
                last_comma = len(chunk.tokens)
            elif len(chunk.tokens) == CHUNK and last_comma != -1 and len(chunk.tokens) - last_comma <= COMMA_BACKTRACK:
                cut = last_comma + 1
                moved = Chunk(chunk.tokens[cut:], chunk.weights[cut:])
                chunk.tokens, chunk.weights = chunk.tokens[:cut], chunk.weights[:cut]
                close()
                chunk = moved
            if len(chunk.tokens) == CHUNK:
                close()
            embedding, consumed = _embedding_at(tokens, position, by_first)
            if embedding is None:
                chunk.tokens.append(token)
                chunk.weights.append(weight)
                position += 1
                continue
            if len(chunk.tokens) + embedding.length > CHUNK:
                close()
            chunk.fixes.append((len(chunk.tokens), embedding))
            chunk.tokens += [0] * embedding.length
            chunk.weights += [weight] * embedding.length
            position += consumed
    if chunk.tokens or not chunks:
        close()
    return chunks, sum(len(c.tokens) for c in chunks)


def _empty_chunk() -> Chunk:
    return Chunk()


def _embeddings_by_first_token(tokenizer, embeddings: dict) -> dict[int, list]:
    table: dict[int, list] = {}
    for name, embedding in embeddings.items():
        ids = tokenizer(name, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]
        if ids:
            table.setdefault(ids[0], []).append((ids, embedding))
    for entries in table.values():
        entries.sort(key=lambda entry: -len(entry[0]))   # the longest name wins
    return table


def _embedding_at(tokens: list[int], position: int, by_first: dict):
    for ids, embedding in by_first.get(tokens[position], []):
        if tokens[position:position + len(ids)] == ids:
            return embedding, len(ids)
    return None, 0


# 3-4. One chunk through the encoder -------------------------------------------------------------------

def _encode_chunk(branch: Branch, chunk: Chunk, clip_skip: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    tokenizer, encoder = branch.tokenizer, branch.text_encoder
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    filler = CHUNK - len(chunk.tokens)
    ids = [start] + chunk.tokens + [end] + [pad] * filler
    weights = [1.0] + chunk.weights + [1.0] * (filler + 1)
    device = device or encoder.device
    input_ids = torch.tensor([ids], device=device)
    with torch.no_grad(), _embedding_fixes(encoder, chunk.fixes, branch.width):
        output = encoder(input_ids, output_hidden_states=True)
    z = _hidden_state(encoder, output, branch, clip_skip)
    pooled = output.text_embeds if branch.pooled else None
    return _emphasise(z, torch.tensor(weights, device=z.device, dtype=z.dtype)), pooled


def _hidden_state(encoder, output, branch: Branch, clip_skip: int) -> torch.Tensor:
    clip_skip = max(1, int(clip_skip or 1))
    if branch.sdxl:
        return output.hidden_states[-(clip_skip + 1)]
    if clip_skip == 1:
        return output.last_hidden_state
    if clip_skip >= len(output.hidden_states):
        raise UserError(f"Clip skip {clip_skip} is more than this text encoder's "
                        f"{len(output.hidden_states) - 1} layers: use 1 or 2.")
    layers = getattr(encoder, "text_model", encoder)   # transformers 5 dropped the text_model level
    return layers.final_layer_norm(output.hidden_states[-clip_skip])


def _emphasise(z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A1111's "Original" emphasis: weight each token's state, then restore the chunk's mean."""
    if bool((weights == 1).all()):
        return z
    original_mean = z.mean()
    z = z * weights.reshape(1, -1, 1)
    return z * (original_mean / z.mean())


@contextlib.contextmanager
def _embedding_fixes(encoder, fixes: list, width: int):
    """Put textual-inversion vectors into the token embeddings' output for this call only.

    A forward hook on the encoder's token embedding (A1111's ``EmbeddingsWithFixes``), so the cached
    text encoder and tokenizer are never changed.
    """
    if not fixes:
        yield
        return

    def replace(_module, _inputs, output):
        output = output.clone()
        for offset, embedding in fixes:
            vectors = embedding.for_width(width).to(output.device, output.dtype)
            output[:, 1 + offset:1 + offset + vectors.shape[0]] = vectors   # +1: the start token
        return output

    handle = encoder.get_input_embeddings().register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()


# Encoders with a hard limit ---------------------------------------------------------------------------

def token_count(tokenizer, text: str) -> int:
    """Tokens ``text`` makes without special tokens (for the length notes)."""
    return len(tokenizer(text or "", truncation=False, add_special_tokens=False, verbose=False)["input_ids"])


def truncation_note(tokenizer, text: str, max_length: int, encoder_name: str) -> str | None:
    """One sentence when ``text`` is longer than an encoder's hard limit (e.g. T5's max length), else None."""
    count = token_count(tokenizer, text)
    usable = max_length - 1      # T5 adds one end token; CLIP families never get here (chunks)
    if count <= usable:
        return None
    return (f"The prompt is {count} tokens long; the {encoder_name} encoder reads only the first {usable}, "
            f"so the last {count - usable} were cut: shorten the prompt to keep them.")


def chunk_note(encoded: Encoded) -> str | None:
    """A note when a prompt needed more than one 75-token chunk (no truncation, but worth knowing)."""
    if encoded.chunks <= 1:
        return None
    return (f"The prompt is {encoded.token_counts[0]} tokens long: it was encoded in {encoded.chunks} chunks of "
            f"{CHUNK} tokens (as A1111 does), nothing was cut.")
