import hashlib
import json
import shutil
import socket

import pytest
import torch

from evaluator import weights
from evaluator.cli import main
from evaluator.metrics.networks import load_clip, load_inception, load_lpips
from evaluator.weights import WeightsError, check_weights, weights_fingerprint, write_manifest


def test_make_test_writes_layout(stand_in_weights, tiny_config):
    manifest = json.loads((stand_in_weights / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(weights.required_files(tiny_config))
    for name, entry in manifest["files"].items():
        assert (stand_in_weights / name).stat().st_size == entry["size"]
        assert entry["source"] == "stand-in (random initialisation, seed 0)"


def test_fingerprint_hashes_manifest(stand_in_weights):
    files = json.loads((stand_in_weights / "manifest.json").read_text())["files"]
    lines = "".join(f"{name}:{files[name]['sha256']}\n" for name in sorted(files))
    fingerprint, verified = weights_fingerprint(stand_in_weights)
    assert fingerprint == hashlib.sha256(lines.encode()).hexdigest()
    assert verified is False


def test_fingerprint_verified_when_published(stand_in_weights, monkeypatch):
    files = json.loads((stand_in_weights / "manifest.json").read_text())["files"]
    monkeypatch.setattr(weights, "PUBLISHED_SHA256", {name: entry["sha256"] for name, entry in files.items()})
    assert weights_fingerprint(stand_in_weights)[1] is True


def test_fingerprint_from_environment(stand_in_weights, monkeypatch):
    monkeypatch.setenv("REFLADE_WEIGHTS", str(stand_in_weights))
    assert weights_fingerprint() == weights_fingerprint(stand_in_weights)


def test_missing_file_message(tmp_path, tiny_config):
    with pytest.raises(WeightsError) as raised:
        load_lpips(tmp_path, tiny_config)
    assert str(raised.value) == (
        f"weights file lpips/alexnet-owt-7be5be79.pth not found in {tmp_path}; run "
        f"`python -m evaluator weights fetch --dir {tmp_path}` on a machine with internet access, "
        "or point --weights or REFLADE_WEIGHTS at a folder that has it"
    )


def test_missing_manifest_message(tmp_path):
    with pytest.raises(WeightsError, match=r"manifest.json not found in .*; run `python -m evaluator weights fetch"):
        weights_fingerprint(tmp_path)


def test_loading_opens_no_connection(stand_in_weights, tiny_config, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert load_lpips(stand_in_weights, tiny_config) is not None
    assert load_clip(stand_in_weights, tiny_config).image_size == (32, 32)
    assert load_inception(stand_in_weights, tiny_config).dims == 64


def test_inception_stand_in_features_spread(stand_in_weights, tiny_config):
    torch.manual_seed(0)
    features = load_inception(stand_in_weights, tiny_config)(torch.rand(2, 3, 75, 75))
    assert features.shape == (2, 64)
    assert features.std() > 1e-3  # He initialisation keeps the features from collapsing


def small_folder(tmp_path, stand_in_weights, tiny_config):
    """A folder with only the (small) CLIP stand-in and its manifest."""
    name = weights.clip_file_name(tiny_config)
    (tmp_path / name).parent.mkdir(parents=True)
    shutil.copy(stand_in_weights / name, tmp_path / name)
    write_manifest(tmp_path, [name], {})
    return tmp_path, name


def test_check_detects_changed_file(tmp_path, stand_in_weights, tiny_config, capsys):
    folder, name = small_folder(tmp_path, stand_in_weights, tiny_config)
    assert main(["weights", "check", "--dir", str(folder)]) == 0
    data = bytearray((folder / name).read_bytes())
    data[-1] ^= 0xFF
    (folder / name).write_bytes(bytes(data))
    assert check_weights(folder)[0].matches_manifest is False
    assert main(["weights", "check", "--dir", str(folder)]) == 1
    assert "differs from the manifest" in capsys.readouterr().out


def test_check_prints_table(stand_in_weights, capsys):
    assert main(["weights", "check", "--dir", str(stand_in_weights)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["file", "size", "sha256", "verified"]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert rows["lpips/alexnet-owt-7be5be79.pth"][3] == "no"
    assert "(differs from the published checksum)" in lines[2] + lines[3]
    assert lines[-1].endswith("unverified weights")


def test_size_mismatch_rejected(tmp_path, stand_in_weights, tiny_config):
    folder, name = small_folder(tmp_path, stand_in_weights, tiny_config)
    with open(folder / name, "ab") as handle:
        handle.write(b"extra")
    with pytest.raises(WeightsError, match=f"weights file {name} in .* has .* bytes but the manifest records"):
        weights_fingerprint(folder)


def test_strict_loading_names_file(tmp_path, stand_in_weights, tiny_config):
    folder, name = small_folder(tmp_path, stand_in_weights, tiny_config)
    state = torch.load(folder / name, weights_only=True)
    state.pop("visual.proj")
    torch.save(state, folder / name)
    with pytest.raises(WeightsError, match=f"{folder / name} does not fit the CLIP model tiny-vit"):
        load_clip(folder, tiny_config)


def test_published_table_matches_file_names():
    for item in (weights.ALEXNET, weights.INCEPTION):
        suffix = item.path.rsplit("-", 1)[1].removesuffix(".pth")
        assert item.sha256.startswith(suffix)
