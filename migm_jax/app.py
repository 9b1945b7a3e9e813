r"""The interactive page: vanilla against accelerated sampling side by side, in the browser (gradio).

  python -m migm_jax.app                          # the embedded demos (a tab each) at http://127.0.0.1:7860
  python -m migm_jax.app --weights W --port 8000  # one weights directory (either family)
  python -m migm_jax.app --host 0.0.0.0           # reachable from other machines

Needs the optional extra: pip install -e ".[app]". The page logic lives in migm_jax.apps.page.
"""

import argparse
import os
import sys

from migm_jax.assets import DEMO_EMOJI, DEMO_MASKGIT


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m migm_jax.app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    p.add_argument("--weights", help="a weights directory (convert_weights.py or train.py --export) to draw from; "
                                     "default: the embedded demos, text to image (emoji) and class to image")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="compute dtype (auto: bfloat16 on GPU/TPU, float32 on CPU)")
    p.add_argument("--attention", default="auto", choices=["auto", "cudnn", "xla", "exact"],
                   help="attention kernel (auto: cudnn on GPU in bfloat16, exact elsewhere)")
    args = p.parse_args(argv)
    if not 1 <= args.port <= 65535:
        p.error(f"--port must be in 1..65535, got {args.port}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the page never calls home
    try:
        try:
            import gradio
        except ImportError:
            gradio = None
        if not hasattr(gradio, "Blocks"):  # not installed (or a stray folder named gradio in the current directory)
            raise ImportError("the page needs gradio: pip install -e '.[app]'")
        import jax

        from migm_jax.apps.drawers import open_drawer
        from migm_jax.apps.page import build_page, serve
        from migm_jax.models.layers import numerics_for

        dtype, attention = numerics_for(args.dtype, args.attention, jax.default_backend())
        weights = [args.weights] if args.weights else [w for w in (DEMO_EMOJI, DEMO_MASKGIT) if os.path.isdir(w)]
        drawers = []
        for w in weights:
            print(f"loading {w}", flush=True)
            drawers.append(open_drawer(w, dtype, attention))
        serve(build_page(drawers), args.host, args.port)
    except (ValueError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
