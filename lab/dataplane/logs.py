"""Cockpit logs for the lab: the Loki API of each logs data source, and Grafana Alloy.

Cockpit's side (`LogStore`, `answer`): the lab's proxy (lab/objectstorage.py) serves the
host of each logs data source the Cockpit family holds (https://<source id>.logs.cockpit.
<region>.scw.cloud) with this subset of Loki's HTTP API:
- POST /loki/api/v1/push, JSON only (`{"streams": [{"stream": {labels}, "values": [["<unix
  ns>", "line"], ...]}]}`; snappy-compressed protobuf, what Alloy itself sends, is answered
  415), with `X-Token: <secret key>` of a token holding write_only_logs → 204;
- GET /loki/api/v1/query_range and /loki/api/v1/query, with `Authorization: Bearer <secret
  key>` (or X-Token) of a token holding read_only_logs, for exactly two LogQL forms: a
  stream selector of `=` matchers (`{environment="dev", app="ciel"}`, range queries only,
  as Loki 3) and `count_over_time(<selector>[<duration>])`. Anything else is a 400 with
  Loki's error shape (the message as text/plain).
Entries live in memory, at most MAX_LINES per source (the oldest go first).

The machine's side (`LogShipper`, `start_shipping`, `ship_app_log`): what Alloy does on an
app machine with the configuration infra/cloudinit/app.py writes (/etc/ciel/alloy.alloy):
follow the journals of the units its sources select (here: the app unit's is the stand-in's
log file, which the Supervisor writes; the migration runner's is a file the lab's timer
writes: lab/dataplane/apps.py `journal_file`) and push new lines every second, with the configured labels, to the configured endpoint
through the lab's proxy (its CA trusted), with the configured headers, evaluated as Alloy
evaluates them (a `local.file` read from the machine's root; a secret may not become a
header string; a header value with a line break is refused, as Go's HTTP client does).
"""

from __future__ import annotations

import http.client
import json
import math
import re
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from lab.families.cockpit import logs_access

