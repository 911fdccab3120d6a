"""URLs: the toolkit under /o/, a login form, and the test-control endpoints."""
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("test/secret", views.rotate_secret),
    path("test/stats", views.stats),
]
