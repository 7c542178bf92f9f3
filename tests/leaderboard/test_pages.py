"""Website pages: benchmark and leaderboard, submit, my submissions, detail, accounts."""

from __future__ import annotations

import re
from datetime import timedelta

import plotly
import pytest
from django.core.files import File
from django.urls import reverse
from django.utils import timezone
from leaderboard_entries import finish_entry
from rest_framework.authtoken.models import Token

from leaderboard import services
from leaderboard.models import Evaluation, EvaluationState, Submission

XHR = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}


@pytest.fixture
def entries(demo_split, user, other_user, staff_user, cutout_zip, tmp_path):
    """Three public finished entries: Strong (staff baseline, verified), Middle, Weak."""
    strong = finish_entry(user=staff_user, split=demo_split, zip_path=cutout_zip, method_name="Strong",
                          quality=0.8, tmp_path=tmp_path, weights_verified=True, is_baseline=True)
    middle = finish_entry(user=user, split=demo_split, zip_path=cutout_zip, method_name="Middle",
                          quality=0.5, tmp_path=tmp_path)
    weak = finish_entry(user=other_user, split=demo_split, zip_path=cutout_zip, method_name="Weak",
                        quality=0.2, tmp_path=tmp_path)
    return {"strong": strong, "middle": middle, "weak": weak}


def leaderboard_methods(html: str) -> list[str]:
    """Method names of the leaderboard table's rows, top to bottom."""
    body = html.split('id="leaderboard"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<a href="/submissions/\d+/">([^<]+)</a>', body)


def leaderboard_ranks(html: str) -> list[str]:
    body = html.split('id="leaderboard"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<td class="num rank">([^<]+)</td>', body)


def split_url(split) -> str:
    return reverse("split-detail", args=[split.benchmark.slug, split.name])


# Benchmarks and leaderboard ---------------------------------------------------------------