MAX_LINES = 10_000  # kept per data source
MAX_PUSH_BODY = 5 * 1024 * 1024
DEFAULT_LIMIT, MAX_LIMIT = 100, 5000  # Loki's defaults (limit, max_entries_limit_per_query)
MAX_POINTS = 11_000  # per series, as Loki (Prometheus) bounds a range query's resolution
DEFAULT_SINCE_NS = 3600 * 10**9  # a query without start looks back one hour
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TEXT = [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")]
INSTANT_LOG_QUERY = ("log queries are not supported as an instant query type, please change your query to a range "
                     "query type")
EMPTY_COMPATIBLE = ('queries require at least one regexp or equality matcher that does not have an empty-compatible '
                    'value. For instance, app=~".*" does not meet this requirement, but app=~".+" will')

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs: one stream
Answer = tuple[int, list[tuple[str, str]], bytes]


# --- Cockpit's side: the store -------------------------------------------------------------------

class LogStore:
    """Each data source's entries, in arrival order, at most MAX_LINES of them."""

    def __init__(self, max_lines: int = MAX_LINES) -> None:
        self.max_lines = max_lines
        self.sources: dict[str, deque[tuple[int, Labels, str]]] = {}
        self.lock = threading.Lock()

    def append(self, source_id: str, entries: list[tuple[int, Labels, str]]) -> None:
        with self.lock:
            kept = self.sources.setdefault(source_id, deque(maxlen=self.max_lines))
            kept.extend(entries)

    def entries(self, source_id: str, start_ns: int, end_ns: int) -> list[tuple[int, Labels, str]]:
        """The source's entries with start_ns <= timestamp < end_ns, oldest first."""
        with self.lock:
            found = [entry for entry in self.sources.get(source_id, ()) if start_ns <= entry[0] < end_ns]
        return sorted(found, key=lambda entry: entry[0])


# --- Cockpit's side: the HTTP API ----------------------------------------------------------------

class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _text(status: int, message: str) -> Answer:
    return status, list(TEXT), (message.rstrip("\n") + "\n").encode()


def _json(payload: dict) -> Answer:
    return 200, [("Content-Type", "application/json; charset=utf-8")], json.dumps(payload).encode()


def answer(store: LogStore, method: str, target: str, headers, body: bytes, source: dict) -> Answer:
    """The answer of the logs data source `source` to one request (`headers`: a mapping with
    case-insensitive `get`, as http.server's)."""
    url = urlsplit(target)
    path = url.path.rstrip("/") or "/"
    if path == "/loki/api/v1/push":
        if method != "POST":
            return _text(405, f"method {method} not allowed on {path}")
        use = "push"
    elif path in ("/loki/api/v1/query_range", "/loki/api/v1/query"):
        if method != "GET":
            return _text(405, f"the lab's Cockpit answers queries on GET only, not {method}")
        use = "query"
    else:
        return _text(404, "404 page not found")
    refused = logs_access(_secret(headers, use), source, use)
    if refused is not None:
        return _text(*refused)
    try:
        if use == "push":
            return _push(store, source, headers, body)
        return _query(store, source, path.rsplit("/", 1)[1], parse_qs(url.query))
    except _BadRequest as error:
        return _text(error.status, str(error))


def _secret(headers, use: str) -> str | None:
    """The token's secret key: X-Token (Cockpit's push header), or, for queries, a Bearer token
    (what a Grafana data source sends)."""
    token = headers.get("X-Token")
    if token is None and use == "query":
        scheme, _, credentials = (headers.get("Authorization") or "").partition(" ")
        token = credentials.strip() if scheme.lower() == "bearer" else None
    return token.strip() if token else None


def _push(store: LogStore, source: dict, headers, body: bytes) -> Answer:
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    encoding = (headers.get("Content-Encoding") or "identity").strip().lower()
    if content_type != "application/json" or encoding not in ("", "identity"):
        return _text(415, f"the lab's Cockpit accepts pushes as uncompressed application/json only, not "
                          f"{content_type or 'no Content-Type'} ({encoding}); Loki's snappy/protobuf is not emulated")
    if len(body) > MAX_PUSH_BODY:
        return _text(413, f"push body over the lab's limit of {MAX_PUSH_BODY} bytes")
    try:
        request = json.loads(body)
    except ValueError as error:
        raise _BadRequest(f"couldn't parse push request: {error}") from None
    streams = request.get("streams") if isinstance(request, dict) else None
    if not isinstance(streams, list):
        raise _BadRequest('couldn\'t parse push request: expected {"streams": [...]}')
    entries: list[tuple[int, Labels, str]] = []
    for stream in streams:
        labels, values = (stream.get("stream"), stream.get("values")) if isinstance(stream, dict) else (None, None)
        if not isinstance(labels, dict) or not labels:
            raise _BadRequest("error at least one label pair is required per stream")
        if not all(isinstance(name, str) and LABEL_NAME.match(name) and isinstance(value, str)
                   for name, value in labels.items()):
            raise _BadRequest(f"error parsing labels {json.dumps(labels)}: invalid label name or value")
        if not isinstance(values, list):
            raise _BadRequest("couldn't parse push request: a stream's values must be a list")
        key = tuple(sorted(labels.items()))
        for value in values:
            if not (isinstance(value, list) and len(value) in (2, 3) and isinstance(value[0], str)
                    and value[0].isdigit() and isinstance(value[1], str)):
                raise _BadRequest(f'couldn\'t parse push request: an entry is ["<unix epoch in nanoseconds>", '
                                  f'"<log line>"], not {json.dumps(value)[:200]}')
            entries.append((int(value[0]), key, value[1]))
    store.append(source["id"], entries)
    return 204, [], b""


def _query(store: LogStore, source: dict, endpoint: str, arguments: dict[str, list[str]]) -> Answer:
    def argument(name: str) -> str:
        return (arguments.get(name) or [""])[0]

    query = parse_logql(argument("query"))
    now_ns = time.time_ns()
    limit = _limit(argument("limit"))
    if endpoint == "query":
        if query.range_ns is None:
            raise _BadRequest(INSTANT_LOG_QUERY)
        at_ns = _timestamp("time", argument("time"), now_ns)
        return _json(_result("vector", [
            {"metric": dict(labels), "value": [_seconds(at_ns), str(count)]}
            for labels, count in _counts(store.entries(source["id"], at_ns - query.range_ns, at_ns + 1), query,
                                         at_ns).items()]))
    end_ns = _timestamp("end", argument("end"), now_ns)
    start_ns = _timestamp("start", argument("start"), end_ns - DEFAULT_SINCE_NS)
    if end_ns < start_ns:
        raise _BadRequest("end timestamp must not be before or equal to start time")
    if query.range_ns is None:
        backward = (argument("direction") or "backward").lower() == "backward"
        found = [entry for entry in store.entries(source["id"], start_ns, end_ns) if query.selects(entry[1])]
        found = found[-limit:] if backward else found[:limit]
        streams: dict[Labels, list[list[str]]] = {}
        for timestamp, labels, line in (reversed(found) if backward else found):
            streams.setdefault(labels, []).append([str(timestamp), line])
        return _json(_result("streams", [{"stream": dict(labels), "values": values}
                                         for labels, values in sorted(streams.items())]))
    step_ns = _step(argument("step"), start_ns, end_ns)
    if (end_ns - start_ns) // step_ns + 1 > MAX_POINTS:
        raise _BadRequest(f"exceeded maximum resolution of {MAX_POINTS:,} points per timeseries. Try decreasing "
                          "the query resolution (?step=XX)")
    entries = store.entries(source["id"], start_ns - query.range_ns, end_ns + 1)
    series: dict[Labels, list[list]] = {}
    for at_ns in range(start_ns, end_ns + 1, step_ns):
        for labels, count in _counts(entries, query, at_ns).items():
            series.setdefault(labels, []).append([_seconds(at_ns), str(count)])
    return _json(_result("matrix", [{"metric": dict(labels), "values": values}
                                    for labels, values in sorted(series.items())]))


def _result(result_type: str, result: list) -> dict:
    return {"status": "success", "data": {"resultType": result_type, "result": result}}


def _counts(entries: list[tuple[int, Labels, str]], query: "LogQuery", at_ns: int) -> dict[Labels, int]:
    """count_over_time at `at_ns`: per stream, the entries in (at - range, at]."""
    counts: dict[Labels, int] = {}
    for timestamp, labels, _ in entries:
        if at_ns - query.range_ns < timestamp <= at_ns and query.selects(labels):
            counts[labels] = counts.get(labels, 0) + 1
    return counts


def _seconds(ns: int) -> float | int:
    return ns // 10**9 if ns % 10**9 == 0 else ns / 10**9


def _timestamp(name: str, value: str, default: int) -> int:
    """Loki's forms: Unix seconds (a fraction allowed), nanoseconds (more than 10 digits), RFC 3339."""
    if not value:
        return default
    try:
        if "." in value:
            return round(float(value) * 10**9)
        number = int(value)
        return number * 10**9 if len(value.lstrip("-")) <= 10 else number
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError
        return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000
    except ValueError:
        raise _BadRequest(f'invalid parameter "{name}": cannot parse "{value}" to a valid timestamp') from None


def _limit(value: str) -> int:
    if not value:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise _BadRequest(f'invalid parameter "limit": cannot parse "{value}" as an integer') from None
    if limit <= 0:
        raise _BadRequest("limit must be a positive value")
    if limit > MAX_LIMIT:
        raise _BadRequest(f"max entries limit per query exceeded, limit > max_entries_limit ({limit} > {MAX_LIMIT})")
    return limit


def _step(value: str, start_ns: int, end_ns: int) -> int:
    if not value:  # Loki's default: a 250th of the range, at least a second
        return max(math.floor((end_ns - start_ns) / 10**9 / 250), 1) * 10**9
    try:
        step = round(float(value) * 10**9)
    except ValueError:
        step = _duration(value) if DURATION.match(value) else 0
    if step <= 0:
        raise _BadRequest("zero or negative query resolution step widths are not accepted. Try a positive integer")
    return step


# --- LogQL: the lab's subset -----------------------------------------------------------------------

DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
LOGQL_TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<op>=~|!~|!=|\|=|\|~|=|\|)'
                         r'|(?P<punct>[{}()\[\],])|(?P<word>[A-Za-z_][A-Za-z0-9_:]*|\d[0-9a-z]*))')
