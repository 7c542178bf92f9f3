"""Accounts: sign-up and the REST API token page (create, show once, revoke)."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token

from leaderboard.forms import SignupForm

logger = logging.getLogger(__name__)

# Session key that carries a new token's key to the one page view that shows it.
NEW_TOKEN_SESSION_KEY = "leaderboard_new_api_token"
# Characters of a stored token shown on later visits, enough to tell tokens apart.
TOKEN_PREFIX_LENGTH = 6


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("benchmark-list")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        logger.info("user %s signed up", user.pk)
        messages.success(request, f"Welcome, {user.get_username()}. You can now submit predictions.")
        target = request.POST.get("next", "")
        if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
            return redirect(target)
        return redirect("benchmark-list")
    return render(request, "registration/signup.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def api_token(request: HttpRequest) -> HttpResponse:
    """Show whether the user has a token; POST `action=create` replaces it, `action=revoke` deletes it."""
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "create":
            with transaction.atomic():
                Token.objects.filter(user=request.user).delete()
                token = Token.objects.create(user=request.user)
            request.session[NEW_TOKEN_SESSION_KEY] = token.key
            logger.info("API token created for user %s", request.user.pk)
        elif action == "revoke":
            deleted, _ = Token.objects.filter(user=request.user).delete()
            logger.info("API token revoked for user %s", request.user.pk)
            messages.success(request, "Token revoked." if deleted else "You had no token to revoke.")
        else:
            messages.error(request, f"Unknown action {action!r}; use the buttons on this page.")
        # Redirect after POST, so a reload cannot create a second token.
        return redirect("api-token")

    token = Token.objects.filter(user=request.user).first()
    new_key = request.session.pop(NEW_TOKEN_SESSION_KEY, None)
    context = {
        "token": token,
        "token_prefix": token.key[:TOKEN_PREFIX_LENGTH] if token else "",
        "new_key": new_key if token and new_key == token.key else None,
        "nav": "token",
    }
    return render(request, "registration/api_token.html", context)
