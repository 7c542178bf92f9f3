"""URLs of the REST API, mounted at /api/v1/ under the namespace `api`."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from leaderboard.api import files, uploads, views

app_name = "api"

urlpatterns = [
    path("benchmarks/", views.BenchmarkListView.as_view(), name="benchmark-list"),
    path("benchmarks/<slug:slug>/", views.BenchmarkDetailView.as_view(), name="benchmark-detail"),
    path("splits/", views.SplitListView.as_view(), name="split-list"),
    path("splits/<int:split_id>/", views.SplitDetailView.as_view(), name="split-detail"),
    path("splits/<int:split_id>/leaderboard/", views.LeaderboardView.as_view(), name="split-leaderboard"),
    path("submissions/", views.SubmissionListView.as_view(), name="submission-list"),
    path("submissions/<int:submission_id>/", views.SubmissionDetailView.as_view(), name="submission-detail"),
    path("submissions/<int:submission_id>/cancel/", views.SubmissionCancelView.as_view(), name="submission-cancel"),
    path("submissions/<int:submission_id>/file/", files.SubmissionFileView.as_view(), name="submission-file"),
    path("evaluations/<int:evaluation_id>/samples/", views.EvaluationSamplesView.as_view(),
         name="evaluation-samples"),
    path("evaluations/<int:evaluation_id>/samples/file/", files.EvaluationSamplesFileView.as_view(),
         name="evaluation-samples-file"),
    path("uploads/", uploads.UploadCreateView.as_view(), name="upload-list"),
    path("uploads/<int:upload_id>/", uploads.UploadDetailView.as_view(), name="upload-detail"),
    path("uploads/<int:upload_id>/parts/", uploads.UploadPartUrlsView.as_view(), name="upload-parts"),
    path("uploads/<int:upload_id>/complete/", uploads.UploadCompleteView.as_view(), name="upload-complete"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    re_path(r"^.*$", views.ApiNotFoundView.as_view(), name="not-found"),
]
