"""Reading an environment file strictly.

PyYAML's safe loader speaks YAML 1.1 and is forgiving where a forgiven mistake reaches
production: a duplicated key silently loses its first value, `on` becomes true, `014`
becomes 12, `1:30` becomes 90, a key `yes:` becomes the boolean True, and anchors let a
few hundred bytes expand into gigabytes. Environment files need none of that, so each of
these is refused here, with its line, before the schema sees the data. Everything is
bounded: the file's size, its number of keys, its nesting, the length of what we echo.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from foundation.errors import UsageError, shown

MAX_BYTES = 64 * 1024  # the largest shipped file is under 1 KiB
MAX_DEPTH = 3  # the top-level mapping, a list value, its items: nothing in the schema is deeper

_TAG = "tag:yaml.org,2002:"
_KINDS = {"bool": "a boolean", "int": "a number", "float": "a number", "null": "empty (null)", "timestamp": "a date",
          "seq": "a list", "map": "a mapping", "merge": "a merge key (<<)", "binary": "binary data",
          "set": "a set", "omap": "an ordered mapping", "pairs": "a list of pairs"}
# Spelled the same in YAML 1.1 and 1.2: anything else (0x1f, 0o17, 1_000, 1:30, 014) reads
# differently depending on the parser, so it is refused rather than guessed.
_PLAIN_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_PLAIN_FLOAT = re.compile(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
# true/false in YAML 1.1, text in YAML 1.2 (y and n only for some 1.1 parsers).
_YAML11_BOOLEANS = {"yes", "no", "on", "off", "y", "n"}


class _KeyMark:
    """Where a value is: its line, and the key it belongs to."""

    def __init__(self, mark, key: str) -> None:
        self.line, self.key = mark.line, key


class _Refused(Exception):
    def __init__(self, mark, message: str) -> None:
        key = f"{_key(mark.key)}: " if isinstance(mark, _KeyMark) else ""
        super().__init__(f"line {mark.line + 1}: {key}{message}")


def _kind(tag: str) -> str:
    return _KINDS.get(tag.removeprefix(_TAG), f"a {tag}")


class _StrictLoader(yaml.SafeLoader):
    def __init__(self, stream: str, max_keys: int) -> None:
        super().__init__(stream)
        self._max_keys = max_keys
        self._keys = 0
        self._depth = 0

    # --- composing: before anything is built ---------------------------------------------
    def compose_node(self, parent, index):
        event = self.peek_event()
        # Refused on sight: an alias never gets expanded, whatever it points at.
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(event.start_mark, "anchors and aliases (&name, *name) are not allowed in environment "
                                             "files: write each value out")
        if isinstance(parent, MappingNode) and index is None:  # composing a key
            self._keys += 1
            if self._keys > self._max_keys:
                raise _Refused(event.start_mark, f"more than {self._max_keys} keys, more than an environment can "
                                                 "set (see infra/config/schema.py): is this the right file?")
        # The composer recurses once per level: a cap keeps `[[[[...` from exhausting the stack.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(event.start_mark, "nested too deeply: a setting is a value or a list of values")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    # --- constructing: keys and scalars ----------------------------------------------------
    def construct_mapping(self, node, deep=False):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag != _TAG + "str":  # also catches `<<` before the safe loader merges it
                raise _Refused(key_node.start_mark, f"key {_source(key_node)} is read as {_kind(key_node.tag)}: keys "
                                                    "are setting names (see infra/config/schema.py)")
            if key_node.value in first_line:
                raise _Refused(key_node.start_mark, f"{_key(key_node.value)}: duplicate key (first on line "
                                                    f"{first_line[key_node.value]}, again on line {line}): keep one; "
                                                    "YAML would silently keep the last")
            first_line[key_node.value] = line
            _check_plain_scalar(self, key_node, key_node.value)
            # Values are scalars or lists of scalars (deeper is refused while composing).
            for item in value_node.value if isinstance(value_node, SequenceNode) else [value_node]:
                if isinstance(item, ScalarNode):
                    _check_plain_scalar(self, item, key_node.value)
        return super().construct_mapping(node, deep)


def _source(node: ScalarNode | object) -> str:
    return shown(node.value) if isinstance(node, ScalarNode) else "(a list or mapping)"


def _key(key: str) -> str:
    return key if re.fullmatch(r"[a-z0-9_]{1,64}", key) else shown(key)


def _check_plain_scalar(loader: _StrictLoader, node: ScalarNode, key: str) -> None:
    """Refuses a plain (unquoted) scalar that YAML 1.1 and 1.2 read differently."""
    if node.style is not None:  # quoted or block text: always a string, no surprise
        return
    value, tag = node.value, node.tag.removeprefix(_TAG)
    mark = _KeyMark(node.start_mark, key)
    if value.lower() in _YAML11_BOOLEANS:
        raise _Refused(mark, f"{shown(value)} is a boolean in YAML 1.1 and text in YAML 1.2: write true or "
                             f"false, or quote it ('{value}') if you mean the text")
    if tag == "int" and not _PLAIN_INT.fullmatch(value):
        if re.fullmatch(r"[-+]?0[0-7]{1,20}", value):
            raise _Refused(mark, f"{shown(value)} is octal ({loader.construct_yaml_int(node)}) in YAML 1.1 "
                                 f"and decimal in YAML 1.2: write {int(value, 10)}, or quote it if you "
                                 "mean the text")
        raise _Refused(mark, f"{shown(value)} is a number in a form YAML versions read differently (octal, "
                             "hex, 1_000, 1:30): write a plain decimal number, or quote it if you mean "
                             "the text")
    if tag == "float" and not _PLAIN_FLOAT.fullmatch(value):
        raise _Refused(mark, f"{shown(value)} is not a plain decimal number: write one like 0.995, "
                             "or quote it if you mean the text")
    if tag == "timestamp":
        raise _Refused(mark, f"{shown(value)} is read as a date: quote it if you mean the text")


def _yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        what = "; ".join(part for part in (error.context, error.problem) if part)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return f"{where}{what}"[:200]
    if isinstance(error, yaml.reader.ReaderError):
        code = error.character if isinstance(error.character, int) else ord(error.character)
        return f"control character U+{code:04X} at character {error.position} is not allowed in YAML"
    return str(error).splitlines()[0][:200]


def read_mapping(path: Path, display: str, *, max_keys: int) -> dict:
    """The top-level mapping of the YAML file at `path`, read strictly; a UsageError that
    starts with `display` (the file as the user knows it) otherwise."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)  # never more, whatever the file is
    except OSError as error:
        raise UsageError(f"{display}: cannot be read ({error.strerror or error})") from None
    if len(data) > MAX_BYTES:
        raise UsageError(f"{display}: larger than {MAX_BYTES // 1024} KiB: an environment file is a few dozen lines; "
                         "is this the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise UsageError(f"{display}: not UTF-8 text: byte 0x{data[error.start]:02x} at offset {error.start} "
                         f"(line {line}); save the file as UTF-8") from None
    loader = None
    try:
        loader = _StrictLoader(text, max_keys)  # the reader refuses control characters here already
        document = loader.get_single_data()
    except _Refused as refused:
        raise UsageError(f"{display}: {refused}") from None
    except yaml.YAMLError as error:
        raise UsageError(f"{display}: not valid YAML: {_yaml_problem(error)}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if document is None:
        raise UsageError(f"{display}: empty: set at least `tier:` (mvp, growth or scale); an empty file would "
                         "silently deploy every default")
    if not isinstance(document, dict):
        raise UsageError(f"{display}: expected a mapping of settings at the top level (key: value lines), "
                         f"found {type(document).__name__}")
    return document
