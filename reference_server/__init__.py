"""Reference implementation of the taskqueue.v1 contract: gRPC API and worker on DynamoDB + SQS.

Run it with ``python -m reference_server serve|worker|all``. It imports only the generated stubs
(``taskqueue_proto``) and third-party libraries, never the toolkit.
"""

from reference_server.config import Config, Mode, parse_args
from reference_server.server import run

__all__ = ["Config", "Mode", "parse_args", "run"]
