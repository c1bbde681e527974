"""python -m herd [--version | --json]: prints herd.build_info() (like horovodrun --check-build)."""

import argparse
import json
import sys

from ._build_info import build_info, format_build_info


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m herd",
        description="Print herd's version, ABI, MPI library and CUDA/NCCL/torch/TensorFlow "
        "support. Launch jobs with herdrun (python -m herd.run).",
    )
    p.add_argument("--version", action="store_true", help="the build summary (the default)")
    p.add_argument("--json", action="store_true", help="the same as one JSON object")
    args = p.parse_args(argv)
    info = build_info()
    print(json.dumps(info, indent=2) if args.json else format_build_info(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
