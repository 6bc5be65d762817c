"""The tenant SDK, as ``facegate.sdk``: the same module as the light ``facegate-sdk`` distribution's
``facegate_sdk`` (``clients/python``), which a tenant installs without the service's dependencies."""

from facegate_sdk import *  # noqa: F403 - the whole public surface, re-exported
from facegate_sdk import __all__ as __all__
from facegate_sdk import _api_error as _api_error