SUPPORTED = "the lab's Cockpit answers stream selectors of = matchers and count_over_time(<selector>[<range>]) only"


def _duration(text: str) -> int:
    found = DURATION.match(text)
    if not found or not text:
        return 0
    seconds = sum(int(amount) * unit for amount, unit in zip(found.groups(), DURATION_UNITS, strict=True) if amount)
    return round(seconds * 10**9)


@dataclass(frozen=True)
class LogQuery:
    matchers: tuple[tuple[str, str], ...]  # name = value
    range_ns: int | None = None  # count_over_time's range; None: a log query

    def selects(self, labels: Labels) -> bool:
        present = dict(labels)
        return all(present.get(name, "") == value for name, value in self.matchers)


def parse_logql(text: str) -> LogQuery:
    """A LogQL query of the lab's subset; _BadRequest (Loki's parse error, or what the lab
    does not answer) otherwise."""
    tokens: list[tuple[str, str, int]] = []  # (kind, text, column)
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        found = LOGQL_TOKEN.match(text, position)
        if not found:
            raise _BadRequest(f"parse error at line 1, col {position + 1}: syntax error: unexpected character "
                              f"{text[position]!r}")
        kind = found.lastgroup or ""
        tokens.append((kind, found.group(kind), found.start(kind) + 1))
        position = found.end()
    if not tokens:
        raise _BadRequest("parse error : syntax error: unexpected $end")
    cursor = [0]

    def peek() -> tuple[str, str, int]:
        return tokens[cursor[0]] if cursor[0] < len(tokens) else ("end", "$end", len(text) + 1)

    def expect(wanted: str) -> tuple[str, str, int]:
        token = peek()
        if token[1] != wanted:
            raise _BadRequest(f"parse error at line 1, col {token[2]}: syntax error: unexpected {token[1]}, "
                              f"expecting {wanted}")
        cursor[0] += 1
        return token

    def selector() -> tuple[tuple[str, str], ...]:
        expect("{")
        matchers = []
        while True:
            kind, name, column = peek()
            if kind != "word":
                raise _BadRequest(f"parse error at line 1, col {column}: syntax error: unexpected {name}, "
                                  "expecting IDENTIFIER")
            cursor[0] += 1
            _, operator, column = peek()
            if operator in ("!=", "=~", "!~"):
                raise _BadRequest(f"{SUPPORTED}: not the {operator} matcher (col {column})")
            expect("=")
            kind, quoted, column = peek()
            if kind != "string":
                raise _BadRequest(f"parse error at line 1, col {column}: syntax error: unexpected {quoted}, "
                                  "expecting STRING")
            cursor[0] += 1
            matchers.append((name, json.loads(quoted) if quoted.startswith('"') else quoted[1:-1]))
            if peek()[1] == ",":
                cursor[0] += 1
                continue
            expect("}")
            break
        if not any(value for _, value in matchers):
            raise _BadRequest(f"parse error : {EMPTY_COMPATIBLE}")
        return tuple(matchers)

    kind, word, column = peek()
    if word == "{":
        query = LogQuery(selector())
    elif kind == "word" and word == "count_over_time":
        cursor[0] += 1
        expect("(")
        matchers = selector()
        expect("[")
        _, duration, column = peek()
        range_ns = _duration(duration)
        if range_ns <= 0:
            raise _BadRequest(f"parse error at line 1, col {column}: not a valid duration string: {duration!r}")
        cursor[0] += 1
        expect("]")
        expect(")")
        query = LogQuery(matchers, range_ns)
    elif kind == "word":
        raise _BadRequest(f"{SUPPORTED}: not {word}")
    else:
        raise _BadRequest(f"parse error at line 1, col {column}: syntax error: unexpected {word}")
    kind, rest, column = peek()
    if kind != "end":
        if rest in ("|=", "|~", "|", "!="):
            raise _BadRequest(f"{SUPPORTED}: no line filter or pipeline (col {column})")
        raise _BadRequest(f"parse error at line 1, col {column}: syntax error: unexpected {rest}")
    return query


