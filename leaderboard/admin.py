"""Admin for hosts: benchmarks, splits, submissions (with actions), evaluations and uploads."""

from __future__ import annotations

from django.contrib import admin, messages

from leaderboard import services
from leaderboard.models import Benchmark, Evaluation, Split, Submission, Upload


class SplitInline(admin.TabularInline):
    model = Split
    extra = 0
    fields = ("name", "visibility", "is_active", "sample_count", "ground_truth_version")
    readonly_fields = ("sample_count", "ground_truth_version")
    show_change_link = True


@admin.register(Benchmark)
class BenchmarkAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "config_name", "config_version", "calibration_version", "quota_limit",
                    "quota_window_hours", "is_public")
    list_editable = ("quota_limit", "quota_window_hours", "is_public")
    search_fields = ("slug", "name")
    readonly_fields = ("config", "config_name", "config_version", "config_hash", "calibration_version", "created_at")
    inlines = [SplitInline]


@admin.register(Split)
class SplitAdmin(admin.ModelAdmin):
    list_display = ("__str__", "sample_count", "visibility", "is_active", "created_at")
    list_filter = ("benchmark", "visibility", "is_active")
    readonly_fields = ("benchmark", "public_package", "ground_truth_location", "ground_truth_version",
                       "sample_count", "created_at")


class EvaluationInline(admin.TabularInline):
    model = Evaluation
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("state", "progress", "failure_kind", "user_message", "created_at", "finished_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = ("pk", "method_name", "owner", "split", "current_state", "is_public", "is_baseline",
                    "flagged", "created_at")
    list_filter = ("split", "is_baseline", "flagged", "is_public")
    search_fields = ("method_name", "owner__username", "sha256", "original_name")
    readonly_fields = ("owner", "split", "file", "original_name", "sha256", "size_bytes", "candidate_count",
                       "metadata", "created_at")
    inlines = [EvaluationInline]
    actions = ["rescore", "flag", "unflag", "mark_baseline", "unmark_baseline"]

    @admin.display(description="state")
    def current_state(self, submission: Submission) -> str:
        evaluation = submission.evaluations.order_by("-created_at", "-pk").first()
        return evaluation.state if evaluation else "-"

    @admin.action(description="Re-score the selected submissions")
    def rescore(self, request, queryset):
        done = 0
        for submission in queryset:
            try:
                services.evaluation_rescore(submission=submission)
                done += 1
            except services.ServiceError as error:
                self.message_user(request, f"{submission}: {error}", messages.WARNING)
        self.message_user(request, f"{done} submission(s) sent to be scored again.")

    @admin.action(description="Flag (hide from the leaderboard)")
    def flag(self, request, queryset):
        for submission in queryset:
            services.submission_set_flag(submission=submission, flagged=True)

    @admin.action(description="Unflag (show on the leaderboard)")
    def unflag(self, request, queryset):
        for submission in queryset:
            services.submission_set_flag(submission=submission, flagged=False)

    @admin.action(description="Mark as baseline")
    def mark_baseline(self, request, queryset):
        for submission in queryset:
            services.submission_set_baseline(submission=submission, is_baseline=True)

    @admin.action(description="Unmark as baseline")
    def unmark_baseline(self, request, queryset):
        for submission in queryset:
            services.submission_set_baseline(submission=submission, is_baseline=False)


class ReadOnlyAdmin(admin.ModelAdmin):
    """An admin page that shows every field of its model and allows no adding or editing."""

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Evaluation)
class EvaluationAdmin(ReadOnlyAdmin):
    """Read-only: evaluations change only through the state machine."""

    list_display = ("pk", "submission", "state", "progress", "failure_kind", "attempts", "weights_verified",
                    "created_at", "finished_at")
    list_filter = ("state", "failure_kind", "weights_verified")
    search_fields = ("submission__method_name", "submission__owner__username")


@admin.register(Upload)
class UploadAdmin(ReadOnlyAdmin):
    """Read-only: uploads change only through the upload service and the beat task."""

    list_display = ("pk", "filename", "owner", "split", "state", "size", "part_count", "created_at",
                    "expires_at", "submission")
    list_filter = ("state",)
    search_fields = ("filename", "owner__username", "sha256")
