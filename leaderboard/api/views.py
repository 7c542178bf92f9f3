"""REST API views: one thin class per endpoint, reading through selectors and
writing through services."""

from __future__ import annotations

import gzip
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.http import HttpResponse
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from leaderboard import selectors, services
from leaderboard.api import serializers
from leaderboard.api.errors import api_exception_handler
from leaderboard.api.renderers import CSVRenderer, ParquetRenderer
from leaderboard.api.throttling import AnonThrottle, SubmissionCreateThrottle, UserThrottle
from leaderboard.models import Split
from leaderboard.views.columns import column_for, columns_for_keys, selector_ordering

logger = logging.getLogger(__name__)

ERROR_RESPONSE = OpenApiResponse(description='Error envelope: {"error": {"code", "message", "details"}}')


class FormatNegotiation(DefaultContentNegotiation):
    """DRF's content negotiation, except that an unknown `?format=` names the formats on offer."""

    def filter_renderers(self, renderers, format):
        matching = [renderer for renderer in renderers if renderer.format == format]
        if not matching:
            offered = ", ".join(sorted({renderer.format for renderer in renderers}))
            raise exceptions.NotFound(f"Unknown format {format!r}; this endpoint offers {offered}.")
        return matching


class ApiView(APIView):
    """Base of every endpoint: token or session authentication, rate limits, the error envelope."""

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [AllowAny]
    throttle_classes = [AnonThrottle, UserThrottle]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = FormatNegotiation

    def get_exception_handler(self):
        return api_exception_handler


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def split_for_viewer(split_id: int, user) -> Split:
    """Return the split if its benchmark is visible to the user; raise NotFound otherwise."""
    benchmarks = selectors.benchmark_list(user=user)
    split = Split.objects.select_related("benchmark").filter(pk=split_id, benchmark__in=benchmarks).first()
    if split is None:
        raise services.NotFound(f"No split {split_id}.")
    return split


# Benchmarks and splits -----------------------------------------------------------------


class BenchmarkListView(ApiView):
    @extend_schema(responses=serializers.BenchmarkSerializer(many=True))
    def get(self, request):
        benchmarks = selectors.benchmark_list(user=request.user).prefetch_related("splits")
        return Response(serializers.BenchmarkSerializer(benchmarks, many=True, context={"request": request}).data)


class BenchmarkDetailView(ApiView):
    @extend_schema(responses={200: serializers.BenchmarkSerializer, 404: ERROR_RESPONSE})
    def get(self, request, slug: str):
        benchmark = selectors.benchmark_get(slug=slug, user=request.user)
        return Response(serializers.BenchmarkSerializer(benchmark, context={"request": request}).data)


class SplitListView(ApiView):
    @extend_schema(
        parameters=[OpenApiParameter("benchmark", str, description="Only the splits of this benchmark slug.")],
        responses=serializers.SplitSerializer(many=True),
    )
    def get(self, request):
        benchmarks = selectors.benchmark_list(user=request.user)
        splits = Split.objects.filter(benchmark__in=benchmarks).select_related("benchmark")
        slug = request.query_params.get("benchmark")
        if slug:
            splits = splits.filter(benchmark__slug=slug)
        splits = splits.order_by("benchmark__slug", "name")
        return Response(serializers.SplitSerializer(splits, many=True, context={"request": request}).data)


class SplitDetailView(ApiView):
    @extend_schema(responses={200: serializers.SplitSerializer, 404: ERROR_RESPONSE})
    def get(self, request, split_id: int):
        split = split_for_viewer(split_id, request.user)
        return Response(serializers.SplitSerializer(split, context={"request": request}).data)


# Leaderboard -------------------------------------------------------------------------------


