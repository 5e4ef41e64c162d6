"""--cache that cannot be a folder is a one-line error; one that cannot be written is read only,
with one warning: its good entries are used, damaged ones recomputed in memory, nothing written."""

import json
import os
import warnings

import numpy as np
import pytest
import torch

from conftest import build_small_sam
from stablesam.models.cache import CacheWarning, EmbeddingCache
from stablesam.cli import main
from helpers import make_folder
from helpers import leftovers, one_line_error, unwritable_folder

IMAGE = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)


def eval_args(data, cache, out):
    return ["eval", "--data", str(data), "--model", "tiny-sam", "--prompts", "gt-box", "--samples", "1",
            "--cache", str(cache), "--out", str(out)]


def test_a_cache_path_that_cannot_be_a_folder_is_a_one_line_error(tmp_path, capsys, fake_embedded):
    data = make_folder(tmp_path / "toy", n=2)
    (tmp_path / "file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    cases = [("file", "is a file, not a folder"), ("dangling", "which does not exist"),
             ("loop1", "symbolic link loop"), ("file/below", "is a file, not a folder")]
    for name, message in cases:
        assert main(eval_args(data, tmp_path / name, tmp_path / "ev")) == 2
        one_line_error(2, capsys.readouterr().err, "--cache", message)
    assert main(["train", "--data", str(data), "--model", "tiny-sam", "--steps", "1",
                 "--cache", str(tmp_path / "loop1"), "--out", str(tmp_path / "run")]) == 2
    one_line_error(2, capsys.readouterr().err, "--cache", "symbolic link loop")
    assert not (tmp_path / "ev").exists() and not (tmp_path / "run").exists() and not (tmp_path / "missing").exists()


@pytest.mark.parametrize("kind", ["proc", "read-only"])
def test_an_unwritable_cache_is_read_only_with_one_warning(tmp_path, capsys, fake_embedded, kind):
    cache = unwritable_folder(tmp_path, kind)
    data = make_folder(tmp_path / "toy", n=2)
    with pytest.warns(CacheWarning, match="new embeddings are kept in memory only") as caught:
        assert main(eval_args(data, cache, tmp_path / "ev")) == 0
    assert len([w for w in caught if w.category is CacheWarning]) == 1
    assert "encoder runs: 2" in capsys.readouterr().out
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["rows"]


def test_a_read_only_cache_reads_good_entries_and_keeps_damaged_ones(tmp_path):
    sam = build_small_sam()
    first = EmbeddingCache(tmp_path).get(sam, IMAGE)
    (entry,) = tmp_path.rglob("*.pt")
    cache = EmbeddingCache(tmp_path, read_only=True)
    assert torch.equal(cache.get(sam, IMAGE).features, first.features) and cache.encoder_calls == 0
    entry.write_bytes(b"damaged")
    other = IMAGE[::-1].copy()
    cache = EmbeddingCache(tmp_path, read_only=True)
    assert torch.equal(cache.get(sam, IMAGE).features, first.features) and cache.encoder_calls == 1
    cache.get(sam, other)
    assert cache.encoder_calls == 2
    assert entry.read_bytes() == b"damaged" and len(list(tmp_path.rglob("*.pt"))) == 1  # nothing deleted or added


def test_a_cache_that_fails_a_write_goes_on_in_memory_with_one_warning(tmp_path):
    sam = build_small_sam()
    cache = EmbeddingCache(tmp_path)
    (tmp_path / cache.key(sam, IMAGE)[:2]).write_text("a file where an entry folder goes")
    with pytest.warns(CacheWarning, match="cannot write"):
        cache.get(sam, IMAGE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.get(sam, IMAGE[::-1].copy())  # no second warning
    assert cache.read_only and cache.encoder_calls == 2 and not leftovers(tmp_path)


def test_a_read_only_cache_folder_with_damaged_entries(tmp_path, capsys, fake_embedded):
    data = make_folder(tmp_path / "toy", n=2)
    cache = tmp_path / "cache"
    assert main(eval_args(data, cache, tmp_path / "ev")) == 0
    entries = sorted(cache.rglob("*.pt"))
    entries[0].write_bytes(b"damaged")
    for folder in [cache, *{e.parent for e in entries}]:
        folder.chmod(0o555)
    try:
        if os.geteuid() == 0 or os.access(cache, os.W_OK):
            pytest.skip("chmod does not stop this user from writing (root): the entries are tested above")
        with pytest.warns(CacheWarning):
            assert main(eval_args(data, cache, tmp_path / "ev2")) == 0
        assert "encoder runs: 1" in capsys.readouterr().out
        assert entries[0].read_bytes() == b"damaged"
    finally:
        for folder in [cache, *{e.parent for e in entries}]:
            folder.chmod(0o755)
