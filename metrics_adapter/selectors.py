"""Kubernetes label selector strings: parse, validate, print canonically, and match label maps.

Follows the grammar of apimachinery's `labels.Parse` (operators =, ==, !=, in, notin, exists, !key,
> and <) and its key/value validation. Errors are `SelectorError`s that quote the offending term so a
400 response tells the caller exactly what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

# Used with fullmatch(): a `$` anchor would also accept a trailing newline.
_NAME_RE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_WHITESPACE = " \t\r\n"
_SPECIAL = "=!(),><"
_SYMBOLS = frozenset({"=", "==", "!", "!=", "(", ")", ",", ">", "<"})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# strconv.ParseInt(s, 10, 64) accepts an optional sign and ASCII digits only; Python's int() would
# also take whitespace, underscores and non-ASCII digits, which would make `>`/`<` match labels
# that Kubernetes never matches.
_GO_INT_RE = re.compile(r"[+-]?[0-9]+")


class SelectorError(ValueError):
    """A selector string that does not follow the grammar or the key/value rules."""


class Operator(StrEnum):
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = ">"
    LESS_THAN = "<"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One `key op values` term; `values` is sorted and deduplicated, as Kubernetes stores it."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        match self.operator:
            case Operator.EQUALS | Operator.DOUBLE_EQUALS | Operator.IN:
                return present and value in self.values
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                return not present or value not in self.values
            case Operator.EXISTS:
                return present
            case Operator.DOES_NOT_EXIST:
                return not present
            case Operator.GREATER_THAN | Operator.LESS_THAN:
                if not present:
                    return False
                actual = _parse_int64(value)
                if actual is None:
                    return False
                bound = int(self.values[0])
                return actual > bound if self.operator is Operator.GREATER_THAN else actual < bound

    def __str__(self) -> str:
        match self.operator:
            case Operator.EXISTS:
                return self.key
            case Operator.DOES_NOT_EXIST:
                return f"!{self.key}"
            case Operator.IN | Operator.NOT_IN:
                return f"{self.key} {self.operator.value} ({','.join(self.values)})"
            case _:
                return f"{self.key}{self.operator.value}{self.values[0]}"


@dataclass(frozen=True, slots=True)
class Selector:
    """A conjunction of requirements sorted by key; no requirements selects everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    def is_everything(self) -> bool:
        return not self.requirements

    def required_value(self, key: str) -> str | None:
        """The one value `key` must have for a match (from `k=v`, `k==v` or `k in (v)`), if any;
        lets a caller look a workload up directly instead of scanning every label set."""
        for requirement in self.requirements:
            if (
                requirement.key == key
                and len(requirement.values) == 1
                and requirement.operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN)
            ):
                return requirement.values[0]
        return None

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


def _parse_int64(text: str) -> int | None:
    """The value Go's strconv.ParseInt(text, 10, 64) gives, or None where it would fail."""
    if not _GO_INT_RE.fullmatch(text):
        return None
    number = int(text)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