def leaderboard_csv_rows(rows) -> list[dict]:
    """Flat CSV rows: entry fields, then each metric with its interval bounds."""
    keys = [column.key for column in columns_for_keys((key for row in rows for key in row.metrics), all_keys=True)]
    table = []
    for row in rows:
        record = {
            "rank": row.rank, "method_name": row.method_name, "owner": row.owner_name,
            "is_baseline": row.is_baseline, "weights_verified": row.weights_verified,
            "submission": row.submission.pk, "evaluation": row.evaluation.pk,
            "created_at": row.created_at.isoformat(),
        }
        for key in keys:
            interval = row.intervals.get(key) or (None, None)
            record[key] = row.metrics.get(key)
            record[f"{key}_lo"] = interval[0]
            record[f"{key}_hi"] = interval[1]
        table.append(record)
    return table


# Seconds a computed leaderboard stays cached. A finished, hidden or flagged entry
# changes the cache keys (`selectors.leaderboard_version`, re-read every
# LEADERBOARD_VERSION_SECONDS). Other edits, such as a renamed method, show once
# the cached leaderboard expires.
LEADERBOARD_CACHE_SECONDS = 300
LEADERBOARD_VERSION_SECONDS = 2
# Only one thread of a process computes a leaderboard at a time, so that a burst of
# requests after a change computes it once and the others read the result.
_leaderboard_computing = threading.Lock()


@dataclass
class EncodedEntry:
    """A leaderboard row as the JSON response sends it, less its rank."""

    metrics: dict[str, float | None]
    created_at: datetime
    # The entry's JSON object without `rank`, from its opening brace.
    body: bytes
    rank: int | None = None


def encoded_entries(split: Split) -> list[EncodedEntry]:
    """Encode each leaderboard row once, as `JSONRenderer` would, so orderings only sort and join."""
    renderer = JSONRenderer()
    entries = []
    for row in selectors.leaderboard_entries(split):
        data = serializers.leaderboard_entry_data(row)
        del data["rank"]
        entries.append(EncodedEntry(row.metrics, row.created_at, renderer.render(data)))
    return entries


def joined_body(entries: list[EncodedEntry]) -> bytes:
    """Join ranked entries into a JSON array, with `rank` first as in LeaderboardEntrySerializer."""
    parts = [b'{"rank":%s,%s' % (b"null" if entry.rank is None else b"%d" % entry.rank, entry.body[1:])
             for entry in entries]
    return b"[" + b",".join(parts) + b"]"


def compute_leaderboard_body(request, split: Split, ordering: str | None, version: str,
                             renderer_context: dict) -> bytes:
    renderer = request.accepted_renderer
    selector_key = selector_ordering(ordering) if ordering else None
    if renderer.format != "json" or ";" in request.accepted_media_type:
        # CSV, or JSON with media type parameters such as an indent: render the rows in full.
        rows = selectors.leaderboard_rows(split=split, ordering=selector_key)
        data = leaderboard_csv_rows(rows) if renderer.format == "csv" else [
            serializers.leaderboard_entry_data(row) for row in rows]
        return renderer.render(data, request.accepted_media_type, renderer_context)

    entries_key = f"api-leaderboard-entries:{split.pk}:{version}"
    entries = cache.get(entries_key)
    if entries is None:
        entries = encoded_entries(split)
        cache.set(entries_key, entries, LEADERBOARD_CACHE_SECONDS)
    return joined_body(selectors.rank_rows(entries, split=split, ordering=selector_key))


def leaderboard_version(split: Split) -> str:
    """Return the split's leaderboard version, read from the database at most every LEADERBOARD_VERSION_SECONDS."""
    # The creation time distinguishes splits that reuse an id, as in a recreated database.
    key = f"api-leaderboard-version:{split.pk}:{split.created_at.isoformat()}"
    version = cache.get(key)
    if version is None:
        version = ":".join(str(part) for part in selectors.leaderboard_version(split))
        cache.set(key, version, LEADERBOARD_VERSION_SECONDS)
    return version


