"""Sample-quality evaluation of MIGM-Shortcut: FID, accuracy and fidelity to vanilla in a feature classifier's
space for both model families (the demos), FID and Inception Score with the FID Inception-v3 (real weights).

  python -m migm_jax.eval --out results.json --plot pareto.png
  python -m migm_jax.eval ref-stats --images DIR --inception FILE --out ref.npz
  python -m migm_jax.eval fid --weights W --inception FILE --ref-stats ref.npz --steps 32 --budgets 8 9 12 --out r.json

One role per module: `plan` is what a run is (the configurations compared at each budget, samples and
batches); `families` what the weights' family decides (sampler, conditions, real images, decoder); `run` the
run loop and its journal (resumable results); `stats` the statistics (feature moments on the devices, FID,
fidelity, mean and spread over seeds); `features` the metric networks (the classifier of
`migm_jax.models.classifier`, and the FID Inception-v3: network in `inception_net`, weights in `inception`,
preprocessing in `inception_preprocess`, score in `inception_score`); `refstats` the reference statistics of
image folders. The evaluations: `harness` (classifier-judged, both families) and `fid_eval` (Inception FID,
MaskGIT); `plot` draws their Pareto plots; the command lines are `cli` and `cli_inception`.
"""