def test_benchmark_list_links_splits(client, demo_split):
    response = client.get(reverse("benchmark-list"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Demo" in html
    assert f'href="{split_url(demo_split)}"' in html


def test_benchmark_page_shows_default_split(client, entries, demo_split):
    response = client.get(reverse("benchmark-detail", args=["demo"]))

    assert response.status_code == 200
    assert response.context["split"] == demo_split
    assert leaderboard_methods(response.content.decode()) == ["Strong", "Middle", "Weak"]


def test_leaderboard_table_contents(client, entries, demo_split):
    html = client.get(split_url(demo_split)).content.decode()

    assert leaderboard_methods(html) == ["Strong", "Middle", "Weak"]
    assert leaderboard_ranks(html) == ["1", "2", "3"]
    assert html.count('class="badge baseline"') == 1
    # Strong was scored with verified weights; the two others carry the mark.
    assert html.count('class="badge unverified"') == 2
    assert re.search(r'<span class="interval">\[0\.\d{4}, 0\.\d{4}\]</span>', html)
    assert f'href="{reverse("split-inputs", args=["demo", "val"])}"' in html
    assert 'data-key="fid_foreground"' in html
    assert 'data-higher-is-better="false"' in html
    assert "Pass-rate@K is uncalibrated" in html
    assert "↑ better · uncalibrated" in html


def test_leaderboard_links_csv(client, entries, demo_split):
    html = client.get(split_url(demo_split)).content.decode()
    csv_url = f'{reverse("api:split-leaderboard", args=[demo_split.pk])}?format=csv'

    assert f'href="{csv_url}"' in html
    response = client.get(csv_url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")


def test_leaderboard_header_order_per_metric(client, entries, demo_split):
    url = split_url(demo_split)

    assert leaderboard_methods(client.get(url, {"ordering": "-hpa"}).content.decode()) == ["Strong", "Middle", "Weak"]
    assert leaderboard_methods(client.get(url, {"ordering": "hpa"}).content.decode()) == ["Weak", "Middle", "Strong"]
    assert leaderboard_methods(
        client.get(url, {"ordering": "fid_foreground"}).content.decode()) == ["Strong", "Middle", "Weak"]
    assert leaderboard_methods(
        client.get(url, {"ordering": "-lpips_vis_background"}).content.decode()) == ["Weak", "Middle", "Strong"]


def test_leaderboard_unknown_ordering_falls_back(client, entries, demo_split):
    response = client.get(split_url(demo_split), {"ordering": "ground_truth"})

    assert response.status_code == 200
    assert leaderboard_methods(response.content.decode()) == ["Strong", "Middle", "Weak"]


def test_leaderboard_ties_share_rank(client, demo_split, user, other_user, staff_user, cutout_zip, tmp_path):
    # Equal quality and equal name length give identical reports.
    finish_entry(user=user, split=demo_split, zip_path=cutout_zip, method_name="Twin-A", quality=0.6,
                 tmp_path=tmp_path)
    finish_entry(user=other_user, split=demo_split, zip_path=cutout_zip, method_name="Twin-B", quality=0.6,
                 tmp_path=tmp_path)
    finish_entry(user=staff_user, split=demo_split, zip_path=cutout_zip, method_name="Other", quality=0.3,
                 tmp_path=tmp_path)

    html = client.get(split_url(demo_split)).content.decode()

    assert leaderboard_ranks(html) == ["1", "1", "3"]


def test_leaderboard_charts_embedded(client, entries, demo_split):
    response = client.get(split_url(demo_split))
    html = response.content.decode()

    charts = {chart["id"]: chart["figure"] for chart in response.context["charts"]}
    assert set(charts) == {"chart-hpa-prompt", "chart-pass-rate", "chart-lpips-dir"}
    for chart_id in charts:
        assert f'<script id="{chart_id}-data" type="application/json">' in html
    bars = charts["chart-hpa-prompt"]["data"]
    assert {trace["name"] for trace in bars} == {"Strong", "Middle", "Weak"}
    assert sorted(bars[0]["x"]) == ["box", "point", "text+box"]
    assert bars[0]["error_y"]["symmetric"] is False
    scatter = charts["chart-lpips-dir"]["data"][0]
    assert scatter["text"] == ["Strong", "Middle", "Weak"]
    assert len(scatter["x"]) == 3
    assert [trace["x"] for trace in charts["chart-pass-rate"]["data"]] == [[1, 2]] * 3
    assert f'src="{reverse("plotly-js")}"' in html
    assert "cdn" not in html.lower()


def test_empty_leaderboard_invites_submission(client, demo_split):
    html = client.get(split_url(demo_split)).content.decode()

    assert "No finished public entry on this split yet." in html
    assert 'id="leaderboard"' not in html


def test_unknown_split_is_404(client, demo_split):
    assert client.get(reverse("split-detail", args=["demo", "nope"])).status_code == 404
    assert client.get(reverse("benchmark-detail", args=["nope"])).status_code == 404


def test_plotly_js_served_locally(client):
    response = client.get(reverse("plotly-js"))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert response["ETag"] == f'"plotly-{plotly.__version__}"'
    assert "max-age=604800" in response["Cache-Control"]
    assert b"plotly" in b"".join(response.streaming_content)[:2000].lower()

    cached = client.get(reverse("plotly-js"), HTTP_IF_NONE_MATCH=response["ETag"])
    assert cached.status_code == 304


def test_public_inputs_download(client, demo_split):
    response = client.get(reverse("split-inputs", args=["demo", "val"]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-tar"
    assert "attachment" in response["Content-Disposition"]
    content = b"".join(response.streaming_content)
    assert content == demo_split.public_package.open("rb").read()


# Submit --------------------------------------------------------------------------------------


def test_submit_page_shows_quota(client, user, demo_split):
    client.force_login(user)

    html = client.get(reverse("submit"), {"split": demo_split.pk}).content.decode()

    assert "0 of 5 used in the last 24 hours" in html
    assert 'enctype="multipart/form-data"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'id="upload-progress"' in html


def test_submit_xhr_creates_submission(client, user, demo_split, cutout_zip):
    client.force_login(user)

    with open(cutout_zip, "rb") as handle:
        response = client.post(reverse("submit"), {
            "split": demo_split.pk, "method_name": "Cut-out", "description": "The visible part only.",
            "paper_url": "", "code_url": "https://example.org/code", "is_public": "on", "file": handle,
        }, **XHR)

    assert response.status_code == 201
    submission = Submission.objects.get(method_name="Cut-out")
    assert response.json() == {"id": submission.pk, "redirect": f"/submissions/{submission.pk}/"}
    assert submission.owner == user
    assert submission.code_url == "https://example.org/code"
    assert submission.size_bytes == cutout_zip.stat().st_size
    assert "1 of 5 used" in client.get(reverse("submit")).content.decode()


def test_submit_without_script_redirects(client, user, demo_split, cutout_zip):
    client.force_login(user)

    with open(cutout_zip, "rb") as handle:
        response = client.post(reverse("submit"), {"split": demo_split.pk, "method_name": "Plain", "file": handle})

    submission = Submission.objects.get(method_name="Plain")
    assert response.status_code == 302
    assert response["Location"] == f"/submissions/{submission.pk}/"
    assert submission.is_public is False  # an unchecked box posts nothing


def test_submit_rejects_non_zip(client, user, demo_split, tmp_path):
    client.force_login(user)
    path = tmp_path / "layers.tar"
    path.write_bytes(b"not a zip")

    with open(path, "rb") as handle:
        response = client.post(reverse("submit"), {"split": demo_split.pk, "method_name": "X", "file": handle}, **XHR)

    assert response.status_code == 400
    assert response.json() == {
        "errors": {"file": ["layers.tar is not a .zip file; upload a zip archive of PNG files."]}
    }
    assert not Submission.objects.exists()


def test_submit_quota_exceeded(client, user, demo_split, cutout_zip):
    demo_split.benchmark.quota_limit = 1
    demo_split.benchmark.save()
    client.force_login(user)
    first_at = timezone.now()

    with open(cutout_zip, "rb") as handle:
        assert client.post(reverse("submit"), {"split": demo_split.pk, "method_name": "A", "file": handle},
                           **XHR).status_code == 201
    with open(cutout_zip, "rb") as handle:
        response = client.post(reverse("submit"), {"split": demo_split.pk, "method_name": "B", "file": handle}, **XHR)

    assert response.status_code == 429
    message = response.json()["errors"]["__all__"][0]
    assert message.startswith("Quota reached: you have made 1 of 1 submission to demo/val in the last 24 hours.")
    html = client.get(reverse("submit")).content.decode()
    assert "1 of 1 used in the last 24 hours; next slot opens at" in html
    slot = re.search(r'<time datetime="([^"]+)" data-localtime>', html).group(1)
    opens = timezone.datetime.fromisoformat(slot)
    assert abs(opens - (first_at + timedelta(hours=24))) < timedelta(seconds=30)


# My submissions, status and detail -------------------------------------------------------------


def test_my_submissions_lists_own(client, user, entries):
    client.force_login(user)

    response = client.get(reverse("submission-list"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Middle" in html
    assert "Weak" not in html
    assert "Strong" not in html
    assert 'data-status-url="/submissions/status.json"' in html


def test_status_json_reports_progress(client, user, demo_split, cutout_zip, entries):
    client.force_login(user)
    with open(cutout_zip, "rb") as handle:
        client.post(reverse("submit"), {"split": demo_split.pk, "method_name": "Running", "file": handle}, **XHR)
    running = Submission.objects.get(method_name="Running")
    evaluation = running.evaluations.get()
    Evaluation.objects.filter(pk=evaluation.pk).update(
        state=EvaluationState.SCORING, chunks_total=4, chunks_done=1, progress=0.25)

    one = client.get(reverse("submission-status", args=[running.pk])).json()
    listed = client.get(reverse("submission-status-list"), {"ids": f"{running.pk},{entries['middle'].pk}"}).json()

    assert one["state"] == "scoring"
    assert one["percent"] == 25
    assert one["message"] == "1 of 4 chunks scored"
    assert one["cancellable"] is True
    by_id = {status["id"]: status for status in listed["submissions"]}
    assert by_id[entries["middle"].pk]["state"] == "finished"
    assert by_id[entries["middle"].pk]["percent"] == 100
    assert re.fullmatch(r"0\.\d{4}", by_id[entries["middle"].pk]["hpa"])


def test_status_list_rejects_bad_ids(client, user):
    client.force_login(user)

    response = client.get(reverse("submission-status-list"), {"ids": "1,x"})

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "ids='1,x' is not a comma-separated list of submission ids; send for example ?ids=3,4"
    )


def test_submission_detail_shows_results(client, entries):
    response = client.get(reverse("submission-detail", args=[entries["middle"].pk]))
    html = response.content.decode()

    assert response.status_code == 200
    keys = [row["key"] for row in response.context["metric_rows"]]
    assert keys[0] == "hpa"
    for key in ("hpa_foreground", "fid_background", "lpips_vis_foreground", "dir_background",
                "lpips_comp_foreground", "pass_rate@2_foreground", "miou_foreground", "miou_occ_foreground"):
        assert key in keys
    titles = [table["title"] for table in response.context["breakdowns"]]
    assert titles == ["prompt type", "occlusion bucket", "category"]
    assert "up to 25%" in html
    assert "Cancel scoring" not in html


def test_submission_detail_lists_problems(client, user, demo_split, invalid_zip):
    with open(invalid_zip, "rb") as handle:
        submission = services.submission_create(user=user, split=demo_split,
                                                uploaded_file=File(handle, name="invalid.zip"), method_name="Bad")
    evaluation = submission.evaluations.get()
    services.evaluation_begin_validation(evaluation_id=evaluation.pk)
    problem = {"code": "missing_sample", "file": "s0001.png", "message": "no prediction for sample s0001",
               "expected": "s0001.png or s0001/0.png", "found": "nothing", "hint": "Predict every sample."}
    services.evaluation_reject(evaluation_id=evaluation.pk, problems=[problem], user_message="1 problem")
    client.force_login(user)

    html = client.get(reverse("submission-detail", args=[submission.pk])).content.decode()

    assert '<span class="file">s0001.png</span>: no prediction for sample s0001' in html
    assert "<dt>Expected</dt><dd>s0001.png or s0001/0.png</dd>" in html
    assert "<dt>Found</dt><dd>nothing</dd>" in html
    assert "<dt>Fix</dt><dd>Predict every sample.</dd>" in html


def test_cancel_button_cancels(client, user, demo_split, cutout_zip):
    client.force_login(user)
    with open(cutout_zip, "rb") as handle:
        client.post(reverse("submit"), {"split": demo_split.pk, "method_name": "Soon", "file": handle}, **XHR)
    submission = Submission.objects.get(method_name="Soon")
    assert "Cancel scoring" in client.get(reverse("submission-detail", args=[submission.pk])).content.decode()

    response = client.post(reverse("submission-cancel", args=[submission.pk]), follow=True)

    assert submission.evaluations.get().state == "cancelled"
    html = response.content.decode()
    assert "Scoring cancelled." in html
    assert "Cancel scoring" not in html


def test_cancel_requires_post(client, user, entries):
    client.force_login(user)

    assert client.get(reverse("submission-cancel", args=[entries["middle"].pk])).status_code == 405


# Accounts -----------------------------------------------------------------------------------


def test_signup_logs_in(client, db):
    response = client.post(reverse("signup"), {
        "username": "dana", "email": "", "password1": "a-long-passphrase-42", "password2": "a-long-passphrase-42",
    })

    assert response.status_code == 302
    assert response["Location"] == reverse("benchmark-list")
    html = client.get(reverse("benchmark-list")).content.decode()
    assert "dana" in html
    assert "Log out" in html


def test_login_and_logout(client, user):
    assert client.get(reverse("login")).status_code == 200

    response = client.post(reverse("login"), {"username": "alice", "password": "alice-password-1"})
    assert response.status_code == 302
    assert "_auth_user_id" in client.session

    assert client.get(reverse("logout")).status_code == 405
    client.post(reverse("logout"))
    assert "_auth_user_id" not in client.session


def test_token_shown_once(client, user):
    client.force_login(user)

    response = client.post(reverse("api-token"), {"action": "create"}, follow=True)

    key = Token.objects.get(user=user).key
    assert f'<code class="token" id="new-token">{key}</code>' in response.content.decode()
    again = client.get(reverse("api-token")).content.decode()
    assert key not in again
    assert f"<code>{key[:6]}…</code>" in again


def test_token_replace_and_revoke(client, user):
    client.force_login(user)
    client.post(reverse("api-token"), {"action": "create"})
    first = Token.objects.get(user=user).key

    client.post(reverse("api-token"), {"action": "create"})
    assert Token.objects.get(user=user).key != first

    response = client.post(reverse("api-token"), {"action": "revoke"}, follow=True)
    assert not Token.objects.filter(user=user).exists()
    assert "Token revoked." in response.content.decode()


def test_pages_use_no_cdn(client, user, entries, demo_split):
    client.force_login(user)
    for url in (reverse("benchmark-list"), split_url(demo_split), reverse("submit"), reverse("submission-list"),
                reverse("submission-detail", args=[entries["middle"].pk]), reverse("api-token")):
        html = client.get(url).content.decode()
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        external = [source for source in sources if source.startswith(("http:", "https:", "//"))]
        assert external == [], url


def test_submission_detail_shows_history(client, entries):
    submission = entries["middle"]
    first = submission.evaluations.get()
    rescore = services.evaluation_rescore(submission=submission)

    response = client.get(reverse("submission-detail", args=[submission.pk]))

    assert [item["evaluation"].pk for item in response.context["history"]] == [rescore.pk, first.pk]
    assert [item["state"] for item in response.context["history"]] == [rescore.state, "finished"]
    assert 'id="history"' in response.content.decode()


def test_submission_detail_without_history(client, entries):
    response = client.get(reverse("submission-detail", args=[entries["middle"].pk]))

    assert response.context["history"] == []
    assert 'id="history"' not in response.content.decode()