# --- the machine's side: Alloy's configuration --------------------------------------------------------

ALLOY_CONFIG = "/etc/ciel/alloy.alloy"  # infra/cloudinit/app.py stages it there, then installs it
SECRETS_CONFIG = "/etc/ciel/secrets.json"  # names the app's unit, whose journal Alloy follows
POSITIONS = "/var/lib/alloy/data/lab-journal-position.json"  # where Alloy keeps how far it has read
ALLOY_TOKEN = re.compile(r'\s*(?:(?P<comment>//[^\n]*|/\*.*?\*/)|(?P<string>"(?:[^"\\\n]|\\.)*"|`[^`]*`)'
                         r"|(?P<number>\d+(?:\.\d+)?)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[{}\[\](),.=]))",
                         re.S)


class AlloyConfigError(ValueError):
    """What Alloy would refuse in the configuration, or what the lab does not evaluate."""


@dataclass(frozen=True)
class OptionalSecret:
    """local.file's `content`: a secret when its `is_secret` says so (Alloy's OptionalSecret)."""

    value: str
    is_secret: bool


def _alloy_tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        if not text[position:].strip():
            break
        found = ALLOY_TOKEN.match(text, position)
        if not found:
            line = text.count("\n", 0, position) + 1
            raise AlloyConfigError(f"line {line}: unexpected {text[position]!r}")
        position = found.end()
        if found.lastgroup != "comment":
            tokens.append((found.lastgroup or "", found.group(found.lastgroup)))
    return tokens


