"""Storages on S3: django-storages reads and writes the moto buckets, ground truth
goes to its own bucket, and nothing makes a URL for ground truth."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from django.core.files.base import ContentFile

from leaderboard.settings import storages_from_env
from leaderboard.storage import ground_truth_storage, is_s3, private_storage, public_storage
from tests.storage.conftest import BUCKET, GROUND_TRUTH_BUCKET

pytestmark = pytest.mark.s3


def test_private_storage_round_trip(s3_storages, s3_client):
    storage = private_storage()

    name = storage.save("submissions/split-1/round-trip.zip", ContentFile(b"zip bytes", name="x.zip"))
    with storage.open(name, "rb") as handle:
        content = handle.read()

    assert is_s3(storage)
    assert name == "submissions/split-1/round-trip.zip"
    assert content == b"zip bytes"
    assert s3_client.get_object(Bucket=BUCKET, Key=name)["Body"].read() == b"zip bytes"
    storage.delete(name)
    assert not storage.exists(name)


def test_model_fields_follow_storages_change(s3_storages):
    from leaderboard.models import Submission

    field_storage = Submission._meta.get_field("file").storage

    assert is_s3(field_storage)
    assert field_storage.bucket_name == BUCKET


def test_split_files_in_their_buckets(s3_split, s3_client):
    ground_truth = s3_client.head_object(Bucket=GROUND_TRUTH_BUCKET, Key=s3_split.ground_truth_location)
    public = s3_client.head_object(Bucket=BUCKET, Key=f"public/{s3_split.public_package.name}")

    assert ground_truth["ContentLength"] > 0
    assert public["ContentLength"] > 0
    with pytest.raises(ClientError):
        s3_client.head_object(Bucket=BUCKET, Key=s3_split.ground_truth_location)


def test_ground_truth_has_no_url(s3_split):
    with pytest.raises(ValueError) as raised:
        ground_truth_storage().url(s3_split.ground_truth_location)

    assert str(raised.value) == (
        f"{s3_split.ground_truth_location} is in private storage, which has no URL; "
        "serve it through a view that checks permissions"
    )
    assert is_s3(public_storage())


def test_ground_truth_prefix_without_private_bucket():
    storages = storages_from_env({"REFLADE_S3_BUCKET": "main"})

    assert storages["ground_truth"]["OPTIONS"]["bucket_name"] == "main"
    assert storages["ground_truth"]["OPTIONS"]["location"] == "private"
    assert storages["ground_truth"]["BACKEND"] == "leaderboard.storage_s3.GroundTruthS3Storage"
    assert storages["private"]["OPTIONS"]["location"] == ""
    assert storages["default"]["OPTIONS"]["location"] == "public"


def test_ground_truth_own_bucket():
    storages = storages_from_env({"REFLADE_S3_BUCKET": "main", "REFLADE_S3_PRIVATE_BUCKET": "truth"})

    assert storages["ground_truth"]["OPTIONS"]["bucket_name"] == "truth"
    assert storages["ground_truth"]["OPTIONS"]["location"] == ""
    assert storages["private"]["OPTIONS"]["bucket_name"] == "main"


def test_embedded_storages_are_local():
    storages = storages_from_env({})

    assert storages["private"]["BACKEND"] == "leaderboard.storage.PrivateFileSystemStorage"
    assert storages["ground_truth"] == storages["private"]
