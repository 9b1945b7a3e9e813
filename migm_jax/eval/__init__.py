"""Sample-quality evaluation of MaskGIT-Shortcut: FID and class accuracy in a feature classifier's space.

  python -m migm_jax.eval --out results.json --plot pareto.png

`fid` holds the streaming statistics and the Frechet distance, `harness` runs the comparison of
vanilla / fewer_steps / reuse / shortcut sampling, `plot` draws the quality-cost Pareto plot.
`inception` gives the FID Inception-v3 features as pytorch-fid or torch-fidelity compute them (network in
`inception_net`, their preprocessing in `inception_preprocess`), `inception_score` the Inception Score.
"""
