"""URLs of the website: benchmarks, submissions, accounts and the plotly.js asset."""

from django.contrib.auth import views as auth_views
from django.urls import path

from leaderboard.views import accounts, assets, pages, status, submissions

urlpatterns = [
    path("", pages.benchmark_list, name="benchmark-list"),
    path("benchmarks/<slug:slug>/", pages.benchmark_detail, name="benchmark-detail"),
    path("benchmarks/<slug:slug>/<slug:split_name>/", pages.split_detail, name="split-detail"),
    path("benchmarks/<slug:slug>/<slug:split_name>/inputs.tar", pages.split_inputs, name="split-inputs"),
    path("submit/", submissions.submit, name="submit"),
    path("submissions/", submissions.submission_list, name="submission-list"),
    path("submissions/status.json", status.submission_status_list, name="submission-status-list"),
    path("submissions/<int:submission_id>/", submissions.submission_detail, name="submission-detail"),
    path("submissions/<int:submission_id>/status.json", status.submission_status, name="submission-status"),
    path("submissions/<int:submission_id>/cancel/", submissions.submission_cancel, name="submission-cancel"),
    path("accounts/login/", auth_views.LoginView.as_view(next_page="benchmark-list"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="benchmark-list"), name="logout"),
    path("accounts/signup/", accounts.signup, name="signup"),
    path("accounts/token/", accounts.api_token, name="api-token"),
    path("assets/plotly.min.js", assets.plotly_js, name="plotly-js"),
]
