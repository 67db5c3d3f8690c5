"""Label selector parsing, canonical printing, validation and matching, against the grammar's examples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics_adapter.selectors import SelectorError, parse_selector


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        pytest.param("", "", id="empty selects everything"),
        pytest.param("x=a", "x=a", id="equals"),
        pytest.param("x==a", "x==a", id="double equals kept"),
        pytest.param("x!=a", "x!=a", id="not equals"),
        pytest.param("x", "x", id="exists"),
        pytest.param("!x", "!x", id="does not exist"),
        pytest.param("x>1", "x>1", id="greater than"),
        pytest.param("x<10", "x<10", id="less than"),
        pytest.param("x in (b,a,a)", "x in (a,b)", id="in values sorted and deduplicated"),
        pytest.param("x notin (b, a)", "x notin (a,b)", id="notin with spaces"),
        pytest.param("z=1,a=2", "a=2,z=1", id="requirements sorted by key"),
        pytest.param("x=", "x=", id="empty value after equals"),
        pytest.param("x in ()", "x in ()", id="empty set is the empty value"),
        pytest.param("x in (a,,b)", "x in (,a,b)", id="empty entry inside a set"),
        pytest.param("x in (,a)", "x in (,a)", id="leading empty entry"),
        pytest.param("x in (a,)", "x in (,a)", id="trailing empty entry"),
        pytest.param("x in (a,,,)", "x in (,a)", id="odd run of commas before the close"),
        pytest.param("x in (a,,)", None, id="even run of commas before the close"),
        pytest.param("x in (,,)", None, id="two commas alone"),
        pytest.param("x==", "x==", id="empty value after double equals"),
        pytest.param("x!=", "x!=", id="empty value after not equals"),
        pytest.param("x>007", "x>007", id="comparison keeps the literal"),
        pytest.param("x>", None, id="comparison needs a value"),
        pytest.param("x>" + "9" * 19, None, id="comparison beyond int64"),
        pytest.param("x=(a)", None, id="set after equals"),
        pytest.param("!x,y", "!x,y", id="does not exist then exists"),
        pytest.param("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()", id="Parse doc example"),
        pytest.param("in in (in)", "in in (in)", id="in as key and value"),
        pytest.param(" x = a , y ", "x=a,y", id="whitespace between tokens"),
        pytest.param("example.com/model=llama-3.1", "example.com/model=llama-3.1", id="prefixed key"),
        pytest.param("env in (a,b),queue=heavy", "env in (a,b),queue=heavy", id="HPA canonical example"),
        pytest.param("x=(", None, id="paren after equals"),
        pytest.param("!x=a", None, id="negation with a value"),
        pytest.param("a=b,", None, id="trailing comma"),
        pytest.param(",a", None, id="leading comma"),
        pytest.param("x in a", None, id="set without parentheses"),
        pytest.param("x in (a", None, id="unterminated set"),
        pytest.param("x in (a b)", None, id="two values without comma"),
        pytest.param("x>a", None, id="non-integer comparison"),
        pytest.param("x>-1", None, id="negative comparison"),
        pytest.param("a/b/c=d", None, id="two slashes in key"),
        pytest.param("Upper.Case/k=v", None, id="uppercase prefix"),
        pytest.param("k=" + "v" * 64, None, id="value longer than 63"),
        pytest.param("a:b=c", None, id="colon in key"),
        pytest.param("x=a b", None, id="two values after equals"),
        pytest.param("x=!", None, id="bang as value"),
        pytest.param("x=>", None, id="no symbol"),
    ],
)
def test_parse_and_print(text: str, canonical: str | None) -> None:
    if canonical is None:
        with pytest.raises(SelectorError):
            parse_selector(text)
    else:
        assert str(parse_selector(text)) == canonical
        assert str(parse_selector(canonical)) == canonical


def test_error_quotes_the_bad_term() -> None:
    with pytest.raises(SelectorError, match="'a:b'"):
        parse_selector("ok=1,a:b=c")


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        pytest.param("model=llama", {"model": "llama"}, True, id="equals matches"),
        pytest.param("model=llama", {}, False, id="equals needs the key"),
        pytest.param("model!=llama", {}, True, id="not equals matches an absent key"),
        pytest.param("model!=llama", {"model": "llama"}, False, id="not equals rejects the value"),
        pytest.param("model notin (a,b)", {"model": "c"}, True, id="notin other value"),
        pytest.param("model notin (a,b)", {"model": "a"}, False, id="notin listed value"),
        pytest.param("model in (a,b)", {"model": "b"}, True, id="in listed value"),
        pytest.param("model", {"model": ""}, True, id="exists with empty value"),
        pytest.param("!model", {"model": "a"}, False, id="does not exist rejects present key"),
        pytest.param("gpus>2", {"gpus": "3"}, True, id="greater than"),
        pytest.param("gpus>2", {"gpus": "2"}, False, id="greater than is strict"),
        pytest.param("gpus<2", {"gpus": "x"}, False, id="non-integer label never compares"),
        pytest.param("gpus<2", {}, False, id="comparison needs the key"),
        pytest.param("gpus>2", {"gpus": "+3"}, True, id="signed label value parses like ParseInt"),
        pytest.param("gpus<2", {"gpus": "-3"}, True, id="negative label value parses like ParseInt"),
        pytest.param("gpus>2", {"gpus": " 3"}, False, id="whitespace is not an integer"),
        pytest.param("gpus>2", {"gpus": "1_000"}, False, id="underscores are not an integer"),
        pytest.param("gpus>2", {"gpus": "\u0663"}, False, id="non-ASCII digits are not an integer"),
        pytest.param("gpus>2", {"gpus": "9" * 19}, False, id="beyond int64 is not an integer"),
        pytest.param("a=1,b=2", {"a": "1", "b": "3"}, False, id="all requirements must hold"),
        pytest.param("", {"anything": "x"}, True, id="empty selector matches everything"),
    ],
)
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(text).matches(labels) is expected


_SELECTOR_ALPHABET = st.sampled_from([*"ab=!(),<> in0-./_:", "in", "notin", " ", "\t"])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(_SELECTOR_ALPHABET, max_size=20).map("".join)))
def test_random_strings_parse_or_raise_selector_error(text: str) -> None:
    try:
        selector = parse_selector(text)
    except SelectorError:
        return
    # Whatever parses prints a canonical form that parses back to itself.
    canonical = str(selector)
    assert str(parse_selector(canonical)) == canonical


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("workload=a", "a", id="equals pins the value"),
        pytest.param("workload in (a)", "a", id="single-value set pins the value"),
        pytest.param("workload in (a,b)", None, id="two values pin nothing"),
        pytest.param("workload!=a", None, id="not equals pins nothing"),
        pytest.param("model=a", None, id="other key pins nothing"),
    ],
)
def test_required_value(text: str, expected: str | None) -> None:
    assert parse_selector(text).required_value("workload") == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("k=v\n", id="newline is whitespace, not part of the value"),
        pytest.param("k\n=v", id="newline after the key"),
    ],
)
def test_trailing_newline_is_whitespace_not_part_of_a_name(text: str) -> None:
    assert str(parse_selector(text)) == "k=v"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("k\x0b", "v", id="vertical tab in key"),
        pytest.param("k", "v\x0c", id="form feed in value"),
    ],
)
def test_other_control_characters_are_invalid(key: str, value: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(f"{key}={value}")
