"""Make moto's ``TransactWriteItems`` and key ``Query`` cost what they touch, not the table size.

moto (5.x) backs up every table a transaction names with ``copy.deepcopy`` before applying it, to
roll back if a condition fails. That is O(items in the table) per transaction: measured here, 19 ms
at 300 items and 310 ms at 1,800, so a conformance run, which writes thousands of events into one
table, slows until requests time out. The harness serialises moto's requests (``_moto_server``), so
remembering just the items the transaction names and putting them back on failure is an equivalent
rollback. The observable behaviour (all or nothing, ``TransactionCanceledException`` with its
reasons) is moto's own; only the backup changes.

``install_partition_queries`` does the same for queries: moto answers a ``Query`` on a table's key by
sorting *every* item of the table and then keeping one partition (about 45 ms at 8,000 items here);
the patched query looks at the one partition instead (same results, same order), leaves index
queries alone, and steps aside if moto's ``Table.query`` signature is not the one it knows.

Two caches remember pure functions moto recomputes on every request: ``install_condition_cache`` the
syntax tree of a ``ConditionExpression`` (with the names and values it uses; the tree's nodes are
never changed after they are built), ``install_method_name_cache`` the action names of a response
class (moto lists them with ``inspect.getmembers`` per request). Measured in-process (best of four,
shared machine): the reference's submit transaction from 3.1 to 1.5 ms of CPU, a GetItem from 2.3 to 2.0.

The transaction patch checks the moto internals it relies on and leaves moto untouched (with one
line on stderr) when they are not there, so a moto upgrade degrades speed, not correctness.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

__all__ = [
    "install_condition_cache",
    "install_method_name_cache",
    "install_partition_queries",
    "patch_transactions",
]


class _CopyExceptTables:
    """Stands in for the ``copy`` module inside moto's transaction code: tables are not copied."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, self._table_type) else copy.deepcopy(value, memo)


def patch_transactions() -> bool:
    """Install the per-item rollback; return False (and say why on stderr) when it cannot apply."""
    try:
        import moto.dynamodb.models as models
        from moto.dynamodb.models.dynamo_type import DynamoType
        from moto.dynamodb.models.table import Table
    except ImportError as exc:  # pragma: no cover - moto layout changed
        print(f"moto transaction patch not applied: {exc}", file=sys.stderr)
        return False
    backend = getattr(models, "DynamoDBBackend", None)
    original = getattr(backend, "transact_write_items", None)
    if backend is None or original is None or getattr(models, "copy", None) is not copy:
        print("moto transaction patch not applied: moto internals differ", file=sys.stderr)
        return False
    no_table_copies = _CopyExceptTables(Table)

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        touched: list[tuple[Any, Any, Any, Any]] = []
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            key = op.get("Key") or op.get("Item") or {}
            if table is None or table.hash_key_attr not in key:
                continue
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
            old = copy.deepcopy(table.get_item(hash_key, range_key))
            touched.append((table, hash_key, range_key, old))
        setattr(models, "copy", no_table_copies)  # noqa: B010 - swap moto's module global
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
                    table.items.get(hash_key, {}).pop(range_key, None)
                else:
                    table.items[hash_key][range_key] = old
            raise
        finally:
            setattr(models, "copy", copy)  # noqa: B010

    backend.transact_write_items = transact_write_items
    return True


_KNOWN_QUERY_PARAMETERS = [
    "self",
    "hash_key",
    "range_comparison",
    "range_objs",
    "limit",
    "exclusive_start_key",
    "scan_index_forward",
    "projection_expressions",
    "index_name",
]


def install_partition_queries() -> bool:
    """Make moto's base-table ``Query`` read one partition, not the whole table; True if installed.

    Works by shadowing ``Table.all_items`` on the table object for the duration of the call, which
    is only safe while no other request runs (``SerialisedApp``).
    """
    import inspect

    from moto.dynamodb.models.table import Table

    original = Table.query
    if getattr(original, "_taskqueue_partition_query", False):
        return True
    if (
        list(inspect.signature(original).parameters)[: len(_KNOWN_QUERY_PARAMETERS)]
        != _KNOWN_QUERY_PARAMETERS
    ):
        return False
    index_position = _KNOWN_QUERY_PARAMETERS.index("index_name") - 2  # in *args, after self and hash_key

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[index_position] if len(args) > index_position else kwargs.get("index_name")
        if index_name or hash_key is None:
            return original(self, hash_key, *args, **kwargs)
        partition = self.items.get(hash_key)  # .get: the table's defaultdict must not grow
        if partition is None:
            items: list[Any] = []
        elif self.range_key_attr:
            items = list(partition.values())
        else:
            items = [partition]
        self.all_items = lambda: items
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    query._taskqueue_partition_query = True  # type: ignore[attr-defined]
    setattr(Table, "query", query)  # noqa: B010 (a method replaced on purpose)
    return True


#: Parsed condition expressions kept; the cache is emptied when it reaches this size.
_CONDITION_CACHE_SIZE = 4096


def install_condition_cache() -> bool:
    """Parse each distinct condition expression (with its names and values) once; True if installed.

    moto parses a ``ConditionExpression`` when it validates the request and again when it applies
    it, about a millisecond each. The parse is a pure function of the expression, the attribute
    names and the attribute values, so its result (and the names and values it found, which moto
    checks for unused ones) is remembered under those three. Failed parses are not remembered.
    """
    import json

    from moto.dynamodb.comparisons import ConditionExpressionParser

    original = ConditionExpressionParser.parse
    if getattr(original, "_taskqueue_cached", False):
        return True
    if not (hasattr(ConditionExpressionParser, "__init__") and callable(original)):
        return False
    cache: dict[tuple[Any, str, str], tuple[Any, list[str], list[str]]] = {}

    def parse(self: Any) -> Any:
        try:
            key = (
                self.condition_expression,
                json.dumps(self.expression_attribute_names, sort_keys=True),
                json.dumps(self.expression_attribute_values, sort_keys=True),
            )
        except (TypeError, ValueError):
            return original(self)
        hit = cache.get(key)
        if hit is not None:
            tree, names, values = hit
            self.expr_attr_names_found = list(names)
            self.expr_attr_values_found = list(values)
            return tree
        tree = original(self)
        if len(cache) >= _CONDITION_CACHE_SIZE:
            cache.clear()
        cache[key] = (tree, list(self.expr_attr_names_found), list(self.expr_attr_values_found))
        return tree

    parse._taskqueue_cached = True  # type: ignore[attr-defined]
    setattr(ConditionExpressionParser, "parse", parse)  # noqa: B010 (a method replaced on purpose)
    return True


def install_method_name_cache() -> bool:
    """List a response class's action methods once, not on every request; True if installed."""
    import functools

    import moto.core.responses as responses

    original = getattr(responses, "method_names_from_class", None)
    if original is None:
        return False
    if getattr(original, "_taskqueue_cached", False):
        return True
    cached = functools.lru_cache(maxsize=None)(original)

    def method_names_from_class(clazz: object) -> list[str]:
        return list(cached(clazz))

    method_names_from_class._taskqueue_cached = True  # type: ignore[attr-defined]
    setattr(responses, "method_names_from_class", method_names_from_class)  # noqa: B010
    return True
