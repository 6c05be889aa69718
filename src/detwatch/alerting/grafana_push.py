"""Push generated Grafana alerting to a running Grafana through its provisioning HTTP API.

Used by the companion after ``create_alert`` when ``DETWATCH_GRAFANA_URL`` (and
``DETWATCH_GRAFANA_TOKEN``, a service-account token) are set. The objects are those
of :func:`detwatch.alerting.grafana.api_payloads`, i.e. the shapes of
``grafana-foundation-sdk``'s alerting models:

1. ``POST /api/folders`` creates the rules' folder (an existing one answers 409/412);
2. ``PUT /api/v1/provisioning/alert-rules/{uid}``, or ``POST`` when Grafana does not
   know the uid yet (404);
3. the same for ``/api/v1/provisioning/contact-points``;
4. ``PUT /api/v1/provisioning/policies`` with the whole policy tree.

Upserts by uid make a repeated push converge instead of duplicating rules. Errors
raise :class:`GrafanaPushError` naming the call, so the companion can report them
next to the stored alert rather than lose it.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

import requests

__all__ = [
    "TIMEOUT_S",
    "GrafanaPushError",
    "push",
]

TIMEOUT_S: Final = 10.0


class GrafanaPushError(RuntimeError):
    """Grafana refused (or could not be reached for) one of the calls."""


def push(
    payloads: dict[str, Any],
    *,
    url: str,
    token: str | None,
    folder_uid: str,
    session: requests.Session | None = None,
) -> dict[str, int]:
    """Upsert rules and contact points, replace the policy tree; returns counts pushed."""
    http = session or requests.Session()
    base = url.rstrip("/")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"

    def call(method: str, path: str, body: Any) -> requests.Response:
        try:
            return http.request(method, base + path, json=body, headers=headers, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            raise GrafanaPushError(f"{method} {base}{path}: {exc}") from exc

    def check(response: requests.Response, what: str) -> None:
        if not response.ok:
            raise GrafanaPushError(f"{what}: Grafana answered {response.status_code}: {response.text[:300]}")

    folder = call("POST", "/api/folders", {"uid": folder_uid, "title": folder_uid})
    if folder.status_code not in (200, 409, 412):
        check(folder, "create folder")

    def upsert(kind: str, item: dict[str, Any]) -> None:
        path = f"/api/v1/provisioning/{kind}"
        response = call("PUT", f"{path}/{quote(str(item['uid']), safe='')}", item)
        if response.status_code == 404:
            response = call("POST", path, item)
        check(response, f"{kind} {item['uid']}")

    for rule in payloads["alert-rules"]:
        upsert("alert-rules", rule)
    for point in payloads["contact-points"]:
        upsert("contact-points", point)
    check(call("PUT", "/api/v1/provisioning/policies", payloads["policies"]), "policies")
    return {"alert_rules": len(payloads["alert-rules"]), "contact_points": len(payloads["contact-points"])}
