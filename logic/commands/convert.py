"""``python -m logic convert FILE``: rewrite a checkpoint's weights as .safetensors."""

from __future__ import annotations

from ..models.checkpoints import convert_to_safetensors


def register(subparsers) -> None:
    parser = subparsers.add_parser("convert", help="write a checkpoint's weights as .safetensors")
    parser.add_argument("file", help="a .ckpt/.pt/.bin file")
    parser.add_argument("--output", help="target file (default: same name, .safetensors)")
    parser.add_argument("--trust-code", action="store_true",
                        help="unpickle normally even if the file runs code (only for files you trust)")
    parser.set_defaults(handler=convert)


def convert(args) -> int:
    print(convert_to_safetensors(args.file, args.output, trust_code=args.trust_code))
    return 0