class _AlloyParser:
    """Alloy's syntax: blocks (`name.dotted "label" { ... }`) of attributes (`name = expr`);
    expressions are literals, objects, lists, references and calls, kept unevaluated."""

    def __init__(self, text: str) -> None:
        self.tokens, self.at = _alloy_tokens(text), 0

    def peek(self, ahead: int = 0) -> tuple[str, str]:
        index = self.at + ahead
        return self.tokens[index] if index < len(self.tokens) else ("end", "end of file")

    def take(self, text: str | None = None, kind: str | None = None) -> str:
        token_kind, token = self.peek()
        if (text is not None and token != text) or (kind is not None and token_kind != kind):
            raise AlloyConfigError(f"expected {text or kind}, found {token!r}")
        self.at += 1
        return token

    def body(self, closing: str | None) -> dict:
        """Attributes and blocks up to `closing` (None: the end of the file)."""
        attributes, blocks = {}, []
        while not (self.peek()[0] == "end" if closing is None else self.peek()[1] == closing):
            name = self.take(kind="ident")
            if self.peek()[1] == "=":
                self.take("=")
                attributes[name] = self.expression()
                continue
            while self.peek()[1] == ".":
                self.take(".")
                name += "." + self.take(kind="ident")
            label = _unquote(self.take(kind="string")) if self.peek()[0] == "string" else ""
            self.take("{")
            blocks.append((name, label, self.body("}")))
        if closing:
            self.take(closing)
        return {"attributes": attributes, "blocks": blocks}

    def expression(self):
        kind, token = self.peek()
        if kind == "string":
            self.at += 1
            value = ("lit", _unquote(token))
        elif kind == "number":
            self.at += 1
            value = ("lit", float(token) if "." in token else int(token))
        elif token in ("true", "false", "null"):
            self.at += 1
            value = ("lit", {"true": True, "false": False, "null": None}[token])
        elif token == "{":
            self.take("{")
            fields = {}
            while self.peek()[1] != "}":
                key_kind, key = self.peek()
                self.at += 1
                key = _unquote(key) if key_kind == "string" else key
                self.take("=")
                fields[key] = self.expression()
                if self.peek()[1] == ",":
                    self.take(",")
            self.take("}")
            value = ("object", fields)
        elif token == "[":
            self.take("[")
            value = ("list", self.expressions_until("]"))
        elif kind == "ident":
            names = [self.take(kind="ident")]
            while self.peek()[1] == ".":
                self.take(".")
                names.append(self.take(kind="ident"))
            value = ("ref", tuple(names))
        else:
            raise AlloyConfigError(f"unexpected {token!r} in an expression")
        while self.peek()[1] == "(":
            if value[0] != "ref":
                raise AlloyConfigError("only functions can be called")
            self.take("(")
            value = ("call", ".".join(value[1]), self.expressions_until(")"))
        return value

    def expressions_until(self, close: str) -> list:
        """Comma-separated expressions (a trailing comma allowed), then `close`."""
        items = []
        while self.peek()[1] != close:
            items.append(self.expression())
            if self.peek()[1] == ",":
                self.take(",")
        self.take(close)
        return items


def _unquote(token: str) -> str:
    return token[1:-1] if token.startswith("`") else json.loads(token)


@dataclass
class Endpoint:
    url: str
    headers: dict  # name → unevaluated expression (a file it reads may change: Alloy re-reads it)


@dataclass
class Journal:
    """One loki.source.journal: the entries its `matches` select, with `labels`, go to the
    endpoints (indices into AlloyLogs.endpoints) of the loki.write components it forwards to."""

    label: str
    matches: str
    labels: dict[str, str]
    endpoints: list[int]

    @property
    def stream(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.labels.items()))


@dataclass
class AlloyLogs:
    """What the configuration ships: each journal source's entries, to its endpoints."""

    journals: list[Journal]
    endpoints: list[Endpoint]
    files: dict[str, tuple[str, bool]] = field(default_factory=dict)  # local.file label → (filename, is_secret)

    def evaluate(self, expression, root: Path):
        """An expression's value now (local.file read under the machine's `root`)."""
        kind = expression[0]
        if kind == "lit":
            return expression[1]
        if kind == "object":
            return {key: self.evaluate(value, root) for key, value in expression[1].items()}
        if kind == "list":
            return [self.evaluate(value, root) for value in expression[1]]
        if kind == "ref":
            names = expression[1]
            if names[:2] == ("local", "file") and len(names) == 4 and names[3] == "content":
                if names[2] not in self.files:
                    raise AlloyConfigError(f"component local.file.{names[2]} does not exist")
                filename, is_secret = self.files[names[2]]
                try:
                    return OptionalSecret(Path(str(root) + filename).read_text(), is_secret)
                except OSError as error:
                    raise AlloyConfigError(f"local.file.{names[2]}: failed to read file: {error.strerror}") from None
            raise AlloyConfigError(f"the lab's Alloy does not evaluate {'.'.join(names)}")
        name, arguments = expression[1], [self.evaluate(argument, root) for argument in expression[2]]
        if name in ("convert.nonsensitive", "nonsensitive") and len(arguments) == 1:  # current name, older one
            value = arguments[0]
            return value.value if isinstance(value, OptionalSecret) else _string(value, name)
        if name in ("string.trim_space", "trim_space") and len(arguments) == 1:
            return _string(arguments[0], name).strip()
        raise AlloyConfigError(f"the lab's Alloy does not evaluate the function {name}")

    def headers(self, endpoint: Endpoint, root: Path) -> dict[str, str]:
        return {name: _string(self.evaluate(expression, root), f"headers[{name!r}]")
                for name, expression in endpoint.headers.items()}


