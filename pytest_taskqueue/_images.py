"""The default Docker images of ``--taskqueue-backend=docker`` (docs/docker.md).

A leaf module, so that option parsing (the plugin's and ``taskqueue-harness up``'s) can name the
defaults without importing the Docker code.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_DYNAMODB_IMAGE", "DEFAULT_ELASTICMQ_IMAGE", "DEFAULT_IMAGES", "DEFAULT_TOXIPROXY_IMAGE"]

DEFAULT_DYNAMODB_IMAGE: Final = "amazon/dynamodb-local:2.5.2"
DEFAULT_ELASTICMQ_IMAGE: Final = "softwaremill/elasticmq-native:1.6.16"
DEFAULT_TOXIPROXY_IMAGE: Final = "ghcr.io/shopify/toxiproxy:2.12.0"

DEFAULT_IMAGES: Final = (
    ("dynamodb", DEFAULT_DYNAMODB_IMAGE),
    ("elasticmq", DEFAULT_ELASTICMQ_IMAGE),
    ("toxiproxy", DEFAULT_TOXIPROXY_IMAGE),
)
"""``(role, default image)`` in the order the ``--<role>-image`` options are declared."""
