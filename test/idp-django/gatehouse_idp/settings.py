"""Settings of the test IdP; everything variable comes from the environment the test helper sets."""
import json
import os

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = os.environ.get("DOT_DJANGO_SECRET", "test-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
    "gatehouse_idp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    # A default project's middleware: APPEND_SLASH answers the slash-less discovery URL with 301.
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "gatehouse_idp.views.count_token_requests",
]
ROOT_URLCONF = "gatehouse_idp.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [os.path.join(BASE_DIR, "templates")],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("DOT_DB", ":memory:")}
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGIN_URL = "/accounts/login/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; test users only
LOGGING = {"version": 1, "disable_existing_loggers": False}

# Per-client test knobs, keyed by client id (see README.md).
CLIENTS = {c["client_id"]: c for c in json.loads(os.environ.get("DOT_CLIENTS", "[]"))}
CONTROL_TOKEN = os.environ.get("DOT_CONTROL_TOKEN", "")


def _client_of(request):
    client = getattr(request, "client", None)
    return CLIENTS.get(getattr(client, "client_id", None), {})


def access_token_lifetime(request):
    """oauthlib calls token_expires_in with the request: a per-client access-token lifetime."""
    return int(_client_of(request).get("access_token_seconds", 3600))


def pkce_required(client_id):
    return bool(CLIENTS.get(client_id, {}).get("pkce_required", False))


OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": open(os.environ["DOT_RSA_KEY_FILE"]).read() if "DOT_RSA_KEY_FILE" in os.environ else "",
    "SCOPES": {
        "openid": "OpenID Connect",
        "email": "email address",
        "profile": "profile",
        "groups": "groups",
    },
    "DEFAULT_SCOPES": ["openid"],
    "ACCESS_TOKEN_EXPIRE_SECONDS": access_token_lifetime,
    "PKCE_REQUIRED": pkce_required,
    "OAUTH2_VALIDATOR_CLASS": "gatehouse_idp.validator.Validator",
}
