"""Sample-quality evaluation of MaskGIT-Shortcut: FID and class accuracy in a feature classifier's space (the
demo), FID and Inception Score with the FID Inception-v3 (real weights).

  python -m migm_jax.eval --out results.json --plot pareto.png
  python -m migm_jax.eval ref-stats --images DIR --inception FILE --out ref.npz
  python -m migm_jax.eval fid --weights W --inception FILE --ref-stats ref.npz --steps 32 --budgets 8 9 12 --out r.json

`fid` holds the streaming statistics and the Frechet distance, `harness` the demo's comparison of
vanilla / fewer_steps / reuse / shortcut sampling and `fid_eval` the Inception one, both running `loop`'s
per-configuration loop: `features` are the two feature spaces, `batch_stats` reduces a batch to moments on
the devices, `journal` makes the Inception run resumable, `refstats` reads and computes reference statistics.
`plot` draws the quality-cost Pareto plot. `inception` gives the FID Inception-v3 features as pytorch-fid or
torch-fidelity compute them (network in `inception_net`, their preprocessing in `inception_preprocess`),
`inception_score` the Inception Score. The command line: `cli_demo`, `cli_inception`, `cli_common`.
"""
