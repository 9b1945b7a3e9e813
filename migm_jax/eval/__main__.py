"""python -m migm_jax.eval [ref-stats | fid] ...: without a subcommand, the quality harness of MaskGIT or DiMOO
weights judged by a feature classifier (`cli`); `ref-stats` and `fid` are the Inception-v3 FID of real weights
(`cli_inception`)."""

from __future__ import annotations

import sys

from migm_jax.eval import cli, cli_inception

SUBCOMMANDS = {"ref-stats": cli_inception.run_ref_stats, "fid": cli_inception.run_fid}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        args = cli_inception.parse_args(argv)
        run = SUBCOMMANDS[argv[0]]
    else:
        args, run = cli.parse_args(argv), cli.run
    try:
        run(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
