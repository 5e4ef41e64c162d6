import re
import subprocess
import sys

from stablesam.cli import main


def test_info_reports_versions_models_and_plugin_size(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    n = int(re.search(r"plugin parameters \(256-d decoder\): ([\d,]+)", out).group(1).replace(",", ""))
    from stablesam import PluginConfig, StableSam
    from stablesam.models.embedded import load_embedded_sam

    assert n == StableSam(load_embedded_sam()[0], PluginConfig()).num_plugin_parameters() == 50_596
    for needle in ("torch", "segment-anything", "vit_b:PATH", "vit_h:PATH", "tiny-stable-sam", "embedded weights"):
        assert needle in out


def test_help_and_console_entry(capsys):
    assert main([]) == 2
    assert "info" in capsys.readouterr().out
    out = subprocess.run([sys.executable, "-m", "stablesam", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("info", "eval", "train"):
        assert command in out.stdout
