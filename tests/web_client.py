"""A small HTTP client for the bridge's web server in tests: it keeps every body it saw.

``assert_no_secret`` then checks that none of them contains a secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from hoymiles_bridge.web.api import CSRF_HEADER, CSRF_VALUE

#: What the web UI sends with every POST.
HEADERS = {CSRF_HEADER: CSRF_VALUE}


@dataclass
class WebClient:
    session: aiohttp.ClientSession
    base: str
    seen: list[str] = field(default_factory=list)

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        """``(status, JSON body)``; the text itself when the body is not JSON."""
        async with self.session.get(self.base + path, **kwargs) as response:
            text = await response.text()
        self.seen.append(text)
        try:
            return response.status, json.loads(text)
        except json.JSONDecodeError:
            return response.status, text

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        headers = HEADERS if headers is None else headers
        async with self.session.post(self.base + path, json=body, headers=headers) as response:
            text = await response.text()
        self.seen.append(text)
        return response.status, json.loads(text)

    def assert_no_secret(self, *secrets: str) -> None:
        for text in self.seen:
            for secret in secrets:
                assert secret not in text and secret.lower() not in text.lower()
