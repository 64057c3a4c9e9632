"""moto's server with requests serialised, so conditional writes are atomic as in DynamoDB.

Stand-in for ``pytest_taskqueue._moto_server`` until it lands: moto's own threaded server lets two
requests interleave inside one conditional write, which breaks the idempotency race tests.

It also makes ``TransactWriteItems`` cost what the transaction touches: moto deep-copies every table
a transaction names (to roll back on failure), so each transaction costs O(table size); measured
here, 19 ms at 300 items and 310 ms at 1800. With requests serialised, remembering the touched
items and putting them back on failure is an equivalent rollback.

Run as ``python tests/reference/_serial_moto.py --host 127.0.0.1 --port N``.
"""

from __future__ import annotations

import argparse
import copy
import threading
from collections.abc import Callable, Iterable
from typing import Any

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


class _CopyExceptTables:
    """Stands in for the ``copy`` module inside moto's transaction: tables are not copied."""

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _patch_transactions() -> None:
    original = dynamodb_models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        touched: list[tuple[Any, DynamoType, DynamoType | None, Any]] = []
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            key = op.get("Key") or op.get("Item") or {}
            if table.hash_key_attr not in key:
                continue
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
            touched.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
        setattr(dynamodb_models, "copy", _CopyExceptTables)  # noqa: B010 - swap moto's module global
        try:
            original(self, transact_items)
        except BaseException:
            for table, hash_key, range_key, old in reversed(touched):
                if range_key is None:
                    if old is None:
                        table.items.pop(hash_key, None)
                    else:
                        table.items[hash_key] = old
                elif old is None:
                    table.items[hash_key].pop(range_key, None)
                else:
                    table.items[hash_key][range_key] = old
            raise
        finally:
            setattr(dynamodb_models, "copy", copy)  # noqa: B010

    dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def main() -> None:
    """Parse flags and serve moto until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    _patch_transactions()
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialised(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:
            # Materialise the body inside the lock: the work happens while iterating.
            return list(app(environ, start_response))

    run_simple(args.host, args.port, serialised, threaded=True)


if __name__ == "__main__":
    main()
