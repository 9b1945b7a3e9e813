"""The interactive gradio page: one tab per weights directory (a `Drawer`), vanilla sampling and an accelerated
sampler side by side with the same condition and noise, their sampling times and base-model steps, and the
unmasking of each first image step by step.

Requests run one at a time (one queue for every tab: the device serves one sampler at a time); the page
itself loads while a request runs. A field the models cannot take is a one-line message in the status box;
an unexpected failure is one line there too (its traceback goes to the server's log), and the server goes on.
"""

from __future__ import annotations

import re
import traceback
from typing import Any

import numpy as np

from migm_jax.apps.compare import MAX_BATCH, MODE_NOTES, Drawer, Request, Side, compare
from migm_jax.apps.strip import unmasking_strip
from migm_jax.images import make_grid
from migm_jax.weights import PROMPTS_FILE

CSS = (".pixels img { image-rendering: pixelated; width: 100% !important; height: 100% !important; "
       "object-fit: contain; }")  # small samples enlarged to the box, without blur
INTRO = """# migm-jax: vanilla against accelerated sampling
The same condition and the same noise, drawn by vanilla sampling (every one of the N steps runs the base model)
and by an accelerated sampler (**shortcut**: B of the N steps run the base model, the others the small shortcut
network; **reuse**: the others reuse the last feature; **fewer steps**: vanilla with B steps; **cache**: ML-Cache).
The first click with a new configuration (steps, budget, mode, batch, image size) includes compiling its
samplers, which can take much longer than sampling; the compiled samplers are kept, so the next click with the
same configuration only samples. Requests are served one at a time."""
LEGEND = ("Unmasking of the first image, one frame per step (gray: still masked). Bar under a frame: "
          "blue = the step ran the base model, orange = the shortcut (reuse: the last feature; cache: a partial "
          "recompute).")


def tab_key(drawer: Drawer) -> str:
    """The prefix of a tab's element ids: the weights directory's name, lower case, [a-z0-9-] only."""
    return re.sub(r"[^a-z0-9]+", "-", drawer.weights.rstrip("/").split("/")[-1].lower()).strip("-") or "model"


def tab_title(drawer: Drawer) -> str:
    return f"{tab_key(drawer)}: {drawer.task} ({drawer.family} family)"


def side_text(side: Side) -> str:
    """'**shortcut N=16 B=4**: 4 of 16 steps on the base model, sampling 0.212 s (compiling first: 6.3 s)'."""
    compiled = (f"compiling first: {side.compile_seconds:.1f} s" if side.compile_seconds is not None
                else "kept compiled sampler")
    return (f"**{side.name}**: {side.full_steps} of {len(side.kinds)} steps on the base model, "
            f"sampling {side.seconds:.3f} s ({compiled})")


def shown(images: np.ndarray) -> np.ndarray:
    """One image as it is; several in a row (2 px black gaps)."""
    return images[0] if len(images) == 1 else make_grid(images, nrow=len(images))


def respond(drawer: Drawer, request: Request, progress: Any = None) -> tuple:
    """The page's outputs for `request`: (vanilla image, its text, accelerated image, its text, vanilla strip,
    accelerated strip, status); on a bad field or a failure: no images, the status says why in one line."""
    note = (lambda text: progress(None, desc=text)) if progress is not None else (lambda text: None)
    try:
        vanilla, fast = compare(drawer, request, note)
    except (ValueError, OSError) as e:
        return None, "", None, "", None, None, f"**Error:** {e}"
    except Exception as e:  # noqa: BLE001  the page shows one line; the server log keeps the traceback
        traceback.print_exc()
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, "", None, "", None, None, f"**Error:** unexpected {type(e).__name__}: {first} (see the server log)"
    ratio = vanilla.seconds / fast.seconds if fast.seconds > 0 else float("inf")
    status = (f"{fast.name} sampled in {fast.seconds:.3f} s against {vanilla.seconds:.3f} s for {vanilla.name}: "
              f"speed-up {ratio:.2f}x (compile times not counted)")
    return (shown(vanilla.images), side_text(vanilla), shown(fast.images), side_text(fast),
            unmasking_strip(vanilla.images[0], vanilla.masked, vanilla.kinds),
            unmasking_strip(fast.images[0], fast.masked, fast.kinds), status)


