"""python -m migm_jax.eval [ref-stats | fid] ...: without a subcommand, the quality harness of MaskGIT or DiMOO
weights judged by a feature classifier (`cli`); `ref-stats` and `fid` are the Inception-v3 FID of real weights
(`cli_inception`)."""

from __future__ import annotations

import sys

from migm_jax.eval import cli, cli_inception
from migm_jax.launch import error_line, initialize, leave

SUBCOMMANDS = {"ref-stats": cli_inception.run_ref_stats, "fid": cli_inception.run_fid}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    fid_command = bool(argv) and argv[0] in SUBCOMMANDS  # these run on several processes too (launch settings)
    if fid_command:
        args = cli_inception.parse_args(argv)
        run = SUBCOMMANDS[argv[0]]
    else:
        args, run = cli.parse_args(argv), cli.run
    try:
        if fid_command:
            initialize(args)
        run(args)
    except (ValueError, OSError) as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    leave(main())
