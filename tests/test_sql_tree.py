"""SQL filters as trees (featurekit/spec/sql.py): what is emitted means what Lance reads in
what was written, filters combine without reaching into each other, and a text that is not
one expression says where it stops being one."""
import random

import lance
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurekit.curation.rowfilter import slice_filter
from featurekit.spec.sql import SqlSyntaxError, all_of, any_of, check_filter, parse, sql_columns
from featurekit.table.metadata import failed_filter, slice_todo_filter, todo_filter

# Mixed operators without parentheses: the emitted tree must group them as DataFusion does.
MIXED = [
    "a = 1 OR b = 2 AND c", "NOT a = 1 AND b = 2", "NOT c OR c", "a + b * 2 > 3", "a - b - 1 = 0",
    "a * 2 = b OR a IS NULL", "a = 1 IS NULL", "c = a > 1", "s LIKE 'x%' OR a = 1 AND b = 0", "NOT s LIKE 'x%'",
    "a BETWEEN 0 AND 2 OR b = 5", "a BETWEEN 0 AND 1 + 1", "a IN (1, 2) AND b NOT IN (5)", "-a * 2 < -1",
    "a % 2 = 0 OR b % 3 = 1", "s || 'x' = 'xx' AND a > 0", "a IS DISTINCT FROM b AND c", "c IS TRUE OR a = 1",
    "NOT a IN (1) OR b = 2", "a::bigint + 1 > b", "a = 1 AND b = 2 OR c AND a = 0 OR NOT c",
    "(a = 1 OR b = 2) AND c", "a > 0 AND NOT (b > 1 OR c)", "-(a - 1) > 0", "b - a * 2 + 1 > 2 - a",
    "a / 2 * 2 = a", "a <> b AND a != 3", "a BETWEEN b AND 3 AND c", "NOT a BETWEEN 0 AND 1",
    "a NOT BETWEEN 0 AND 1 OR c", "s ILIKE 'X%' OR c", "a > 1 AND b > 1 AND c OR s = 'x'", "- a + b > 0",
    "CAST(s AS STRING) = 'x' OR a = 2", "a > 1 -- OR TRUE", "a /* OR TRUE */ > 1",
    "s = '--' OR a - -1 = 0", "starts_with(s, 'a') AND a > 0 OR b = 1", "l[1] = 'x' OR a = 3",
]


@pytest.fixture(scope="module")
def data():
    rng = random.Random(0)
    n = 300
    table = pa.table({
        "a": pa.array([rng.choice([None, 0, 1, 2, 3, -1]) for _ in range(n)], pa.int32()),
        "b": pa.array([rng.choice([None, 0, 1, 2, 5]) for _ in range(n)], pa.int64()),
        "c": pa.array([rng.choice([None, True, False]) for _ in range(n)], pa.bool_()),
        "s": pa.array([rng.choice([None, "x", "xy", "ab", "a%"]) for _ in range(n)]),
        "l": pa.array([rng.choice([None, ["x"], ["y", "x"]]) for _ in range(n)], pa.list_(pa.string())),
    })
    return lance.write_dataset(table, "memory://featurekit-test-sql-tree")


def rows(ds, expr: str) -> list[int] | str:
    """The rows `expr` selects, or "refused" (a grouping can make a filter ill-typed: then both must be)."""
    try:
        return ds.scanner(filter=expr, columns=[], with_row_address=True).to_table().column(0).to_pylist()
    except ValueError:
        return "refused"


@pytest.mark.parametrize("expr", MIXED)
def test_the_emitted_tree_selects_what_lance_selects_for_the_text(data, expr):
    emitted = parse(expr).sql
    assert rows(data, emitted) == rows(data, expr)
    assert parse(emitted).sql == emitted  # emitting is a fixed point


def test_combined_filters_cannot_reach_into_each_other(data):
    scope = "a = 1"
    user = "b = 2 OR c"
    combined = all_of(scope, user)
    assert combined == "((a = 1) AND ((b = 2) OR c))"
    assert set(rows(data, combined)) == set(rows(data, scope)) & set(rows(data, user))
    assert set(rows(data, any_of(scope, user))) == set(rows(data, scope)) | set(rows(data, user))
    assert all_of(None, user, "") == "((b = 2) OR c)" and all_of() is None
    assert all_of(scope, "b = 2 -- ) OR (TRUE") == "((a = 1) AND (b = 2))"  # a comment ends with its text
    for hostile in ("b = 2) OR (1=1", "b = 2) OR TRUE OR (a = 1", "1=1 /*", "b = 2; DROP TABLE t"):
        with pytest.raises(SqlSyntaxError):
            all_of(scope, hostile)