def model_tab(gr, drawer: Drawer) -> None:
    """The tab of one Drawer: its fields, the generate button, the two columns and the strips."""
    key, d = tab_key(drawer), drawer.defaults
    text_to_image = drawer.task == "text to image"
    with gr.Row():
        if text_to_image:
            condition = gr.Textbox(d["condition"], label="prompt", elem_id=f"{key}-condition", scale=3,
                                   info=f"words the model knows: see {PROMPTS_FILE} of the weights")
        else:
            condition = gr.Dropdown(drawer.choices, value=d["condition"], label="class", allow_custom_value=True,
                                    elem_id=f"{key}-condition", scale=3, info="a class id or name")
        mode = gr.Radio(list(drawer.modes), value=drawer.modes[0], label="accelerated mode", elem_id=f"{key}-mode",
                        scale=3, info="; ".join(f"{m}: {MODE_NOTES[m]}" for m in drawer.modes))
    with gr.Row():
        steps = gr.Number(d["steps"], label="steps N", elem_id=f"{key}-steps")
        budget = gr.Number(d["budget"], label="budget B", elem_id=f"{key}-budget", info="base-model steps, 2..N")
        cfg = gr.Number(d["cfg"], label="cfg", elem_id=f"{key}-cfg", info="guidance weight")
        seed = gr.Number(1, label="seed", elem_id=f"{key}-seed")
        batch = gr.Number(1, label="batch", elem_id=f"{key}-batch", info=f"images, 1..{MAX_BATCH}")
        sizes = ([gr.Number(d["height"], label="height", elem_id=f"{key}-height"),
                  gr.Number(d["width"], label="width", elem_id=f"{key}-width")] if text_to_image else [])
    if text_to_image and drawer.examples:
        gr.Examples([[p] for p in drawer.examples], [condition], label="prompts the model was trained on")
    button = gr.Button("Generate", variant="primary", elem_id=f"{key}-generate")
    status = gr.Markdown("", elem_id=f"{key}-status")
    with gr.Row():
        with gr.Column():
            image_v = gr.Image(label="vanilla", format="png", interactive=False, elem_id=f"{key}-vanilla",
                               elem_classes="pixels", height=256)
            text_v = gr.Markdown("", elem_id=f"{key}-vanilla-time")
        with gr.Column():
            image_f = gr.Image(label="accelerated", format="png", interactive=False, elem_id=f"{key}-fast",
                               elem_classes="pixels", height=256)
            text_f = gr.Markdown("", elem_id=f"{key}-fast-time")
    gr.Markdown(LEGEND)
    strip_v = gr.Image(label="vanilla, step by step", format="png", interactive=False, elem_id=f"{key}-vanilla-strip",
                       elem_classes="pixels", height=150)
    strip_f = gr.Image(label="accelerated, step by step", format="png", interactive=False, elem_id=f"{key}-fast-strip",
                       elem_classes="pixels", height=150)

    def run(*values, progress=gr.Progress()):
        return respond(drawer, Request(*values), progress)

    button.click(run, [condition, steps, budget, mode, cfg, seed, batch, *sizes],
                 [image_v, text_v, image_f, text_f, strip_v, strip_f, status],
                 api_name=f"{key}_generate", concurrency_limit=1, concurrency_id="device")


def build_page(drawers: list[Drawer]):
    """The gradio Blocks of the page, a tab per drawer (queue it with `serve`)."""
    import gradio as gr

    with gr.Blocks(title="migm-jax: vanilla against shortcut") as page:
        gr.Markdown(INTRO)
        with gr.Tabs():
            for drawer in drawers:
                with gr.Tab(tab_title(drawer), elem_id=f"{tab_key(drawer)}-tab"):
                    model_tab(gr, drawer)
    return page


def serve(page, host: str, port: int) -> None:
    """Runs `page` at http://host:port with one queue worker per concurrency group, prints the URL, and blocks
    until Ctrl-C. OSError (one line) when the port cannot be had."""
    page.queue(default_concurrency_limit=1)
    _, url, _ = page.launch(server_name=host, server_port=port, prevent_thread_lock=True, css=CSS, ssr_mode=False,
                            quiet=True, show_error=False)
    print(f"the page is at {url} (Ctrl-C stops the server)", flush=True)
    page.block_thread()
