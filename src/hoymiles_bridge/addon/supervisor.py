"""A small client for the Home Assistant Supervisor API, as seen from inside the add-on.

The Supervisor is reachable at ``http://supervisor`` and accepts the per-start
token from the ``SUPERVISOR_TOKEN`` environment variable as a Bearer token.
The add-on uses these endpoints:

* ``GET /services/mqtt`` - the broker that the Mosquitto add-on registered.
  Right after a reboot the add-on may ask before Mosquitto has registered;
  the answer is then HTTP 400 ``Service not enabled``.
  :meth:`SupervisorClient.mqtt_service` keeps asking (capped exponential
  backoff with jitter) until a deadline, and only then gives up.
* ``GET /addons/self/info`` - the add-on's own state (ingress entry, port...);
  its ``slug`` makes the ingress panel's address, the devices' "Visit" link in
  Home Assistant (:meth:`SupervisorClient.ingress_panel_url`).
* ``POST /addons/self/options`` - replace the add-on's options (the web UI).
* ``POST /addons/self/restart`` - restart the add-on, so saved options apply.

Neither the token nor the broker password is ever logged or shown in a repr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
from types import TracebackType
from typing import Any, Final, Self

import aiohttp

from hoymiles_bridge.errors import HoymilesError
from hoymiles_bridge.mqtt.link import MqttSettings

_LOGGER = logging.getLogger(__name__)

DEFAULT_URL: Final = "http://supervisor"
#: How long :meth:`SupervisorClient.mqtt_service` waits for the MQTT service.
DEFAULT_DEADLINE: Final = 300.0
DEFAULT_BACKOFF_INITIAL: Final = 1.0
DEFAULT_BACKOFF_MAX: Final = 30.0
#: Each single HTTP request to the Supervisor must finish within this.
DEFAULT_REQUEST_TIMEOUT: Final = 10.0
#: The Supervisor's answer while no add-on provides the service (yet).
SERVICE_NOT_ENABLED: Final = "Service not enabled"
#: What a Supervisor slug may hold (Supervisor's own rule for add-on slugs).
_SLUG: Final = re.compile(r"[-_.A-Za-z0-9]{1,128}")
#: The ingress panel of an add-on, as a link inside Home Assistant's frontend.
INGRESS_PANEL_URL: Final = "homeassistant://hassio/ingress/{slug}"
#: Error messages from the Supervisor are cut to this length before they are shown.
_MAX_MESSAGE: Final = 200
_MAX_BACKOFF_EXPONENT: Final = 30


class SupervisorError(HoymilesError):
    """The Supervisor could not give us what we asked for."""


class SupervisorApiError(SupervisorError):
    """The Supervisor answered with an error. ``status`` is the HTTP status."""

    def __init__(self, message: str, *, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason

    @property
    def service_not_enabled(self) -> bool:
        return self.status == 400 and SERVICE_NOT_ENABLED.lower() in self.reason.lower()


class SupervisorUnreachableError(SupervisorError):
    """The Supervisor did not answer at all (refused, reset, timed out)."""


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _port(value: Any) -> int:
    """The service's port: a JSON number, or (as in the docs' example) a string of digits."""
    if isinstance(value, bool):
        raise SupervisorError("the Supervisor's MQTT service has an invalid port")
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise SupervisorError("the Supervisor's MQTT service has an invalid port") from None
    if not 1 <= port <= 65535:
        raise SupervisorError(f"the Supervisor's MQTT service has an invalid port ({port})")
    return port


def _optional_text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SupervisorError(f"the Supervisor's MQTT service has an invalid {key}")
    return value


def parse_mqtt_service(data: Any) -> MqttSettings:
    """Turn the ``data`` of ``GET /services/mqtt`` into broker settings."""
    if not isinstance(data, dict):
        raise SupervisorError("the Supervisor's MQTT service answer has no data")
    host = data.get("host")
    if not isinstance(host, str) or not host.strip():
        raise SupervisorError("the Supervisor's MQTT service has no host")
    ssl = data.get("ssl", False)
    if not isinstance(ssl, bool):
        raise SupervisorError("the Supervisor's MQTT service has an invalid ssl flag")
    protocol = data.get("protocol")
    if protocol not in (None, "3.1.1"):
        _LOGGER.debug("The MQTT service announces protocol %r; the bridge speaks 3.1.1", protocol)
    return MqttSettings(
        host=host.strip(),
        port=_port(data.get("port", 1883)),
        username=_optional_text(data, "username"),
        password=_optional_text(data, "password"),
        tls=ssl,
    )


class SupervisorClient:
    """Talks to the Supervisor with the add-on's token.

    Use as ``async with SupervisorClient() as supervisor:``; without ``async with``
    call :meth:`close` when done. The token defaults to ``SUPERVISOR_TOKEN``
    (or the legacy ``HASSIO_TOKEN``), the URL to
    ``HOYMILES_BRIDGE_SUPERVISOR_URL`` or ``http://supervisor``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        deadline: float = DEFAULT_DEADLINE,
        backoff_initial: float = DEFAULT_BACKOFF_INITIAL,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        if base_url is None:
            base_url = os.environ.get("HOYMILES_BRIDGE_SUPERVISOR_URL", DEFAULT_URL)
        if token is None:
            token = os.environ.get("SUPERVISOR_TOKEN") or os.environ.get("HASSIO_TOKEN")
        if not token:
            raise SupervisorError(
                "SUPERVISOR_TOKEN is not set: the Supervisor API is only reachable from "
                "inside the add-on container (set mqtt.host to use a broker directly)"
            )
        if deadline <= 0 or backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("deadline and backoff must be positive, backoff_max >= initial")
        self.base_url = base_url.rstrip("/")
        self.deadline = deadline
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.request_timeout = request_timeout
        self.__token = token
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"SupervisorClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.__token}"},
                timeout=aiohttp.ClientTimeout(total=self.request_timeout),
            )
        return self._session

    async def request(self, method: str, path: str, payload: Any = None) -> Any:
        """One API call; returns the envelope's ``data`` (``None`` when absent)."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        try:
            async with self._client().request(method, url, json=payload) as response:
                status = response.status
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
        except (aiohttp.ClientError, TimeoutError) as err:
            reason = _short(str(err)) or type(err).__name__
            raise SupervisorUnreachableError(
                f"the Supervisor at {self.base_url} did not answer {method} {path}: {reason}"
            ) from None
        envelope = body if isinstance(body, dict) else {}
        if status == 200 and envelope.get("result") == "ok":
            return envelope.get("data")
        reason = _short(str(envelope.get("message") or "")) or f"HTTP {status}"
        raise SupervisorApiError(
            f"the Supervisor refused {method} {path}: {reason} (HTTP {status})",
            status=status,
            reason=reason,
        )

    async def mqtt_service(self) -> MqttSettings:
        """The broker the Supervisor offers, waiting for it up to :attr:`deadline` seconds."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.deadline
        attempt = 0
        while True:
            try:
                data = await self.request("GET", "/services/mqtt")
            except SupervisorApiError as err:
                if err.status == 403:
                    raise SupervisorError(
                        "the Supervisor does not give this add-on the MQTT service "
                        "(config.yaml needs 'services: [mqtt:want]')"
                    ) from None
                if not err.service_not_enabled:
                    raise
                problem = (
                    "no MQTT broker is registered with the Supervisor yet (Service not enabled)"
                )
            except SupervisorUnreachableError as err:
                problem = str(err)
            else:
                settings = parse_mqtt_service(data)
                if attempt:
                    _LOGGER.info("The MQTT service is ready after %d tries", attempt + 1)
                return settings
            remaining = give_up - loop.time()
            if remaining <= 0:
                raise SupervisorError(
                    f"gave up waiting for the MQTT service after {self.deadline:g} s: {problem}. "
                    "Install and start the Mosquitto broker add-on, "
                    "or set mqtt.host to use another broker."
                )
            delay = min(remaining, self._backoff(attempt))
            if attempt == 0:
                _LOGGER.info(
                    "Waiting for the MQTT service: %s; retrying for up to %.0f s",
                    problem,
                    remaining,
                )
            else:
                _LOGGER.debug(
                    "MQTT service still unavailable (%s); next try in %.1f s", problem, delay
                )
            attempt += 1
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """Capped exponential backoff with "equal jitter": between half and all of the step."""
        exponent = min(attempt, _MAX_BACKOFF_EXPONENT)
        step = min(self.backoff_max, self.backoff_initial * 2**exponent)
        return random.uniform(step / 2, step)

    async def addon_info(self) -> dict[str, Any]:
        """``GET /addons/self/info``: the add-on's own description and state."""
        data = await self.request("GET", "/addons/self/info")
        if not isinstance(data, dict):
            raise SupervisorError("the Supervisor's add-on info has no data")
        return data

    async def ingress_panel_url(self) -> str | None:
        """``homeassistant://hassio/ingress/<slug>``, from the add-on's info; None if unknown.

        The full slug (``<repository>_<slug>``, ``local_<slug>`` for a local
        add-on) is what the panel's address needs. A Supervisor that does not
        answer or sends no usable slug costs the link, not the start.
        """
        try:
            info = await self.addon_info()
        except SupervisorError as err:
            _LOGGER.debug("No ingress panel link for the devices: %s", err)
            return None
        slug = info.get("slug")
        if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
            _LOGGER.debug("No ingress panel link for the devices: the add-on info has no slug")
            return None
        return INGRESS_PANEL_URL.format(slug=slug)

    async def set_options(self, options: dict[str, Any]) -> None:
        """``POST /addons/self/options``: replace the options (they apply on the next start)."""
        await self.request("POST", "/addons/self/options", {"options": options})

    async def restart(self) -> None:
        """``POST /addons/self/restart``: the Supervisor stops and starts the add-on.

        The real Supervisor answers only once the add-on is running again, so
        the caller (this very process) may be stopped before the answer comes.
        """
        await self.request("POST", "/addons/self/restart")


__all__ = [
    "DEFAULT_DEADLINE",
    "INGRESS_PANEL_URL",
    "SERVICE_NOT_ENABLED",
    "SupervisorApiError",
    "SupervisorClient",
    "SupervisorError",
    "SupervisorUnreachableError",
    "parse_mqtt_service",
]
