import functools
import hashlib
import http.server
import json
import logging
import shutil
import socket
import threading
import types
import zipfile

import open_clip
import pytest
import torch

from evaluator import weights
from evaluator.cli import main
from evaluator.metrics.networks import build_clip, load_clip, load_inception, load_lpips
from evaluator.weights import (
    ALEXNET,
    INCEPTION,
    WeightsError,
    check_weights,
    weights_fingerprint,
    write_manifest,
)


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


def linked_folder(tmp_path, stand_in_weights, tiny_config):
    """A complete test-tiny folder: a copy of the CLIP stand-in and the manifest, links to the rest.

    The large AlexNet and Inception stand-ins are symbolic links, so a test must not
    write to them.
    """
    folder = tmp_path / "linked"
    clip_name = weights.clip_file_name(tiny_config)
    for name in weights.required_files(tiny_config):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if name == clip_name:
            shutil.copy(stand_in_weights / name, folder / name)
        else:
            (folder / name).symlink_to(stand_in_weights / name)
    shutil.copy(stand_in_weights / "manifest.json", folder / "manifest.json")
    return folder


def test_check_detects_changed_file(tmp_path, stand_in_weights, tiny_config, capsys):
    folder = linked_folder(tmp_path, stand_in_weights, tiny_config)
    name = weights.clip_file_name(tiny_config)
    assert main(["weights", "check", "--dir", str(folder), "--config", "test-tiny"]) == 0
    data = bytearray((folder / name).read_bytes())
    data[-1] ^= 0xFF
    (folder / name).write_bytes(bytes(data))
    assert check_weights(folder)[0].matches_manifest is False
    assert main(["weights", "check", "--dir", str(folder), "--config", "test-tiny"]) == 1
    assert "differs from the manifest" in capsys.readouterr().out


def test_check_prints_table(stand_in_weights, capsys):
    assert main(["weights", "check", "--dir", str(stand_in_weights), "--config", "test-tiny"]) == 0
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


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving the files of tmp_path/served."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def publish(monkeypatch, served, url, contents: dict[str, bytes], wrong: str | None = None):
    """Serve small files and point the published table at them."""
    items = {}
    for name, data in contents.items():
        file_name = name.replace("/", "_")
        (served / file_name).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest() if name != wrong else "0" * 64
        items[name] = weights.PublishedFile(path=name, url=f"{url}/{file_name}", sha256=digest)
    alexnet, clip, inception = items.values()
    monkeypatch.setattr(weights, "ALEXNET", alexnet)
    monkeypatch.setattr(weights, "INCEPTION", inception)
    monkeypatch.setattr(weights, "CLIP_FILES", {("ViT-L-14", "openai"): clip})
    monkeypatch.setattr(weights, "PUBLISHED_SHA256", {item.path: item.sha256 for item in items.values()})


CONTENTS = {
    "lpips/alexnet-owt-7be5be79.pth": b"alexnet bytes",
    "clip/ViT-L-14-openai.pt": b"clip bytes",
    "inception/pt_inception-2015-12-05-6726825d.pth": b"inception bytes",
}


def test_fetch_downloads_and_verifies(local_server, monkeypatch, tmp_path, capsys):
    served, url = local_server
    publish(monkeypatch, served, url, CONTENTS)
    target = tmp_path / "weights"
    assert main(["weights", "fetch", "--dir", str(target)]) == 0
    for name, data in CONTENTS.items():
        assert (target / name).read_bytes() == data
    assert weights_fingerprint(target)[1] is True
    assert capsys.readouterr().out.splitlines()[-1].endswith(": verified")


def test_fetch_rejects_wrong_checksum(local_server, monkeypatch, tmp_path, capsys):
    served, url = local_server
    publish(monkeypatch, served, url, CONTENTS, wrong="clip/ViT-L-14-openai.pt")
    target = tmp_path / "weights"
    assert main(["weights", "fetch", "--dir", str(target)]) == 1
    error = capsys.readouterr().err
    assert f"error: downloaded {url}/clip_ViT-L-14-openai.pt has SHA-256 " in error
    assert "expected " + "0" * 64 + "; the file was deleted, so retry" in error
    assert not (target / "clip/ViT-L-14-openai.pt").exists()
    assert not (target / "clip/ViT-L-14-openai.pt.part").exists()


