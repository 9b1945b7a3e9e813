"""Sample-quality evaluation of MaskGIT-Shortcut: FID and class accuracy in a feature classifier's space.

  python -m migm_jax.eval --out results.json --plot pareto.png

`fid` holds the streaming statistics and the Frechet distance, `harness` runs the comparison of
vanilla / fewer_steps / reuse / shortcut sampling, `plot` draws the quality-cost Pareto plot.
"""
