"""`python -m soak [--quick]`: the crash soak (see soak/__init__.py and the README)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from soak.run import FULL, QUICK, Options, soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few hundred deposits and a few kills (< 2 min)")
    parser.add_argument("--users", type=int, help="users (each: 5 deposits and 1 withdrawal)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, help="where process logs and Redis files go (default: a temp dir)")
    parser.add_argument(
        "--admin-dsn",
        default=os.environ.get("SOAK_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a Postgres DSN allowed to create and drop the soak's scratch database",
    )
    args = parser.parse_args(argv)
    preset = dict(QUICK if args.quick else FULL)
    if args.users:
        preset["users"] = args.users
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="payments-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    options = Options(**preset, seed=args.seed, workdir=workdir, admin_dsn=args.admin_dsn)
    return asyncio.run(soak(options))


if __name__ == "__main__":
    sys.exit(main())