def leaderboard_body(request, split: Split, ordering: str | None, renderer_context: dict) -> bytes:
    """Return the split's rendered leaderboard, gzip-compressed, from the cache while its entries are unchanged.

    The cache holds, per split and version, the encoded entries that every JSON
    ordering shares, and the compressed body of each ordering and media type.
    """
    renderer = request.accepted_renderer
    version = leaderboard_version(split)
    key = f"api-leaderboard:{split.pk}:{version}:{renderer.format}:{request.accepted_media_type}:{ordering or ''}"
    body = cache.get(key)
    if body is not None:
        return body

    with _leaderboard_computing:
        body = cache.get(key)
        if body is None:
            # A thousand entries make megabytes of JSON, which the fastest gzip level shrinks
            # threefold. Compressing once keeps both the cache and the responses small.
            body = gzip.compress(compute_leaderboard_body(request, split, ordering, version, renderer_context),
                                 compresslevel=1, mtime=0)
            cache.set(key, body, LEADERBOARD_CACHE_SECONDS)
    return body


def accepts_gzip(request) -> bool:
    """Return whether the request's Accept-Encoding lists gzip with a quality above zero."""
    for item in request.META.get("HTTP_ACCEPT_ENCODING", "").split(","):
        coding, _, parameters = item.strip().partition(";")
        if coding.strip().lower() == "gzip":
            quality = parameters.strip().removeprefix("q=").strip()
            try:
                return not quality or float(quality) > 0
            except ValueError:
                return False
    return False


class LeaderboardView(ApiView):
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "ordering", str,
                description="A metric key such as `-hpa` or `fid_foreground`; `-` sorts descending. "
                            "The default sorts by the benchmark's primary metric, best first.",
            ),
            OpenApiParameter("format", str, enum=["json", "csv"], description="Response format."),
        ],
        responses={200: serializers.LeaderboardEntrySerializer(many=True), 400: ERROR_RESPONSE, 404: ERROR_RESPONSE},
    )
    def get(self, request, split_id: int):
        split = split_for_viewer(split_id, request.user)
        ordering = request.query_params.get("ordering", "").strip() or None
        if ordering is not None and column_for(ordering.lstrip("-")) is None:
            raise exceptions.ValidationError({"ordering": [
                f"Unknown metric {ordering.lstrip('-')!r} to order by; use a key of an entry's metrics, "
                "such as hpa, fid_foreground or pass_rate@1, with - for descending."
            ]})
        renderer = request.accepted_renderer
        body = leaderboard_body(request, split, ordering, self.get_renderer_context())

        charset = f"; charset={renderer.charset}" if renderer.charset else ""
        if accepts_gzip(request):
            response = HttpResponse(body, content_type=renderer.media_type + charset)
            response["Content-Encoding"] = "gzip"
        else:
            response = HttpResponse(gzip.decompress(body), content_type=renderer.media_type + charset)
        patch_vary_headers(response, ["Accept-Encoding"])
        if renderer.format == "csv":
            filename = f"{split.benchmark.slug}-{split.name}-leaderboard.csv"
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


# Submissions -------------------------------------------------------------------------------


class SubmissionListView(ApiView):
    """GET lists the caller's own submissions; POST uploads a new one (multipart)."""

    permission_classes = [IsAuthenticated]

    def get_throttles(self):
        throttles = super().get_throttles()
        if self.request.method == "POST":
            throttles.append(SubmissionCreateThrottle())
        return throttles

    @extend_schema(responses=serializers.SubmissionSerializer(many=True))
    def get(self, request):
        submissions = selectors.submission_list_for_user(user=request.user)
        paginator = Pagination()
        page = paginator.paginate_queryset(submissions, request, view=self)
        data = serializers.SubmissionSerializer(page, many=True, context={"request": request}).data
        return paginator.get_paginated_response(data)

    @extend_schema(
        request={"multipart/form-data": serializers.SubmissionCreateSerializer},
        responses={201: serializers.SubmissionSerializer, 400: ERROR_RESPONSE, 401: ERROR_RESPONSE,
                   409: ERROR_RESPONSE, 413: ERROR_RESPONSE, 429: ERROR_RESPONSE},
    )
    def post(self, request):
        incoming = serializers.SubmissionCreateSerializer(data=request.data, context={"request": request})
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        submission = services.submission_create(
            user=request.user,
            split=data["split"],
            uploaded_file=data["file"],
            method_name=data["method_name"],
            description=data["description"],
            paper_url=data["paper_url"],
            code_url=data["code_url"],
            is_public=data["is_public"],
        )
        body = serializers.SubmissionSerializer(submission, context={"request": request}).data
        location = request.build_absolute_uri(reverse("api:submission-detail", args=[submission.pk]))
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": location})


