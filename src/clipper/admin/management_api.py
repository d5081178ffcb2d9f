"""ManagementApi: the connection state and REST plumbing ClipperConnection's calls share.

Every call to the cluster is a POST to the management frontend at the manager's admin address, with the
manager's admin token (if any) as `Authorization: Bearer`.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

from clipper.admin.exceptions import ClipperException, UnconnectedException
from clipper.admin.managers.base import ContainerManager

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 30.0


class ManagementApi:
    """Holds the manager `cm` and a session; POSTs to `/admin/<endpoint>` once connected."""

    def __init__(self, container_manager: ContainerManager) -> None:
        self.connected = False
        self.cm = container_manager
        self._http = requests.Session()
        self._http.headers["Content-type"] = "application/json"

    def _require_connection(self) -> None:
        if not self.connected:
            raise UnconnectedException()

    def _admin(self, endpoint: str, body: dict[str, Any]) -> requests.Response:
        """POST to the management API; a non-200 answer becomes Clipper's ClipperException."""
        self._require_connection()
        url = f"http://{self.cm.get_admin_addr()}/admin/{endpoint}"
        r = self._http.post(url, json=body, headers=self._auth_headers(), timeout=REQUEST_TIMEOUT_S)
        if r.status_code != 200:
            msg = f"Received error status code: {r.status_code} and message: {r.text}"
            logger.debug(msg)  # the exception carries it; a log line too would say it twice
            raise ClipperException(msg)
        return r

    def _auth_headers(self) -> dict[str, str]:
        """The manager's admin token as a bearer header; none when the cluster has no token."""
        token = self.cm.get_admin_token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _admin_json(self, endpoint: str, body: dict[str, Any]) -> Any:
        return self._admin(endpoint, body).json()