def test_pickle_format_weights_load(tmp_path, stand_in_weights, tiny_config):
    # torch.save wrote the pickle format before torch 1.6, and such files cannot be memory-mapped.
    folder = tmp_path / "weights"
    shutil.copytree(stand_in_weights, folder)
    clip_name = weights.clip_file_name(tiny_config)
    for relative in (ALEXNET.path, INCEPTION.path, clip_name):
        state = torch.load(folder / relative, weights_only=True)
        if relative == ALEXNET.path:
            # The zip end-record signature inside the data must not make it look like a zip file.
            for key, value in state.items():
                raw = bytearray(value.numpy().tobytes())
                raw[-100:-78] = b"PK\x05\x06" + bytes(18)
                state[key] = torch.frombuffer(raw, dtype=torch.float32).reshape(value.shape).clone()
        torch.save(state, folder / relative, _use_new_zipfile_serialization=False)
        assert not (folder / relative).read_bytes().startswith(b"PK")
    assert zipfile.is_zipfile(folder / ALEXNET.path)
    images = torch.rand(2, 3, 64, 64)
    expected_alexnet = torch.load(folder / ALEXNET.path, weights_only=True)
    with torch.no_grad():
        loaded = load_lpips(folder, tiny_config)
        assert torch.equal(loaded.net.slice1[0].weight, expected_alexnet["features.0.weight"])
        assert torch.equal(load_inception(folder, tiny_config)(images), load_inception(stand_in_weights, tiny_config)(images))
        assert torch.equal(load_clip(folder, tiny_config)(images), load_clip(stand_in_weights, tiny_config)(images))


@pytest.mark.parametrize("damage", ["empty", "truncated"])
@pytest.mark.parametrize("loader", [load_lpips, load_inception, load_clip])
def test_unreadable_weights_message(tmp_path, stand_in_weights, tiny_config, loader, damage):
    folder = tmp_path / "weights"
    shutil.copytree(stand_in_weights, folder)
    name = {load_lpips: ALEXNET.path, load_inception: INCEPTION.path,
            load_clip: weights.clip_file_name(tiny_config)}[loader]
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    with pytest.raises(WeightsError) as raised:
        loader(folder, tiny_config)
    message = str(raised.value)
    assert message.startswith(f"weights file {folder / name} could not be read (")
    assert message.endswith(f"check the folder with `python -m evaluator weights check --dir {folder}` and "
                            f"replace the file with `python -m evaluator weights fetch --dir {folder}`")


def fetch_hint(folder, config_option=""):
    config = f" --config {config_option}" if config_option else ""
    return (f"Get it with `python -m evaluator weights fetch --dir {folder}{config}` on a machine with "
            "internet access.")


def stand_in_hint(folder):
    return ("`weights fetch` cannot get the files of this config, because its CLIP model has no published "
            f"download. Write stand-ins of every file with `python -m evaluator weights make-test --dir "
            f"{folder} --config test-tiny`, or copy the file in by hand and run `python -m evaluator "
            f"weights check --dir {folder} --config test-tiny --write-manifest`.")


def printed_lines(capsys, prefix):
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith(prefix)]


def test_check_missing_config_file_fails(stand_in_weights, capsys):
    # The test-tiny stand-ins lack the CLIP file that reflade-v1 scores with.
    assert main(["weights", "check", "--dir", str(stand_in_weights), "--config", "reflade-v1"]) == 1
    assert printed_lines(capsys, "missing: ") == [
        "missing: clip/ViT-L-14-openai.pt, which config reflade-v1 needs. "
        + fetch_hint(stand_in_weights, "reflade-v1"),
    ]


