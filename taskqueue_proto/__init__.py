"""Generated gRPC stubs for taskqueue.v1 (a leaf package: it imports nothing of this project).

Regenerate with ``python proto/generate.py``; tests/test_stubs.py checks they match the proto.
The service's full name comes from the descriptor, never from a string literal.
"""

from taskqueue_proto import taskqueue_pb2, taskqueue_pb2_grpc

SERVICE_NAME: str = taskqueue_pb2.DESCRIPTOR.services_by_name["TaskQueue"].full_name

__all__ = ["SERVICE_NAME", "taskqueue_pb2", "taskqueue_pb2_grpc"]
