"""``python -m logic serve``: the HTTP API on the shared queue (127.0.0.1:7860 unless told otherwise)."""

from __future__ import annotations

import argparse
import gc
import sys

from ..settings import output_dir as default_output_dir
from .queue import freeze_imports


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="the HTTP API (native /api/v1 and A1111-compatible /sdapi/v1)",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; other than loopback needs --api-key")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--api-key", help="every request must carry it (Bearer, X-API-Key, or Basic password)")
    parser.add_argument("--api-key-file", metavar="FILE", help="read the API key from this file")
    parser.add_argument("--output", metavar="DIR", help="folder for run folders (default: output/)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--demo", action="store_true", help="A1111 requests use the demo model unless they name one")
    parser.add_argument("--no-worker", dest="worker", action="store_false",
                        help="only queue runs (another process, e.g. the app, runs them)")
    parser.set_defaults(handler=run_serve)


def run_serve(args) -> int:
    import uvicorn

    from ..api import ApiConfig, create_app
    from ..api.security import check_bind, read_key_file

    key = read_key_file(args.api_key_file) if args.api_key_file else args.api_key
    check_bind(args.host, key)
    config = ApiConfig(output_dir=args.output or default_output_dir(), device=args.device, host=args.host,
                       port=args.port, api_key=key, demo=args.demo, worker=args.worker)
    app = create_app(config)
    freeze_imports()
    print(f"Atelier API on http://{args.host}:{args.port} (docs: /docs) for {config.output_dir}", file=sys.stderr,
          flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        gc.unfreeze()  # let shutdown free everything (else native extensions report "leaks")
    return 0
