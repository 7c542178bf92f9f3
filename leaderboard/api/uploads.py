"""API endpoints of presigned multipart uploads (S3 mode only).

    POST   /api/v1/uploads/                  start: {split, filename, size, sha256, part_size?}
    POST   /api/v1/uploads/<id>/parts/       presigned PUT URLs: {part_numbers: [...]}
    GET    /api/v1/uploads/<id>/             the upload and the parts S3 has stored
    POST   /api/v1/uploads/<id>/complete/    check the SHA-256, create the submission
    DELETE /api/v1/uploads/<id>/             abort

Only the owner sees or acts on an upload; anyone else gets 404.
`leaderboard.upload_client` is a client for these endpoints.
"""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers as fields
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from leaderboard import services
from leaderboard.api import serializers
from leaderboard.api.throttling import SubmissionCreateThrottle
from leaderboard.api.views import ERROR_RESPONSE, ApiView

PARTS_RESPONSE = inline_serializer("UploadParts", {
    "upload": serializers.UploadSerializer(),
    "parts": serializers.PartSerializer(many=True),
})
URLS_RESPONSE = inline_serializer("UploadPartUrls", {
    "expires_in": fields.IntegerField(),
    "urls": fields.ListField(child=inline_serializer("UploadPartUrl", {
        "part_number": fields.IntegerField(), "url": fields.URLField(),
    })),
})


def upload_body(request, upload) -> dict:
    return serializers.UploadSerializer(upload, context={"request": request}).data


class UploadCreateView(ApiView):
    permission_classes = [IsAuthenticated]

    def get_throttles(self):
        return [*super().get_throttles(), SubmissionCreateThrottle()]

    @extend_schema(
        request=serializers.UploadCreateSerializer,
        responses={201: serializers.UploadSerializer, 400: ERROR_RESPONSE, 401: ERROR_RESPONSE,
                   409: ERROR_RESPONSE, 413: ERROR_RESPONSE, 429: ERROR_RESPONSE},
    )
    def post(self, request):
        incoming = serializers.UploadCreateSerializer(data=request.data, context={"request": request})
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        upload = services.upload_create(
            user=request.user, split=data["split"], filename=data["filename"], size=data["size"],
            sha256=data["sha256"], part_size=data["part_size"],
        )
        location = request.build_absolute_uri(reverse("api:upload-detail", args=[upload.pk]))
        return Response(upload_body(request, upload), status=status.HTTP_201_CREATED, headers={"Location": location})


class UploadDetailView(ApiView):
    """GET: the upload and the parts S3 has stored (ListParts); DELETE: abort it."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: PARTS_RESPONSE, 401: ERROR_RESPONSE, 404: ERROR_RESPONSE})
    def get(self, request, upload_id: int):
        upload = services.upload_get_for_owner(upload_id=upload_id, user=request.user)
        parts = services.upload_parts(upload=upload)
        return Response({"upload": upload_body(request, upload),
                         "parts": serializers.PartSerializer(parts, many=True).data})

    @extend_schema(responses={200: serializers.UploadSerializer, 401: ERROR_RESPONSE, 404: ERROR_RESPONSE,
                              409: ERROR_RESPONSE})
    def delete(self, request, upload_id: int):
        upload = services.upload_get_for_owner(upload_id=upload_id, user=request.user)
        services.upload_abort(upload=upload)
        return Response(upload_body(request, upload))


class UploadPartUrlsView(ApiView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=serializers.PartUrlsRequestSerializer,
                   responses={200: URLS_RESPONSE, 400: ERROR_RESPONSE, 401: ERROR_RESPONSE, 404: ERROR_RESPONSE,
                              409: ERROR_RESPONSE})
    def post(self, request, upload_id: int):
        upload = services.upload_get_for_owner(upload_id=upload_id, user=request.user)
        incoming = serializers.PartUrlsRequestSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        urls = services.upload_part_urls(upload=upload, part_numbers=incoming.validated_data["part_numbers"])
        return Response({
            "expires_in": settings.REFLADE_S3_URL_EXPIRY,
            "urls": [{"part_number": number, "url": url} for number, url in urls.items()],
        })


class UploadCompleteView(ApiView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=serializers.UploadCompleteSerializer,
                   responses={201: serializers.SubmissionSerializer, 400: ERROR_RESPONSE, 401: ERROR_RESPONSE,
                              404: ERROR_RESPONSE, 409: ERROR_RESPONSE, 429: ERROR_RESPONSE})
    def post(self, request, upload_id: int):
        upload = services.upload_get_for_owner(upload_id=upload_id, user=request.user)
        incoming = serializers.UploadCompleteSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        submission = services.upload_complete(
            upload=upload, user=request.user, fields=services.SubmissionFields(**incoming.validated_data)
        )
        body = serializers.SubmissionSerializer(submission, context={"request": request}).data
        location = request.build_absolute_uri(reverse("api:submission-detail", args=[submission.pk]))
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": location})
