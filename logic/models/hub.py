"""Requests to the Hugging Face hub that always end, and one sentence for each way they fail.

huggingface_hub makes some requests with no timeout at all (a repository lookup waits forever on a
hub that accepts the connection and never answers) and retries others for minutes. Every request
it makes goes through a transport here that caps the connect, read, write and pool timeouts at
``hub_timeout()`` seconds (``ATELIER_HUB_TIMEOUT``, default 20, at most 30). Before a model that
is not in the cache is loaded, ``check_on_hub`` asks the hub once whether it exists, so a typo, a
missing network and a silent hub are told apart and reported before any run folder exists.
"""

from __future__ import annotations

import logging
import os
import threading

from ..errors import UserError

log = logging.getLogger(__name__)

TIMEOUT_ENV = "ATELIER_HUB_TIMEOUT"
DEFAULT_TIMEOUT_S = 20.0
MAX_TIMEOUT_S = 30.0

_installed = threading.Lock()
_INSTALLED: list[bool] = []


def hub_timeout() -> float:
    """Seconds a hub request may wait to connect or for the next bytes (``ATELIER_HUB_TIMEOUT``)."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    except ValueError:
        value = DEFAULT_TIMEOUT_S
    return min(max(value, 0.1), MAX_TIMEOUT_S) if value == value else DEFAULT_TIMEOUT_S


def install_timeouts() -> None:
    """Route huggingface_hub's requests through the capped transport (once per process)."""
    with _installed:
        if _INSTALLED:
            return
        import huggingface_hub

        huggingface_hub.set_client_factory(_client_with_timeouts)
        _INSTALLED.append(True)


def _client_with_timeouts():
    import httpx2
    from huggingface_hub.utils import _http

    hooks = getattr(_http, "hf_request_event_hook", None)
    timeout = hub_timeout()
    return httpx2.Client(event_hooks={"request": [hooks]} if hooks else {}, follow_redirects=True,
                         timeout=httpx2.Timeout(timeout), transport=_capped_transport())


def _capped_transport():
    import httpx2

    class CappedTransport(httpx2.HTTPTransport):
        """Caps each request's timeouts, including the ``None`` (wait forever) some calls pass."""

        def handle_request(self, request):
            limit = hub_timeout()
            asked = request.extensions.get("timeout") or {}
            request.extensions["timeout"] = {key: min(asked.get(key) or limit, limit)
                                             for key in ("connect", "read", "write", "pool")}
            return super().handle_request(request)

    return CappedTransport()


def check_on_hub(repo_id: str, what: str, how_to_get: str) -> None:
    """Ask the hub whether ``repo_id`` exists; a sentence for a typo, no network, or a silent hub.

    ``what`` names it for people ("The model x/y"); ``how_to_get`` ends the no-network sentence.
    """
    install_timeouts()
    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=hub_timeout())
    except GatedRepoError:
        raise UserError(f"{what} is gated on the hub: accept its licence on huggingface.co and log in with "
                        "`hf auth login`, then try again.") from None
    except RepositoryNotFoundError:
        raise UserError(f"{what} was not found on the hub: check the spelling of {repo_id!r} "
                        "(owner/name, as on huggingface.co).") from None
    except httpx2.TimeoutException:
        raise UserError(f"{what} is not in the cache and the hub did not answer within {hub_timeout():g} s: "
                        f"check the network (or HF_ENDPOINT), or {how_to_get}.") from None
    except (httpx2.TransportError, OfflineModeIsEnabled):
        raise UserError(f"{what} cannot be loaded (no network and not in the cache): {how_to_get}.") from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        raise UserError(f"{what} could not be looked up: the hub answered with error {status}; try again "
                        f"later, or {how_to_get}.") from None