def _string(value, where: str) -> str:
    """As Alloy converts a value into a string: a secret may not become one."""
    if isinstance(value, OptionalSecret):
        if value.is_secret:
            raise AlloyConfigError(f"{where}: secrets may not be converted into strings")
        return value.value
    if not isinstance(value, str):
        raise AlloyConfigError(f"{where}: expected string, got {type(value).__name__}")
    return value


def parse_alloy(text: str) -> AlloyLogs:
    """The journal-to-Loki pipelines of an Alloy configuration (its loki.source.journal components)."""
    blocks = _AlloyParser(text).body(None)["blocks"]
    files, writes, journals = {}, {}, []
    for name, label, body in blocks:
        attributes = body["attributes"]
        if name == "local.file":
            filename = attributes.get("filename", ("lit", None))
            secret = attributes.get("is_secret", ("lit", False))
            if filename[0] != "lit" or not isinstance(filename[1], str) or secret[0] != "lit":
                raise AlloyConfigError(f"local.file.{label}: the lab reads a literal filename and is_secret only")
            files[label] = (filename[1], bool(secret[1]))
        elif name == "loki.write":
            endpoints = []
            for block_name, _, endpoint in body["blocks"]:
                if block_name != "endpoint":
                    continue
                unevaluated = sorted(({"bearer_token", "bearer_token_file", "tenant_id"} & set(endpoint["attributes"]))
                                     | ({"basic_auth", "authorization", "oauth2"}
                                        & {block for block, _, _ in endpoint["blocks"]}))
                if unevaluated:
                    raise AlloyConfigError(f"loki.write.{label}: the lab's Alloy sends the endpoint's headers only, "
                                           f"not {', '.join(unevaluated)}")
                url = endpoint["attributes"].get("url", ("lit", None))
                if url[0] != "lit" or not isinstance(url[1], str):
                    raise AlloyConfigError(f"loki.write.{label}: the lab reads a literal endpoint url only")
                headers = endpoint["attributes"].get("headers", ("object", {}))
                if headers[0] != "object":
                    raise AlloyConfigError(f"loki.write.{label}: headers must be an object")
                endpoints.append(Endpoint(url[1], dict(headers[1])))
            writes[label] = endpoints
        elif name == "loki.source.journal":
            journals.append((label, attributes))
    if not journals:
        raise AlloyConfigError("the configuration has no loki.source.journal: nothing is shipped")
    config = AlloyLogs(journals=[], endpoints=[], files=files)
    first_endpoint: dict[str, int] = {}  # loki.write label → the index of its first endpoint
    for label, attributes in journals:
        matches = attributes.get("matches", ("lit", ""))
        labels = attributes.get("labels", ("object", {}))
        if matches[0] != "lit" or labels[0] != "object" or any(value[0] != "lit" for value in labels[1].values()):
            raise AlloyConfigError(f"loki.source.journal.{label}: the lab reads literal matches and labels only")
        if "+" in (matches[1] or ""):
            raise AlloyConfigError(f"loki.source.journal.{label}: matches take no '+' (Alloy adds logical AND "
                                   "matches only): one source per alternative")
        journal = Journal(label, matches[1] or "", {key: str(value[1]) for key, value in labels[1].items()}, [])
        forward_to = attributes.get("forward_to", ("list", []))
        for receiver in forward_to[1] if forward_to[0] == "list" else []:
            names = receiver[1] if receiver[0] == "ref" else ()
            if len(names) != 4 or names[:2] != ("loki", "write") or names[3] != "receiver" or names[2] not in writes:
                raise AlloyConfigError(f"loki.source.journal.{label}: forward_to names no loki.write receiver of "
                                       "this configuration")
            if names[2] not in first_endpoint:
                first_endpoint[names[2]] = len(config.endpoints)
                config.endpoints += writes[names[2]]
            start = first_endpoint[names[2]]
            journal.endpoints += range(start, start + len(writes[names[2]]))
        config.journals.append(journal)
    return config


def _journal_selects(matches: str, unit: str) -> bool:
    """Whether `matches` ("FIELD=value ...", all of them) select the entries of `unit`
    (the only field the lab's entries carry)."""
    return all(term == f"_SYSTEMD_UNIT={unit}" for term in matches.split())


