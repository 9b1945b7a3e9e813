"""python -m migm_jax.eval [ref-stats | fid] ...: without a subcommand, the quality harness of MaskGIT or DiMOO
weights judged by a feature classifier (`cli`); `ref-stats` and `fid` are the Inception-v3 FID of real weights
(`cli_inception`). Ctrl-C stops any of them at once (exit status 130); the same command continues the run."""

from __future__ import annotations

import sys

from tqdm import tqdm

from migm_jax.apps.rows import interruptible
from migm_jax.eval import cli, cli_inception
from migm_jax.launch import INTERRUPTED, error_line, initialize, leave, leave_at_once

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
        interruptible(run, args)  # Ctrl-C ends the run at once, not after the batch in progress
    except (ValueError, OSError) as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        for bar in list(tqdm._instances):  # the abandoned run's progress bars: ended on their own lines
            bar.close()
        print("interrupted: stopped; the same command continues from the last saved batch", file=sys.stderr)
        return INTERRUPTED
    return 0


if __name__ == "__main__":
    code = main()
    (leave_at_once if code == INTERRUPTED else leave)(code)
