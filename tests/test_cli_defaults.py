"""Every CLI default that a config dataclass holds is read from that dataclass (never written
twice), and its help text shows that value."""

import argparse

import pytest

from stablesam.cli import build_parser
from stablesam.commands.common import field_default, shown


def commands() -> dict:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def config_actions():
    for command, parser in commands().items():
        for action in parser._actions:
            if getattr(action, "config_source", None):
                yield command, action


def test_every_config_default_is_its_dataclass_field():
    found = list(config_actions())
    assert len(found) >= 20
    for command, action in found:
        source, name, to_cli = action.config_source
        assert action.default == to_cli(field_default(source, name)), (command, action.option_strings)


# The defaults that used to be copied by hand into the command line: each now comes from a field.
FROM_DATACLASSES = {
    ("train", "--batch-size"): 8, ("train", "--checkpoint-every"): 50,
    ("train", "--near-gt"): 0.1, ("train", "--val-samples"): 5,
    ("eval", "--samples"): 20, ("eval", "--adv-budget"): 48, ("eval", "--max-clicks"): 20,
    ("eval", "--iou-thresholds"): "0.85,0.9",
    ("export-onnx", "--opset"): 17, ("export-onnx", "--verify-prompts"): 20,
    ("demo", "--max-bytes"): 20_000_000, ("demo", "--max-images"): 8, ("demo", "--max-pixels"): 25_000_000,
    ("label-studio", "--max-bytes"): 20_000_000, ("label-studio", "--max-images"): 8,
    ("segment", "--min-area"): 0,
}


@pytest.mark.parametrize("command,flag", list(FROM_DATACLASSES))
def test_copied_defaults_now_come_from_a_dataclass(command, flag):
    action = next(a for a in commands()[command]._actions if flag in a.option_strings)
    assert getattr(action, "config_source", None), f"{command} {flag} does not read its default from a dataclass"
    assert action.default == FROM_DATACLASSES[command, flag]


def test_help_shows_the_default_as_written():
    assert shown(1e-3) == "1e-3" and shown(3e-4) == "3e-4" and shown(8) == "8" and shown(0.85) == "0.85"
    train = " ".join(commands()["train"].format_help().split())
    assert "(default 8)" in train
    # --lr depends on --tune: the leave-one-dataset-out winners
    assert "(default: 1e-4 with --tune plugins, 3e-6 with --tune decoder, 3e-6 with --tune prompt+decoder)" in train
    from stablesam.training.rts import RtsMixture

    assert RtsMixture().text() == ("gt-box=0.1,noisy-box=0.6,adv-box=0,points=0.2,box+points=0.1,part-clicks=0.5,"
                                   "interactive=0.15,interactive-clicks=4")
    assert RtsMixture.parse(RtsMixture().text()) == RtsMixture()