def test_check_missing_file_table_row(stand_in_weights, capsys):
    main(["weights", "check", "--dir", str(stand_in_weights), "--config", "reflade-v1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("clip/ViT-L-14")]
    assert len(rows) == 1
    assert rows[0].split()[1:4] == ["-", "-", "no"]
    assert rows[0].endswith("(missing; not in the manifest)")


def test_check_default_config_is_reflade(stand_in_weights, capsys):
    assert main(["weights", "check", "--dir", str(stand_in_weights)]) == 1
    assert printed_lines(capsys, "missing: ") == [
        "missing: clip/ViT-L-14-openai.pt, which config reflade-v1 needs. " + fetch_hint(stand_in_weights),
    ]


def test_check_complete_folder_passes(stand_in_weights, capsys):
    assert main(["weights", "check", "--dir", str(stand_in_weights), "--config", "test-tiny"]) == 0
    output = capsys.readouterr().out
    assert "missing" not in output
    assert output.splitlines()[-1].endswith(": unverified weights")


def test_check_empty_folder_lists_all(tmp_path, capsys):
    assert main(["weights", "check", "--dir", str(tmp_path), "--config", "reflade-v1"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"missing: {name}, which config reflade-v1 needs. " + fetch_hint(tmp_path, "reflade-v1")
        for name in ("clip/ViT-L-14-openai.pt", "inception/pt_inception-2015-12-05-6726825d.pth",
                     "lpips/alexnet-owt-7be5be79.pth")
    ]
    assert captured.err.startswith(f"error: manifest.json not found in {tmp_path}; run ")


def test_check_unpublished_file_hint(tmp_path, capsys):
    assert main(["weights", "check", "--dir", str(tmp_path), "--config", "test-tiny"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0] == ("missing: clip/tiny-vit-stand-in.pt, which config test-tiny needs. "
                        + stand_in_hint(tmp_path))


def test_check_deleted_listed_file(tmp_path, stand_in_weights, tiny_config, capsys):
    folder = linked_folder(tmp_path, stand_in_weights, tiny_config)
    (folder / INCEPTION.path).unlink()
    assert main(["weights", "check", "--dir", str(folder), "--config", "test-tiny"]) == 1
    output = capsys.readouterr().out
    assert "fingerprint" not in output
    assert [line for line in output.splitlines() if line.startswith("missing: ")] == [
        f"missing: {INCEPTION.path}, which config test-tiny needs. " + stand_in_hint(folder),
    ]


def test_check_unlisted_required_file(tmp_path, stand_in_weights, tiny_config, capsys):
    folder = linked_folder(tmp_path, stand_in_weights, tiny_config)
    write_manifest(folder, [ALEXNET.path, weights.clip_file_name(tiny_config)], {})
    assert main(["weights", "check", "--dir", str(folder), "--config", "test-tiny"]) == 1
    assert printed_lines(capsys, "not in manifest.json: ") == [
        f"not in manifest.json: {INCEPTION.path}, which config test-tiny needs. Record it with "
        f"`python -m evaluator weights check --dir {folder} --config test-tiny --write-manifest`.",
    ]


def test_check_stray_manifest_entry(tmp_path, stand_in_weights, tiny_config, capsys):
    folder = linked_folder(tmp_path, stand_in_weights, tiny_config)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["extra/old.pt"] = {"sha256": "0" * 64, "size": 1, "source": ""}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert main(["weights", "check", "--dir", str(folder), "--config", "test-tiny"]) == 1
    assert printed_lines(capsys, "missing: ") == [
        "missing: extra/old.pt, which manifest.json lists. Copy it back, or drop it from the manifest "
        f"with `python -m evaluator weights check --dir {folder} --config test-tiny --write-manifest`.",
    ]


def test_check_quotes_folder_with_space(tmp_path, capsys):
    folder = tmp_path / "my weights"
    folder.mkdir()
    main(["weights", "check", "--dir", str(folder)])
    assert capsys.readouterr().out.splitlines()[0].endswith(
        f"Get it with `python -m evaluator weights fetch --dir '{folder}'` on a machine with internet access.")


def test_named_clip_no_random_warning(caplog):
    config = {"model": "ViT-S-32", "pretrained": "none", "quick_gelu": False}
    with caplog.at_level(logging.WARNING):
        model = build_clip(types.SimpleNamespace(clip=config))
        logging.getLogger().warning("a later warning")
    messages = [record.getMessage() for record in caplog.records]
    assert isinstance(model, open_clip.model.CLIP)
    assert messages == ["a later warning"]