# --- the machine's side: shipping -----------------------------------------------------------------

PUSH_EVERY = 1.0  # loki.write's batch_wait
PUSH_TIMEOUT = 10.0
BATCH_LINES = 5000
PENDING_LINES = 10_000  # what waits while Cockpit cannot be reached; the oldest go first


def _valid_header_value(value: str) -> bool:
    """Go's net/http (httpguts.ValidHeaderFieldValue): no control character but tab."""
    return not any((ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F for char in value)


class LogShipper:
    """Alloy on one machine, for one run of its app: tails each unit's journal (`journals`:
    unit → its file) from where the machine's Alloy last stopped, and pushes the new lines
    of the units its sources select every second."""

    def __init__(self, config: AlloyLogs, root: Path, journals: dict[str, Path], proxy_url: str, ca_file: Path,
                 log: Callable[[str], None]) -> None:
        self.config, self.root, self.log = config, Path(root), log
        self.journals = {unit: Path(path) for unit, path in journals.items()}
        proxy = urlsplit(proxy_url)
        self.proxy = (proxy.hostname or "127.0.0.1", proxy.port or 80)
        self.tls = ssl.create_default_context(cafile=str(ca_file))
        self.positions = Path(str(self.root) + POSITIONS)
        self.offsets = self._positions()
        self.partial: dict[str, bytes] = {}
        # Per endpoint: (timestamp, stream labels, line) waiting to be pushed.
        self.pending: list[deque[tuple[int, tuple, str]]] = [deque(maxlen=PENDING_LINES) for _ in config.endpoints]
        self.last_problem = ""
        self._stop = threading.Event()
        name = next(iter(self.journals.values()), Path("alloy")).stem[-12:]
        self.thread = threading.Thread(target=self._run, name=f"alloy-{name}", daemon=True)

    def start(self) -> "LogShipper":
        self.thread.start()
        return self

    def stop(self, wait: bool = True, timeout: float = 2 * PUSH_TIMEOUT) -> None:
        """Ship what the app wrote until now (a last push), then stop."""
        self._stop.set()
        if wait and self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout)

    # --- how ------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(PUSH_EVERY):
            self._tick(final=False)
        self._tick(final=True)

    def _tick(self, final: bool) -> None:
        try:
            for unit, path in self.journals.items():
                lines = self._read(unit, path, final)
                for journal in self.config.journals:
                    if lines and _journal_selects(journal.matches, unit):
                        for index in journal.endpoints:
                            self.pending[index].extend((stamp, journal.stream, line) for stamp, line in lines)
            for endpoint, pending in zip(self.config.endpoints, self.pending, strict=True):
                while pending:
                    if not self._push(endpoint, pending):
                        break
        except Exception as error:  # Alloy keeps running whatever one push does
            self._problem(f"{error.__class__.__name__}: {error}")

    def _positions(self) -> dict[str, int]:
        try:
            saved = json.loads(self.positions.read_text())
            return {str(path): int(offset) for path, offset in saved["offsets"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def _read(self, unit: str, path: Path, final: bool) -> list[tuple[int, str]]:
        """The complete lines written to `path` since the last read (at the end: the
        incomplete last one too)."""
        key = str(path)
        offset, partial = self.offsets.get(key, 0), self.partial.get(key, b"")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return []
        if size < offset:  # the file was replaced: from its start
            offset, partial = 0, b""
        if size == offset and not (final and partial):
            return []
        with open(path, "rb") as stream:
            stream.seek(offset)
            data = partial + stream.read(size - offset)
        *complete, partial = data.split(b"\n")
        if final and partial:
            complete, partial = complete + [partial], b""
        self.offsets[key], self.partial[key] = size, partial
        self.positions.parent.mkdir(parents=True, exist_ok=True)
        self.positions.write_text(json.dumps({"offsets": {name: at - len(self.partial.get(name, b""))
                                                          for name, at in self.offsets.items()}}))
        stamp = time.time_ns()
        return [(stamp + index, line.decode("utf-8", errors="replace").rstrip("\r"))
                for index, line in enumerate(complete) if line.strip()]

    def _push(self, endpoint: Endpoint, pending: deque) -> bool:
        """One batch to one endpoint; whether to go on (the batch is settled: sent, or refused
        for good)."""
        batch = [pending[index] for index in range(min(len(pending), BATCH_LINES))]
        try:
            headers = self.config.headers(endpoint, self.root)
        except AlloyConfigError as error:
            self._problem(f"loki.write endpoint {endpoint.url}: {error}")
            return False
        for name, value in headers.items():
            if not _valid_header_value(value):
                self._problem(f'Post "{endpoint.url}": net/http: invalid header field value for "{name}"')
                return False
        url = urlsplit(endpoint.url)
        streams: dict[tuple, list] = {}
        for stamp, labels, line in batch:
            streams.setdefault(labels, []).append([str(stamp), line])
        body = json.dumps({"streams": [{"stream": dict(labels), "values": values}
                                       for labels, values in streams.items()]}).encode()
        connection = http.client.HTTPSConnection(*self.proxy, context=self.tls, timeout=PUSH_TIMEOUT)
        try:
            connection.set_tunnel(url.hostname or "", url.port or 443)
            connection.request("POST", url.path + (f"?{url.query}" if url.query else ""), body=body,
                               headers={**headers, "Content-Type": "application/json"})
            answer = connection.getresponse()
            text = answer.read().decode(errors="replace").strip()
        except (OSError, http.client.HTTPException) as error:
            self._problem(f'Post "{endpoint.url}": {error}')
            return False
        finally:
            connection.close()
        if answer.status // 100 == 2:
            for _ in batch:
                pending.popleft()
            self._problem("")
            return True
        if answer.status == 429 or answer.status >= 500:  # retried, as Alloy does
            self._problem(f"server returned HTTP status {answer.status}: {text[:300]}")
            return False
        for _ in batch:  # any other refusal is final: the batch is dropped, as Alloy does
            pending.popleft()
        self._problem(f"final error sending batch: server returned HTTP status {answer.status}: {text[:300]}")
        return True

    def _problem(self, message: str) -> None:
        """Say what goes wrong, once until it changes (Alloy logs every retry; a lab log would drown)."""
        if message and message != self.last_problem:
            self.log(message)
        self.last_problem = message


def _unit(root: Path) -> str:
    try:
        return json.loads(Path(str(root) + SECRETS_CONFIG).read_text()).get("unit") or ""
    except (OSError, ValueError, AttributeError):
        return ""


def alloy_config_text(app) -> str | None:
    """The Alloy configuration the machine's user data writes, if it ships logs."""
    return next((content for path, _, content in app.spec.boot_files if path == ALLOY_CONFIG), None)


def start_shipping(app, root: Path, log_file: Path, proxy_url: str, ca_file: Path, *,
                   log: Callable[[str], None] = print, other_units: dict[str, Path] | None = None) -> LogShipper:
    """Alloy for one run of `app` (lab.dataplane.apps.App): its log file (the journal of the
    unit its secrets.json names) and `other_units`' journals (unit → file) shipped as its
    user data's configuration says; AlloyConfigError if there is none, or Alloy would refuse it."""
    text = alloy_config_text(app)
    if text is None:
        raise AlloyConfigError(f"{app.name}'s user data writes no {ALLOY_CONFIG}")
    config = parse_alloy(text)
    for endpoint in config.endpoints:  # what Alloy checks as it loads the configuration
        for expression in endpoint.headers.values():
            _check_types(config, expression, root)
    journals = {_unit(root): log_file, **(other_units or {})}
    return LogShipper(config, root, journals, proxy_url, ca_file, log).start()


def _check_types(config: AlloyLogs, expression, root: Path) -> None:
    """A header that can never be a string (a secret) is refused when Alloy loads the configuration;
    a file missing yet (written by ciel-secrets before the app's start) is not."""
    try:
        _string(config.evaluate(expression, root), "headers")
    except AlloyConfigError as error:
        if "secrets may not be converted" in str(error):
            raise AlloyConfigError(f"loki.write: {error}") from None


def ship_app_log(plane, app, previous: LogShipper | None = None) -> LogShipper | None:
    """What AppPlane (lab/dataplane/apps.py) calls once it has started `app`: the machine's
    Alloy, if its user data configures one and the plane knows the lab's proxy; None
    otherwise (said in the plane's log). `previous`: the shipper of an earlier run, stopped."""
    if previous is not None:
        previous.stop(wait=False)
    if alloy_config_text(app) is None:
        return None

    def say(message: str) -> None:
        plane.log(f"server {app.name} ({app.server_id}): alloy: {message}")

    if not getattr(plane, "proxy_url", None) or not getattr(plane, "ca_file", None):
        say("no lab proxy to reach Cockpit through: logs stay on the machine")
        return None
    log_file = plane.supervisor.logs / f"{plane.process_name(app.server_id).replace('/', '_')}.log"
    try:
        return start_shipping(app, plane.machine_root(app.server_id), log_file, plane.proxy_url, plane.ca_file,
                              log=say, other_units=plane.other_journals(app.server_id))
    except AlloyConfigError as error:
        say(f"the configuration does not load, nothing is shipped: {error}")
        return None
