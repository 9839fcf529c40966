"""CLIP tokenizers written offline from the BPE vocabulary open_clip ships (no hub download).

SD 1.x uses OpenAI CLIP's tokenizer (padding with ``<|endoftext|>``); the OpenCLIP text encoders
of SD 2.x and SDXL's second encoder pad with ``!`` (id 0), as their hub tokenizers do. The pad
token changes the padded positions' embeddings, so each kind is written to its own folder.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

END = "<|endoftext|>"
PAD_FOLDER = {END: "", "!": "-pad-bang"}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def tokenizer_folder(cache: Path, pad_token: str = END) -> Path:
    """Where the tokenizer with this pad token is written (beside the default one)."""
    cache = Path(cache)
    return cache if pad_token == END else cache.with_name(cache.name + PAD_FOLDER.get(pad_token, "-pad"))


def write_clip_tokenizer(folder: Path, bpe_path: Path | None = None, pad_token: str = END) -> Path:
    """Write vocab.json + merges.txt for transformers' CLIPTokenizer from open_clip's BPE file.

    The same construction as CLIP's ``SimpleTokenizer``: 256 byte symbols, the same with ``</w>``,
    the first 48,894 merges, then the two special tokens, 49,408 entries in all.
    """
    folder = Path(folder)
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return folder
    if bpe_path is None:
        from open_clip.tokenizer import default_bpe

        bpe_path = Path(default_bpe())
    lines = gzip.open(bpe_path, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    symbols = list(_bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab_list += ["<|startoftext|>", END]
    folder.mkdir(parents=True, exist_ok=True)
    specials = {"bos_token": "<|startoftext|>", "eos_token": END, "unk_token": END, "pad_token": pad_token}
    write_text_atomic(folder / "merges.txt", "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    write_text_atomic(folder / "vocab.json", json.dumps({tok: i for i, tok in enumerate(vocab_list)}, ensure_ascii=False))
    write_text_atomic(folder / "tokenizer_config.json", json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, **specials}, indent=2))
    write_text_atomic(folder / "special_tokens_map.json", json.dumps(specials, indent=2))
    return folder


def load_clip_tokenizer(folder: Path, pad_token: str = END):
    from transformers import CLIPTokenizer

    folder = tokenizer_folder(folder, pad_token)
    write_clip_tokenizer(folder, pad_token=pad_token)
    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
