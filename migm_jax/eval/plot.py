"""The quality-cost Pareto plots of an evaluation (`harness.evaluate` or `fid_eval.evaluate_fid` output) as a PNG."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from migm_jax.eval.stats import summary
from migm_jax.files import write_files_atomically

BUDGET_MODES = {"fewer_steps": "o", "reuse": "s", "ml_cache": "D", "shortcut": "^"}  # mode -> marker; vanilla a star
QUALITY = {"fid": "FID", "accuracy": "accuracy"}  # the rows' quality metrics -> axis label
COST = {"budget": "full (base-model) steps", "seconds_per_image_mean": "measured seconds per image"}


def pareto_plot(results: dict, path: str) -> None:
    """One row of panels per quality metric the rows hold (FID; accuracy, of classes or prompts), against
    full (base-model) steps (left) and measured seconds per image (right); one line per mode (vanilla N as a
    star), error bars = std over seeds; dashed line: the real-vs-real FID floor, the real images' accuracy (when
    the results have them)."""
    rows = summary(results["results"])
    metrics = [m for m in QUALITY if f"{m}_mean" in rows[0]]
    reference = results.get("reference", {})
    floors = {"fid": ("fid_train_vs_test", "real train vs test"), "accuracy": ("accuracy_real", "real images")}
    fig = Figure(figsize=(11, 4 * len(metrics) + 0.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(metrics), 2, sharey="row", squeeze=False)
    for metric, panels in zip(metrics, axes):
        for ax, (x_name, x_label) in zip(panels, COST.items()):
            for mode, marker in BUDGET_MODES.items():
                line = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["budget"])
                if line:
                    ax.errorbar([r[x_name] for r in line], [r[f"{metric}_mean"] for r in line],
                                [r[f"{metric}_std"] for r in line], marker=marker, capsize=3, label=mode)
            for r in (r for r in rows if r["mode"] == "vanilla"):
                ax.errorbar([r[x_name]], [r[f"{metric}_mean"]], [r[f"{metric}_std"]], marker="*", markersize=14,
                            color="black", linestyle="none", capsize=3, label=f"vanilla N={r['steps']}")
            key, label = floors.get(metric, (None, None))
            if key in reference:
                ax.axhline(reference[key], color="gray", linestyle="--", label=label)
            ax.set_xlabel(x_label)
            ax.grid(alpha=0.3)
        panels[0].xaxis.set_major_locator(MaxNLocator(integer=True))
        features = results["settings"].get("features", "classifier features")
        panels[0].set_ylabel(f"FID ({features})" if metric == "fid" else QUALITY[metric])
    axes[0][0].legend()
    settings = results["settings"]
    fig.suptitle(f"{settings['device']}: {settings['num_samples']} samples per configuration, "
                 f"{settings['seeds']} seed(s), batch {settings['batch_size']}")
    fig.tight_layout()
    write_files_atomically([(path, lambda f: fig.savefig(f, format="png", dpi=120))])