def test_every_filter_featurekit_makes_parses_and_keeps_its_meaning(data):
    made = [todo_filter("_fk_f", "ab12"), slice_todo_filter("_fk_s", "cd34"), failed_filter("_fk_f", "ab12"),
            slice_filter("s"), slice_filter("s", "train"), "a IN (1, 2, 3) AND s IS NOT NULL"]
    for expr in made:
        tree = parse(expr)
        assert parse(tree.sql).sql == tree.sql
    assert rows(data, parse(made[-1]).sql) == rows(data, made[-1])


@pytest.mark.parametrize("expr,reason", [
    ("qlen > 1000) OR (1=1", "')' closes a parenthesis that was never opened (at character 12)"),
    ("qlen >", "'>' needs an expression after it, found the end of the expression (at character 7)"),
    ("qlen > 1 AND", "'AND' needs an expression after it, found the end of the expression (at character 13)"),
    ("(qlen > 1", "expected ')' to close the '(' at character 1, found the end of the expression (at character 10)"),
    ("qlen > 1 qlen", "'qlen' follows a complete expression; join the parts with AND or OR (at character 10)"),
    ("qlen > 'open", "a string starting here is never closed (') (at character 8)"),
    ("qlen > 1; x", "a filter is one SQL expression; remove the ';' (at character 9)"),
    ("", "the expression is empty (at character 1)"),
    ("qlen > 1 /* open", "a comment starting here is never closed (*/) (at character 10)"),
    ("qlen IS 3", "expected NULL, TRUE, FALSE or DISTINCT FROM after IS, found '3' (at character 9)"),
])
def test_a_text_that_is_not_one_expression_says_where(expr, reason):
    with pytest.raises(SqlSyntaxError) as info:
        parse(expr)
    assert str(info.value) == f"cannot parse {expr}: {reason}"


def test_columns_are_read_from_the_tree():
    assert sql_columns("length(question) > 3 AND `my col` = 'a b' AND s.x IS NULL AND date '2020-01-01' < d") == \
        ["question", "my col", "s", "d"]
    assert sql_columns("CAST(n AS BIGINT) > 1 AND lower(\"Q\") LIKE 'a%'") == ["n", "Q"]


def test_deep_nesting_and_long_texts_are_refused_not_recursed():
    with pytest.raises(SqlSyntaxError, match="nested deeper than"):
        parse("(" * 5000 + "1" + ")" * 5000)
    with pytest.raises(SqlSyntaxError, match="longer than"):
        parse("a = 1 AND " * 20000 + "b = 2")


def test_check_filter_plans_on_an_empty_table_then_evaluates_on_ordinary_values():
    cols = {"n": pa.int32(), "img": pa.binary(), "q": pa.string()}
    assert check_filter("n > 3 AND q LIKE 'w%'", cols) is None
    assert "Divide by zero error" in check_filter("n / 0 > 1", {"n": pa.int32()})
    assert "non UTF-8" in check_filter("length(img) > 3", {"img": pa.binary()})
    assert check_filter("CAST(q AS INT) > 1", {"q": pa.string()}) is None  # text holding numbers is fine
    assert check_filter("n > 'long'", {"n": pa.int32()}).startswith("invalid SQL filter: Error resolving filter")


def test_nearly_every_mixed_filter_runs(data):
    """The comparison above means something only for filters Lance runs."""
    assert sum(rows(data, e) == "refused" for e in MIXED) <= 3


def test_nested_calls_and_operators_stop_at_the_depth_limit():
    for text in ("f(" * 3000 + "1" + ")" * 3000, "NOT " * 3000 + "c", "- " * 3000 + "1", "a[" * 3000 + "1" + "]" * 3000):
        with pytest.raises(SqlSyntaxError, match="nested"):
            parse(text)


SQLISH = st.lists(st.sampled_from(list("abcq_019 ().,'\"`[]<>=!+-*/%|:;") + [
    "AND ", "OR ", "NOT ", "IS ", "NULL ", "IN ", "BETWEEN ", "LIKE ", "CAST", " AS ", "CASE ", "WHEN ", "THEN ",
    "END ", "DISTINCT FROM ", "date "]), max_size=30).map("".join)


@settings(derandomize=True, database=None, deadline=None, max_examples=400)
@given(SQLISH)
def test_any_text_parses_to_a_stable_tree_or_a_syntax_error(text):
    try:
        tree = parse(text)
    except SqlSyntaxError as exc:
        assert 0 <= exc.at <= len(text)
        return
    assert parse(tree.sql) == parse(parse(tree.sql).sql)
    assert set(tree.columns()) == set(parse(tree.sql).columns())
