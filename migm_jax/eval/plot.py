"""The quality-cost Pareto plot of an evaluation (`harness.evaluate` or `fid_eval.evaluate_fid` output) as a PNG."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from migm_jax.eval.harness import summary
from migm_jax.files import write_files_atomically

BUDGET_MODES = {"fewer_steps": "o", "reuse": "s", "shortcut": "^"}  # mode -> marker; vanilla is a star


def pareto_plot(results: dict, path: str) -> None:
    """Two panels: FID vs full (base-model) steps, FID vs measured seconds per image; one line per mode
    (vanilla N as a star), error bars = std over seeds, dashed line = real train-vs-test FID (when the results
    have one)."""
    rows = summary(results["results"])
    fig = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, x_name, x_label in ((axes[0], "budget", "full (base-model) steps"),
                                (axes[1], "seconds_per_image_mean", "measured seconds per image")):
        for mode, marker in BUDGET_MODES.items():
            line = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["budget"])
            if line:
                ax.errorbar([r[x_name] for r in line], [r["fid_mean"] for r in line], [r["fid_std"] for r in line],
                            marker=marker, capsize=3, label=mode)
        for r in (r for r in rows if r["mode"] == "vanilla"):
            ax.errorbar([r[x_name]], [r["fid_mean"]], [r["fid_std"]], marker="*", markersize=14, color="black",
                        linestyle="none", capsize=3, label=f"vanilla N={r['steps']}")
        if "fid_train_vs_test" in results.get("reference", {}):
            ax.axhline(results["reference"]["fid_train_vs_test"], color="gray", linestyle="--",
                       label="real train vs test")
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    settings = results["settings"]
    axes[0].set_ylabel(f"FID ({settings.get('features', 'classifier features')})")
    axes[0].legend()
    fig.suptitle(f"{settings['device']}: {settings['num_samples']} samples per configuration, "
                 f"{settings['seeds']} seed(s)")
    fig.tight_layout()
    write_files_atomically([(path, lambda f: fig.savefig(f, format="png", dpi=120))])
