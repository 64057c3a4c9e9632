"""The per-item rollback keeps TransactWriteItems all-or-nothing (moto in-process, patched)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pytest_taskqueue._moto_patches import patch_transactions


@pytest.fixture
def table() -> Iterator[Any]:
    with mock_aws():
        assert patch_transactions()
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def _put(pk: str, sk: str, **extra: Any) -> dict[str, Any]:
    return {"Put": {"TableName": "t", "Item": {"pk": {"S": pk}, "sk": {"S": sk}}, **extra}}


def _keys(client: Any) -> set[tuple[str, str]]:
    items = client.scan(TableName="t")["Items"]
    return {(i["pk"]["S"], i["sk"]["S"]) for i in items}


def test_a_failed_condition_rolls_back_every_item(table: Any) -> None:
    table.put_item(TableName="t", Item={"pk": {"S": "a"}, "sk": {"S": "1"}, "v": {"S": "old"}})
    table.put_item(TableName="t", Item={"pk": {"S": "b"}, "sk": {"S": "1"}})
    with pytest.raises(table.exceptions.TransactionCanceledException):
        table.transact_write_items(
            TransactItems=[
                _put("new", "1"),
                {
                    "Update": {
                        "TableName": "t",
                        "Key": {"pk": {"S": "a"}, "sk": {"S": "1"}},
                        "UpdateExpression": "SET v = :n",
                        "ExpressionAttributeValues": {":n": {"S": "new"}},
                    }
                },
                _put("b", "1", ConditionExpression="attribute_not_exists(pk)"),
            ]
        )
    assert _keys(table) == {("a", "1"), ("b", "1")}
    item = table.get_item(TableName="t", Key={"pk": {"S": "a"}, "sk": {"S": "1"}})["Item"]
    assert item["v"]["S"] == "old"


def test_a_passing_transaction_applies_every_item(table: Any) -> None:
    table.transact_write_items(TransactItems=[_put("x", "1"), _put("x", "2"), _put("y", "1")])
    assert _keys(table) == {("x", "1"), ("x", "2"), ("y", "1")}


def test_cached_condition_parses_decide_like_fresh_ones(table: Any) -> None:
    """The same condition text, names and values parsed once: every later use still decides per item."""
    from pytest_taskqueue._moto_patches import install_condition_cache, install_method_name_cache

    assert install_condition_cache() and install_method_name_cache()
    for _ in range(3):  # the second and third rounds are cache hits
        table.put_item(
            TableName="t",
            Item={"pk": {"S": "c"}, "sk": {"S": "1"}, "v": {"N": "1"}},
            ConditionExpression="attribute_not_exists(pk) OR #v = :one",
            ExpressionAttributeNames={"#v": "v"},
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
    with pytest.raises(table.exceptions.ConditionalCheckFailedException):
        table.put_item(
            TableName="t",
            Item={"pk": {"S": "c"}, "sk": {"S": "1"}},
            ConditionExpression="attribute_not_exists(pk) OR #v = :one",
            ExpressionAttributeNames={"#v": "v"},
            ExpressionAttributeValues={":one": {"N": "2"}},  # other values: another parse
        )
    for _ in range(2):  # an unused name is rejected on a cache hit too
        with pytest.raises(table.exceptions.ClientError, match="unused"):
            table.put_item(
                TableName="t",
                Item={"pk": {"S": "d"}, "sk": {"S": "1"}},
                ConditionExpression="attribute_not_exists(pk)",
                ExpressionAttributeNames={"#spare": "x"},
            )


def test_cached_update_expressions_memoised_walks_and_tree_copies_apply_each_update(table: Any) -> None:
    """One update expression parsed once: each use still applies its own values to its own item, and
    a bad expression is rejected every time."""
    from pytest_taskqueue._moto_patches import (
        install_traversal_memo,
        install_tree_copy,
        install_update_expression_cache,
    )

    assert install_update_expression_cache() and install_traversal_memo() and install_tree_copy()
    for n in range(3):
        table.update_item(
            TableName="t",
            Key={"pk": {"S": f"u{n % 2}"}, "sk": {"S": "1"}},
            UpdateExpression="SET #v = if_not_exists(#v, :zero) + :n, tag = :tag",
            ExpressionAttributeNames={"#v": "v"},
            ExpressionAttributeValues={":zero": {"N": "0"}, ":n": {"N": str(n + 1)}, ":tag": {"S": f"t{n}"}},
        )
    items = {i["pk"]["S"]: i for i in table.scan(TableName="t")["Items"]}
    assert (items["u0"]["v"], items["u0"]["tag"]) == ({"N": "4"}, {"S": "t2"})  # 1 + 3
    assert (items["u1"]["v"], items["u1"]["tag"]) == ({"N": "2"}, {"S": "t1"})
    for _ in range(2):
        with pytest.raises(table.exceptions.ClientError, match="Syntax error"):
            table.update_item(
                TableName="t", Key={"pk": {"S": "u0"}, "sk": {"S": "1"}}, UpdateExpression="SET = :x"
            )


def test_a_tree_copy_is_the_deep_copy_moto_would_make(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same classes, attributes, leaves and parent links as ``copy.deepcopy``, sharing no node, and
    made without it (the fallback is not what is compared)."""
    import copy

    import moto.dynamodb.parsing.validators as validators
    from moto.dynamodb.parsing.ast_nodes import Node  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    from pytest_taskqueue._moto_patches import install_tree_copy

    assert install_tree_copy()

    def shape(node: Any, parent: Any = None) -> Any:
        if not isinstance(node, Node):
            return repr(node)
        assert node.parent is parent
        children = None if node.children is None else [shape(child, node) for child in node.children]
        return type(node).__name__, list(vars(node)), node.type, children

    def nodes(node: Any) -> list[Any]:
        return [node] + [n for child in node.children or [] if isinstance(child, Node) for n in nodes(child)]

    for text in (
        "SET #s = :s, #seq = :seq, updated_at = :now",
        "SET a = if_not_exists(a, :z) + :one, b[1].c = list_append(b[1].c, :l) "
        "REMOVE d, e[2] ADD f :n DELETE g :s",
    ):
        tree = UpdateExpressionParser.make(text)
        theirs = copy.deepcopy(tree)
        with monkeypatch.context() as patched:
            patched.setattr(copy, "deepcopy", lambda *_: pytest.fail("copy.deepcopy was used"))
            ours = getattr(validators, "deepcopy")(tree)  # noqa: B009 - the module global moto calls
        assert shape(ours) == shape(theirs) == shape(tree)
        assert not {id(n) for n in nodes(ours)} & {id(n) for n in nodes(tree)}


