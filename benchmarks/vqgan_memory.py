"""VQGAN+CLIP memory: peak RSS (VmHWM) of a 1,000-step demo run against a 50-step one.

Each run is a fresh ``python -m logic vqgan --demo`` process, so the peaks are comparable; frames
stream into the mp4 and metrics are flushed to disk, so a long run should not hold more memory.
Goal: the 1,000-step peak within 50 MB of the 50-step peak.

    python benchmarks/vqgan_memory.py [--long 1000] [--short 50]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import sys
from logic.__main__ import main
code = main(sys.argv[1:])
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print("VmHWM_kB", int(status["VmHWM"].split()[0]))
sys.exit(code)
"""


def peak_rss_mb(steps: int, output: Path) -> float:
    argv = ["vqgan", "--demo", "--prompt", "a red fox", "--steps", str(steps), "--size", "32", "32",
            "--cutn", "4", "--seed", "0", "--output", str(output)]
    done = subprocess.run([sys.executable, "-c", CHILD, *argv], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    line = next(l for l in done.stdout.splitlines() if l.startswith("VmHWM_kB"))
    return int(line.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", type=int, default=1000)
    parser.add_argument("--short", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        short = peak_rss_mb(args.short, Path(tmp))
        long = peak_rss_mb(args.long, Path(tmp))
    print(f"peak RSS: {args.short} steps {short:.1f} MB, {args.long} steps {long:.1f} MB, "
          f"difference {long - short:+.1f} MB (goal <= 50 MB)")


if __name__ == "__main__":
    main()