class SubmissionDetailView(ApiView):
    @extend_schema(responses={200: serializers.SubmissionSerializer, 404: ERROR_RESPONSE})
    def get(self, request, submission_id: int):
        submission = selectors.submission_get_for_viewer(submission_id=submission_id, user=request.user)
        return Response(serializers.SubmissionSerializer(submission, context={"request": request}).data)


class SubmissionCancelView(ApiView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={200: serializers.SubmissionSerializer, 403: ERROR_RESPONSE,
                                            404: ERROR_RESPONSE, 409: ERROR_RESPONSE})
    def post(self, request, submission_id: int):
        submission = selectors.submission_get_for_viewer(submission_id=submission_id, user=request.user)
        services.submission_cancel(submission=submission, user=request.user)
        return Response(serializers.SubmissionSerializer(submission, context={"request": request}).data)


# Per-sample results ------------------------------------------------------------------------


class EvaluationSamplesView(ApiView):
    """Per-sample metrics of a finished evaluation on a public split."""

    renderer_classes = [JSONRenderer, CSVRenderer, ParquetRenderer]
    default_page_size = 100
    max_page_size = 1000

    @extend_schema(
        parameters=[
            OpenApiParameter("page", int, description="Page number, from 1 (JSON only)."),
            OpenApiParameter("page_size", int, description="Rows per page, at most 1000 (JSON only)."),
            OpenApiParameter("format", str, enum=["json", "csv", "parquet"],
                             description="CSV and Parquet return the whole table in one file."),
        ],
        responses={(200, "application/json"): OpenApiTypes.OBJECT, (200, "text/csv"): OpenApiTypes.STR,
                   (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY, 404: ERROR_RESPONSE},
    )
    def get(self, request, evaluation_id: int):
        samples = selectors.evaluation_samples_for_viewer(evaluation_id=evaluation_id, user=request.user)
        fmt = request.accepted_renderer.format
        if fmt in ("csv", "parquet"):
            filename = f"evaluation-{evaluation_id}-samples.{fmt}"
            return Response(samples, headers={"Content-Disposition": f'attachment; filename="{filename}"'})
        return Response(self._page(request, samples, evaluation_id))

    def _page(self, request, samples, evaluation_id: int) -> dict:
        page = self._positive_int(request, "page", 1)
        page_size = min(self._positive_int(request, "page_size", self.default_page_size), self.max_page_size)
        count = len(samples)
        start = (page - 1) * page_size
        if start >= count and page != 1:
            raise exceptions.NotFound(f"Page {page} is past the last page ({max(1, -(-count // page_size))}).")
        rows = json.loads(samples.iloc[start:start + page_size].to_json(orient="records"))
        base = request.build_absolute_uri(reverse("api:evaluation-samples", args=[evaluation_id]))
        link = f"{base}?page=%d&page_size={page_size}"
        return {
            "count": count,
            "next": link % (page + 1) if start + page_size < count else None,
            "previous": link % (page - 1) if page > 1 else None,
            "results": rows,
        }

    @staticmethod
    def _positive_int(request, name: str, default: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise exceptions.ValidationError({name: [f"{name}={raw!r} is not a positive whole number."]})
        return value


class ApiNotFoundView(ApiView):
    """Any other path under the API: the error envelope instead of an HTML 404 page."""

    schema = None

    def get(self, request, *args, **kwargs):
        raise exceptions.NotFound(f"No API endpoint at {request.path}; see /api/v1/docs/ for the endpoints.")

    post = put = patch = delete = get