def test_remembered_update_checks_still_refuse_what_they_refused(table: Any) -> None:
    """An update's text-only checks passed once are skipped for the same text, names and key; other
    names, or an update that fails a check, are checked (and refused) every time."""
    from pytest_taskqueue._moto_patches import install_update_check_memo, install_update_expression_cache

    assert install_update_expression_cache() and install_update_check_memo()
    key = {"pk": {"S": "k"}, "sk": {"S": "1"}}

    def update(expression: str, **names: str) -> None:
        extra = {"ExpressionAttributeNames": names} if names else {}
        table.update_item(
            TableName="t",
            Key=key,
            UpdateExpression=expression,
            ExpressionAttributeValues={":v": {"S": "x"}},
            **extra,
        )

    for _ in range(2):
        update("SET #a = :v", **{"#a": "other"})
    for _ in range(2):
        with pytest.raises(table.exceptions.ClientError, match="Cannot update attribute pk"):
            update("SET #a = :v", **{"#a": "pk"})
        with pytest.raises(table.exceptions.ClientError, match="overlap"):
            update("SET a.b = :v, a = :v")
        with pytest.raises(table.exceptions.ClientError, match="SET"):
            update("SET a = :v SET b = :v")
    item = table.get_item(TableName="t", Key=key)["Item"]
    assert item == {**key, "other": {"S": "x"}}
