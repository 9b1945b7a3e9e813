#!/usr/bin/env python
r"""Convert released PyTorch checkpoints into a weights directory for sample.py.

  python convert_weights.py maskgit --vit MaskGIT_ImageNet_512.pth --vqgan-dir VQGAN/ \
      --shortcut maskgit-shortcut.pth --out weights/maskgit
  python convert_weights.py dimoo --model-dir Lumina-DiMOO/ --shortcut dimoo-shortcut.pth --out weights/dimoo
"""

import argparse
import sys

from migm_jax.apps import dimoo, maskgit


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="family", required=True)
    m = sub.add_parser("maskgit", help="MaskGIT transformer + taming VQGAN [+ shortcut]")
    m.add_argument("--vit", required=True, help="MaskGIT_ImageNet_512.pth")
    m.add_argument("--vqgan-dir", required=True, help="folder with last.ckpt and model.yaml")
    m.add_argument("--shortcut", help="maskgit-shortcut.pth (optional)")
    m.add_argument("--heads", type=int, default=16, help="attention heads of the transformer (not stored in the file)")
    m.add_argument("--shortcut-heads", type=int, default=16, help="attention heads of the shortcut")
    m.add_argument("--out", required=True, help="output weights directory")
    d = sub.add_parser("dimoo", help="Lumina-DiMOO (LLaDA safetensors, tokenizer, vqvae/) [+ shortcut]")
    d.add_argument("--model-dir", required=True, help="Lumina-DiMOO folder: config.json, *.safetensors, tokenizer, vqvae/")
    d.add_argument("--shortcut", help="dimoo-shortcut.pth (optional)")
    d.add_argument("--trust-remote-code", action="store_true",
                   help="let the tokenizer run the Python code shipped in the folder (it is read for the token layout)")
    d.add_argument("--out", required=True, help="output weights directory")
    args = p.parse_args(argv)
    try:
        if args.family == "maskgit":
            maskgit.convert(args.vit, args.vqgan_dir, args.shortcut, args.out, args.heads, args.shortcut_heads)
        else:
            dimoo.convert(args.model_dir, args.shortcut, args.out, trust_remote_code=args.trust_remote_code)
    except (ImportError, OSError, ValueError) as e:  # CheckpointError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