def validate_key(key: str) -> None:
    """Raise SelectorError unless `key` is a qualified label key: optional DNS-1123 prefix + name."""
    parts = key.split("/")
    if len(parts) > 2:
        raise SelectorError(f"invalid label key {key!r}: at most one '/' is allowed")
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
            raise SelectorError(f"invalid label key {key!r}: prefix must be a lowercase DNS-1123 subdomain")
    if not name or len(name) > 63 or not _NAME_RE.fullmatch(name):
        raise SelectorError(
            f"invalid label key {key!r}: name must be 1-63 alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )


def validate_value(value: str) -> None:
    """Raise SelectorError unless `value` is empty or a valid 1-63 character label value."""
    if value and (len(value) > 63 or not _NAME_RE.fullmatch(value)):
        raise SelectorError(
            f"invalid label value {value!r}: must be empty or 1-63 alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )


def _tokenize(text: str) -> list[tuple[str, bool]]:
    """Split into (token, is_identifier) pairs; special runs extend only while they form a symbol."""
    tokens: list[tuple[str, bool]] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char in _WHITESPACE:
            position += 1
        elif char in _SPECIAL:
            end = position + 1
            while end < len(text) and text[end] in _SPECIAL and text[position : end + 1] in _SYMBOLS:
                end += 1
            symbol = text[position:end]
            if symbol not in _SYMBOLS:
                raise SelectorError(f"unexpected symbol {symbol!r} at offset {position}")
            tokens.append((symbol, False))
            position = end
        else:
            end = position
            while end < len(text) and text[end] not in _WHITESPACE and text[end] not in _SPECIAL:
                end += 1
            tokens.append((text[position:end], True))
            position = end
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = _tokenize(text)
        self._index = 0

    def _peek(self) -> tuple[str, bool] | None:
        return self._tokens[self._index] if self._index < len(self._tokens) else None

    def _next(self) -> tuple[str, bool] | None:
        token = self._peek()
        self._index += 1
        return token

    def parse(self) -> Selector:
        if not self._tokens:
            return Selector()
        requirements = [self._requirement()]
        while (token := self._next()) is not None:
            if token != (",", False):
                raise SelectorError(f"found {token[0]!r}, expected ',' or end of string")
            requirements.append(self._requirement())
        return Selector(tuple(sorted(requirements, key=lambda requirement: requirement.key)))

    def _requirement(self) -> Requirement:
        token = self._next()
        if token is None:
            raise SelectorError("found end of string, expected a label key or '!'")
        negated = token == ("!", False)
        if negated:
            token = self._next()
        if token is None or not token[1]:
            found = "end of string" if token is None else repr(token[0])
            raise SelectorError(f"found {found}, expected a label key")
        key = token[0]
        validate_key(key)
        following = self._peek()
        if negated or following is None or following == (",", False):
            if negated and following not in (None, (",", False)):
                raise SelectorError(f"found {following[0]!r} after '!{key}', expected ',' or end of string")
            return Requirement(key, Operator.DOES_NOT_EXIST if negated else Operator.EXISTS)
        operator_text, _ = following
        self._index += 1
        if operator_text in ("in", "notin") and following[1]:
            return Requirement(key, Operator(operator_text), self._value_set(key))
        if operator_text in ("=", "==", "!="):
            value = self._single_value(key)
            validate_value(value)
            return Requirement(key, Operator(operator_text), (value,))
        if operator_text in (">", "<"):
            value = self._single_value(key)
            validate_value(value)
            if _parse_int64(value) is None:
                raise SelectorError(f"invalid value {value!r} for '{key}{operator_text}': must be an integer")
            return Requirement(key, Operator(operator_text), (value,))
        raise SelectorError(f"found {operator_text!r} after key {key!r}, expected an operator")

    def _single_value(self, key: str) -> str:
        token = self._peek()
        if token is None or token == (",", False):
            return ""
        if not token[1]:
            raise SelectorError(f"found {token[0]!r} after key {key!r}, expected a value")
        self._index += 1
        return token[0]

    def _value_set(self, key: str) -> tuple[str, ...]:
        if self._next() != ("(", False):
            raise SelectorError(f"expected '(' after the set operator of key {key!r}")
        values: set[str] = set()
        current = ""
        # Length of the run of commas just read. apimachinery consumes empty entries two commas at
        # a time, so a run of an even length directly before ')' (`(a,,)`, `(,,)`) is a parse error
        # there; we reject the same strings so both sides agree on what is a selector.
        commas = 0
        while True:
            token = self._next()
            if token is None:
                raise SelectorError(f"unterminated value list for key {key!r}, expected ')'")
            text, is_identifier = token
            if is_identifier:
                if current:
                    raise SelectorError(f"found {text!r} in the values of {key!r}, expected ',' or ')'")
                current = text
                commas = 0
            elif text in (",", ")"):
                if text == ")" and commas and commas % 2 == 0:
                    raise SelectorError(
                        f"found ')' after {commas} commas in the values of {key!r}, expected a value"
                    )
                validate_value(current)
                values.add(current)
                current = ""
                commas += 1
                if text == ")":
                    return tuple(sorted(values))
            else:
                raise SelectorError(f"found {text!r} in the values of {key!r}, expected a value")


def parse_selector(text: str) -> Selector:
    """Parse a label selector string; the empty string selects everything."""
    return _Parser(text).parse()
