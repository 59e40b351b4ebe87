"""``python -m server.starters --data-dir DIR``: the background process `goldloop up` and `goldloop import` start to
train the starters projects lack (what `goldloop pretrain --starters` runs in the foreground)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..config import Settings
from . import train_missing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.starters")
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env(home=Path(args.data_dir).expanduser().resolve())
    from ml_backend.models.torch_utils import set_process_device

    set_process_device(settings.device, settings.precision)
    done = train_missing(settings, echo=lambda line: print(line, flush=True))
    return 1 if any(d.get("status") == "failed" for d in done) else 0


if __name__ == "__main__":
    sys.exit(main())
