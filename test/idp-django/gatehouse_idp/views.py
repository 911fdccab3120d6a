"""Test-control views and the token-request counter."""
import hmac
import json
import threading

from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import Application

_lock = threading.Lock()
_token_requests = {}


def _client_id_of(request):
    auth = request.META.get("HTTP_AUTHORIZATION", "")
    if auth.startswith("Basic "):
        import base64
        from urllib.parse import unquote_plus

        try:
            return unquote_plus(base64.b64decode(auth[6:]).decode("utf-8").split(":", 1)[0])
        except Exception:  # noqa: BLE001
            return "?"
    return request.POST.get("client_id", "?")


def count_token_requests(get_response):
    def middleware(request):
        if request.path == "/o/token/" and request.method == "POST":
            cid = _client_id_of(request)
            with _lock:
                _token_requests[cid] = _token_requests.get(cid, 0) + 1
        return get_response(request)

    return middleware


def _allowed(request):
    got = request.META.get("HTTP_X_TEST_CONTROL", "")
    return settings.CONTROL_TOKEN != "" and hmac.compare_digest(got, settings.CONTROL_TOKEN)


@csrf_exempt
def rotate_secret(request):
    if request.method != "POST" or not _allowed(request):
        return HttpResponseForbidden()
    n = Application.objects.filter(client_id=request.POST["client_id"]).update(
        client_secret=request.POST["client_secret"]
    )
    return HttpResponse(str(n))


def stats(request):
    if not _allowed(request):
        return HttpResponseForbidden()
    with _lock:
        body = json.dumps({"token_requests": _token_requests})
    return HttpResponse(body, content_type="application/json")
