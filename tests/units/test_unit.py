"""Unit names (yfpo_core.units.unit): TransformerLens hook names as identifiers, and every typed form."""

from __future__ import annotations

import pytest

from yfpo_core.units.unit import Unit, block_of, layer_of, mlp_post_hook


def test_a_neuron_is_its_hook_and_index():
    unit = Unit.neuron(20, 1234)
    assert unit == Unit("neuron", "blocks.20.mlp.hook_post", 1234) and mlp_post_hook(20) == unit.hook_name
    assert (unit.layer, unit.label, unit.short_label) == (20, "blocks.20.mlp.hook_post:1234", "L20N1234")
    feature = Unit("sae_feature", "blocks.15.hook_resid_post", 77, sae_id="res15")
    assert (feature.layer, feature.label, feature.short_label) == (15, "sae:res15:77", "L15F77")


@pytest.mark.parametrize("text, expected", [
    ("blocks.20.mlp.hook_post:1234", Unit.neuron(20, 1234)),
    ("L20N1234", Unit.neuron(20, 1234)),
    (" 20:1234 ", Unit.neuron(20, 1234)),
    ("blocks.3.hook_resid_post/5", Unit("neuron", "blocks.3.hook_resid_post", 5)),
    ("sae:res15:77", Unit("sae_feature", "", 77, sae_id="res15")),  # the hook comes from the SAE when loaded
])
def test_parse_reads_every_documented_form(text, expected):
    assert Unit.parse(text) == expected


@pytest.mark.parametrize("text", ["L20", "neuron 5", "blocks.x.mlp.hook_post:1", "sae:res:-1", "L1N-2", ""])
def test_parse_refuses_other_text_and_says_what_to_write(text):
    with pytest.raises(ValueError, match="write blocks.<layer>.mlp.hook_post:<index>, L<layer>N<index>"):
        Unit.parse(text)


def test_construction_checks():
    with pytest.raises(ValueError, match="unknown unit kind"):
        Unit("head", "blocks.0.attn.hook_z", 1)
    with pytest.raises(ValueError, match="index must be >= 0"):
        Unit.neuron(0, -1)
    with pytest.raises(ValueError, match="needs its sae_id"):
        Unit("sae_feature", "blocks.0.hook_resid_post", 1)
    with pytest.raises(ValueError, match="does not start with blocks"):
        layer_of("hook_embed")
    assert sorted([Unit.neuron(1, 2), Unit.neuron(0, 9), Unit.neuron(1, 0)]) == [
        Unit.neuron(0, 9), Unit.neuron(1, 0), Unit.neuron(1, 2)]  # ordered by hook, then index


def test_block_of_names_the_block_or_none_outside_the_blocks():
    assert block_of("blocks.7.mlp.hook_post") == 7 and block_of("blocks.12.hook_resid_pre") == 12
    assert block_of("hook_embed") is None and block_of("ln_final.hook_normalized") is None
