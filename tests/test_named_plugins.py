"""The embedded plugins by name: each `tiny-stable-sam[-NAME]` SPEC loads its own checksum-verified
plugin on the embedded base, `stablesam info` and the SPEC help say when to use which, and the
default SPEC stays `tiny-stable-sam`."""

import hashlib

import numpy as np
import pytest

from stablesam.cli import main
from stablesam.models.embedded import (EMBEDDED, NAMED_PLUGINS, PLUGIN_FILE, WEIGHTS_DIR, embedded_available,
                                       plugin_path, recorded_checksums)
from stablesam.models.spec import ACCEPTED, DEFAULT_SPEC, SpecError, build_model, parse_model_spec

pytestmark = pytest.mark.skipif(not embedded_available(), reason="the embedded model is not shipped")


def test_every_named_plugin_is_shipped_with_its_checksum_and_listed():
    assert list(NAMED_PLUGINS)[0] == DEFAULT_SPEC == "tiny-stable-sam"
    assert plugin_path(DEFAULT_SPEC) == PLUGIN_FILE and plugin_path("tiny-sam") is None
    assert EMBEDDED == ("tiny-sam", *NAMED_PLUGINS)
    sums = recorded_checksums()
    for head, (name, use) in NAMED_PLUGINS.items():
        path = WEIGHTS_DIR / name
        assert path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sums[name]
        assert use and (head == DEFAULT_SPEC or head in ACCEPTED)  # the SPEC help says when to use it
    assert len({name for name, _ in NAMED_PLUGINS.values()}) == len(NAMED_PLUGINS)


def test_info_lists_each_embedded_plugin_with_its_use(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for head, (name, use) in NAMED_PLUGINS.items():
        assert f"{head}" in out and use in out and name in out


@pytest.mark.parametrize("head", list(NAMED_PLUGINS))
def test_each_named_spec_loads_its_own_plugin(head):
    from stablesam.models.files import read_plugin

    model = build_model(parse_model_spec(head), "cpu")
    recorded = read_plugin(WEIGHTS_DIR / NAMED_PLUGINS[head][0])
    assert model.plugins_enabled and model.config == recorded["config"]
    state = model.plugin_state_dict()
    assert all(np.array_equal(state[k].numpy(), v.numpy()) for k, v in recorded["state_dict"].items())
    with pytest.raises(SpecError, match="already has its plugin"):
        parse_model_spec(f"{head}+plugin={PLUGIN_FILE}")
