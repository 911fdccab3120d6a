"""The OAuth2 validator: email, groups and names as claims; LemonLDAP-style raw basic-auth comparison on demand."""
import base64

from django.conf import settings
from oauth2_provider.oauth2_validators import OAuth2Validator


class Validator(OAuth2Validator):
    def get_additional_claims(self, request):
        u = request.user
        return {
            "email": u.email,
            "email_verified": True,
            "preferred_username": u.username,
            "name": u.get_full_name() or u.username,
            "groups": [g.name for g in u.groups.all()],
        }

    def _authenticate_basic_auth(self, request):
        auth = self._extract_basic_auth(request)
        client_id = None
        if auth:
            try:
                client_id = base64.b64decode(auth).decode("utf-8").split(":", 1)[0]
            except Exception:  # noqa: BLE001 - a bad header is simply not basic auth
                return False
        if not settings.CLIENTS.get(client_id, {}).get("raw_basic"):
            return super()._authenticate_basic_auth(request)
        # As LemonLDAP::NG 2.16: the credentials are compared exactly as sent, without percent-decoding.
        _, secret = base64.b64decode(auth).decode("utf-8").split(":", 1)
        if self._load_application(client_id, request) is None:
            return False
        return request.client.client_secret == secret
