import zipfile

import numpy as np
import pytest
import torch

from evaluator.split import Prompt, Sample, export_public, open_split
from evaluator.submission import validate_submission
from reference_model.baselines import prompt_region, write_baseline
from reference_model.checkpoint import save_checkpoint
from reference_model.networks import RefLayer
from reference_model.predict import predict, validated_write


@pytest.fixture
def checkpoint(config, tmp_path):
    torch.manual_seed(3)
    return save_checkpoint(tmp_path / "ckpt", RefLayer(config), step=1, stage="denoiser")


def test_predict_writes_valid_zip(checkpoint, disc_split_path, tmp_path):
    out = predict(checkpoint, disc_split_path, tmp_path / "preds.zip", candidates=2, steps=2)

    split = open_split(disc_split_path)
    report = validate_submission(out, split)
    assert report.valid, report.format()
    assert report.summary["candidates"] == 2
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
    assert f"{split.samples[0].sample_id}/1.png" in names
    assert "metadata.json" in names
    assert not list(tmp_path.glob("*.unvalidated.zip"))


def test_predict_on_public_package(checkpoint, disc_split_path, tmp_path):
    public = export_public(disc_split_path, tmp_path / "public")
    out = predict(checkpoint, public, tmp_path / "preds.zip", candidates=1, steps=1)
    assert validate_submission(out, open_split(public)).valid


def test_predict_rejects_too_many_candidates(checkpoint, disc_split_path, tmp_path):
    with pytest.raises(ValueError, match="--candidates must be between 1 and 8, got 9"):
        predict(checkpoint, disc_split_path, tmp_path / "preds.zip", candidates=9)


def test_invalid_submission_is_deleted(disc_split_path, tmp_path):
    split = open_split(disc_split_path)
    wrong_size = [(sample.sample_id, [np.zeros((8, 8, 4), np.uint8)]) for sample in split.samples]
    with pytest.raises(ValueError, match="failed validation and was not kept"):
        validated_write(tmp_path / "bad.zip", split, wrong_size, {}, max_candidates=8)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["cutout", "visible-oracle"])
def test_baselines_write_valid_zips(kind, disc_split_path, tmp_path):
    out = write_baseline(kind, disc_split_path, tmp_path / f"{kind}.zip")
    assert validate_submission(out, open_split(disc_split_path)).valid


def test_visible_oracle_needs_ground_truth(disc_split_path, tmp_path):
    public = export_public(disc_split_path, tmp_path / "public")
    with pytest.raises(ValueError, match="has no gt/ folder; use the full split"):
        write_baseline("visible-oracle", public, tmp_path / "oracle.zip")


def _sample(prompt: Prompt, layer_kind: str = "foreground") -> Sample:
    return Sample(sample_id="s", image_id="i", width=40, height=20, layer_kind=layer_kind, prompt=prompt)


class _NoMaskSplit:
    def read_mask_prompt(self, sample):
        return None


def test_cutout_region_of_box():
    region = prompt_region(_NoMaskSplit(), _sample(Prompt(box=(10.0, 5.0, 20.0, 15.0))))
    assert region.sum() == 10 * 10
    assert region[5, 10]
    assert not region[15, 20]


def test_cutout_region_of_point():
    region = prompt_region(_NoMaskSplit(), _sample(Prompt(points=((20.0, 10.0),))))
    # radius 10% of the shorter side: 2 px
    assert region[10, 20]
    assert not region[10, 23]


def test_cutout_region_whole_image_cases():
    assert prompt_region(_NoMaskSplit(), _sample(Prompt(text="a cat"))).all()
    assert prompt_region(_NoMaskSplit(), _sample(Prompt(box=(1.0, 1.0, 2.0, 2.0)), "background")).all()
