"""The page's logic without a browser (no gradio needed): the unmasking strip, and the fields of a request
checked in one line before anything is compiled, on the embedded class-conditional demo (its class names and
count read from its config)."""

import numpy as np
import pytest

from migm_jax.apps import rows
from migm_jax.apps.compare import Request, compare, guidance, whole_number
from migm_jax.apps.strip import CHEAP_COLOR, FULL_COLOR, MASKED_GRAY, unmasking_strip
from migm_jax.assets import DEMO_MASKGIT
from migm_jax.sampling.schedules import CHEAP, FULL
from migm_jax.weights import read_config


def test_strip_shows_the_fixed_cells_of_each_step_over_the_step_kind():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) + 1  # 2x3 cells of 2x2 pixels, no gray, no white
    masked = np.array([[1, 1, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0]], bool)  # cell (0, 2) first, then all
    strip = unmasking_strip(image, masked, np.array([FULL, CHEAP]), bar=1, gap=1)
    assert strip.shape == (1 + 4 + 1 + 1, 1 + 2 * (6 + 1), 3)
    first, second = strip[1:5, 1:7], strip[1:5, 8:14]
    assert (first[:2, 4:] == image[:2, 4:]).all() and (first[:, :4] == MASKED_GRAY).all() and (first[2:] == MASKED_GRAY).all()
    assert (second == image).all()
    assert (strip[5, 1:7] == FULL_COLOR).all() and (strip[5, 8:14] == CHEAP_COLOR).all()
    with pytest.raises(ValueError, match="a trace of 5 cells does not tile a 4x6 image"):
        unmasking_strip(image, masked[:, :5], np.array([FULL, CHEAP]))


@pytest.mark.parametrize("value,ok", [(4, 4), (4.0, 4), ("7", 7), (4.5, None), ("x", None), (None, None), (1, None)])
def test_whole_numbers_and_guidance(value, ok):
    if ok is None:
        with pytest.raises(ValueError, match=r"steps N must be a whole number >= 2, got"):
            whole_number(value, "steps N", 2)
    else:
        assert whole_number(value, "steps N", 2) == ok
    assert guidance("2.5") == 2.5
    with pytest.raises(ValueError, match="cfg must be a number >= 0"):
        guidance(float("nan"))


@pytest.fixture(scope="module")
def drawer():
    from migm_jax.apps.drawers import open_drawer

    return open_drawer(DEMO_MASKGIT, "float32", None)


def test_class_field_takes_an_id_a_name_or_a_choice(drawer):
    configs = read_config(DEMO_MASKGIT)[1]
    last = configs["transformer"]["nclass"] - 1
    assert drawer.label(str(last)) == last and drawer.label(f" {last} ") == last
    names = configs.get("classes", {}).get("names")
    if names:
        assert drawer.label(names[last]) == last
        assert drawer.label(f"{last} {names[last]}") == last and drawer.choices[last] == f"{last} {names[last]}"


@pytest.mark.parametrize("change,message", [
    ({"condition": "2.5"}, "class '2.5' is neither a whole-number class id"),
    ({"condition": "no such class"}, "class 'no such class' is neither a whole-number class id"),
    ({"condition": " "}, "the class is empty"),
    ({"condition": "-1"}, "label -1 is outside"),
    ({"budget": 9}, "budget B (base-model steps of the N = 8) must be a whole number in 2..8, got 9"),
    ({"steps": 1}, "steps N must be a whole number >= 2, got 1"),
    ({"mode": "cache"}, "mode must be one of"),
    ({"batch": 0}, "batch must be a whole number in 1..16, got 0"),
    ({"seed": 2**32}, "seed must be a whole number in 0..4294967295"),
    ({"cfg": -1}, "cfg must be a number >= 0"),
])
def test_bad_fields_are_one_line_before_anything_compiles(drawer, monkeypatch, change, message):
    def refuse(*args, **kwargs):
        raise AssertionError("compiled")

    monkeypatch.setattr(rows, "compile_sampler", refuse)
    fields = dict(condition="0", steps=8, budget=4, mode=drawer.modes[0], cfg=1.0, seed=1, batch=1)
    with pytest.raises(ValueError) as e:
        compare(drawer, Request(**{**fields, **change}))
    assert message in str(e.value) and "\n" not in str(e.value)
