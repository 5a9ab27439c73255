"""Loading alerts.toml: text -> `RulesConfig` or every error with file and line; hot reload.

In: a path (or the text and a name for it). Out: a `RulesConfig`, or `RulesError` whose
`errors` read `alerts.toml:42: rules[3] "cost-spike": detector.kind "ratoi" is unknown; ...`,
sorted by line. `spanwatch check`, startup and `RulesWatcher` (reload) share this one path.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tomllib
from datetime import datetime, timedelta
from pathlib import Path

from rules.config import RulesConfig
from rules.validate import Loc, Problem, check_document, section

log = logging.getLogger("spanwatch.rules")

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_BASIC_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"')
_LITERAL_KEY = re.compile(r"'([^']*)'")
_TOML_ERROR = re.compile(r"(.*) \(at line (\d+), column (\d+)\)")


class RulesError(ValueError):
    """alerts.toml is invalid; `errors` holds one positioned message per mistake."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def load_rules(path: Path | str) -> RulesConfig:
    """Read and validate an alerts.toml. Raises RulesError (every error, sorted by line)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RulesError([f"{path}: cannot read the rules file: {reason}"]) from None
    return parse_rules(text, str(path))


def parse_rules(text: str, source: str = "alerts.toml") -> RulesConfig:
    """Validate alerts.toml `text`; `source` names it in the messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError([_syntax_error(source, str(exc), text)]) from None
    config, problems = check_document(doc)
    if problems:
        positions = TomlPositions(text)
        ordered = sorted(enumerate(problems),
                         key=lambda item: (positions.line_of(item[1].loc), item[1].phase,
                                           item[0]))
        raise RulesError([_format(source, positions, doc, problem) for _, problem in ordered])
    assert config is not None  # no problems means the shape pass built it
    return config


def _format(source: str, positions: TomlPositions, doc: dict[str, object],
            problem: Problem) -> str:
    where = section(problem.loc, doc)
    return (f"{source}:{positions.line_of(problem.loc)}: "
            f"{where + ': ' if where else ''}{problem.message}")


def _syntax_error(source: str, message: str, text: str) -> str:
    match = _TOML_ERROR.fullmatch(message)
    if match is None:  # e.g. "... (at end of document)"
        reason = message.removesuffix(" (at end of document)")
        return f"{source}:{max(1, len(text.splitlines()))}: invalid TOML: {reason}"
    reason, line, column = match.groups()
    hint = ("; is a string missing its closing quote?"
            if reason == "Illegal character '\\n'" else "")
    return f"{source}:{line}: invalid TOML: {reason} (column {column}){hint}"


class TomlPositions:
    """Line of each table header and key in TOML text (tomllib reports none).

    A small line scanner: `[table]`, `[[array.of.tables]]` (counted, so the nth `[[rules]]`
    is `("rules", n)`), `key = value` and dotted keys; it skips multi-line strings and arrays.
    `line_of` answers with the closest enclosing key it knows (an array element -> its key).
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[Loc, int] = {}
        self._arrays: dict[Loc, int] = {}
        self._scan(text)

    def line_of(self, loc: Loc) -> int:
        path = tuple(str(part) if index == 1 and loc[0] == "tiers" else part
                     for index, part in enumerate(loc))
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return 1

    def _scan(self, text: str) -> None:
        table: Loc = ()
        array: Loc = ()  # key of the multi-line array being read, and its next element
        element, depth, open_string = 0, 0, ""
        for number, text_line in enumerate(text.splitlines(), start=1):
            line = text_line
            if open_string:
                end = line.find(open_string)
                if end < 0:
                    continue
                line, open_string = line[end + 3:], ""
            if depth > 0:
                stripped = line.strip()
                if depth == 1 and array and stripped and stripped[0] not in "]#,":
                    self._lines.setdefault((*array, element), number)
                depth, open_string, commas = _scan_value(line, depth)
                element += commas
                continue
            stripped = line.strip()
            if stripped.startswith("["):
                is_array = stripped.startswith("[[")
                parsed = _keys(stripped, 2 if is_array else 1)
                if parsed is not None:
                    table = self._resolve(parsed[0], is_array=is_array)
                    self._lines.setdefault(table, number)
                continue
            parsed = _keys(stripped, 0)
            if parsed is None or not stripped[parsed[1]:].startswith("="):
                continue
            key = table + self._resolve(parsed[0], base=table)
            self._lines.setdefault(key, number)
            value = stripped[parsed[1] + 1:]
            depth, open_string, element = _scan_value(value, 0)
            array = key if value.lstrip().startswith("[") else ()

    def _resolve(self, keys: list[str], *, is_array: bool = False, base: Loc = ()) -> Loc:
        path: list[str | int] = []
        for index, key in enumerate(keys):
            path.append(key)
            full = base + tuple(path)
            if is_array and index == len(keys) - 1:
                self._arrays[full] = self._arrays.get(full, -1) + 1
                path.append(self._arrays[full])
            elif full in self._arrays:
                path.append(self._arrays[full])
        return tuple(path)


def _keys(text: str, position: int) -> tuple[list[str], int] | None:
    """A dotted key at `position`: its parts and the position after it (spaces skipped)."""
    keys: list[str] = []
    while True:
        while position < len(text) and text[position] in " \t":
            position += 1
        for pattern in (_BASIC_KEY, _LITERAL_KEY, _BARE_KEY):
            match = pattern.match(text, position)
            if match is not None:
                keys.append(match.group(1) if match.groups() else match.group(0))
                position = match.end()
                break
        else:
            return None
        while position < len(text) and text[position] in " \t":
            position += 1
        if position < len(text) and text[position] == ".":
            position += 1
            continue
        return keys, position


def _scan_value(text: str, depth: int) -> tuple[int, str, int]:
    """Read a value's text from bracket `depth`: the depth after it, the delimiter of a
    multi-line string it leaves open ("" if none) and the commas at depth 1 (array elements
    passed), ignoring brackets and commas inside strings and comments."""
    commas, position = 0, 0
    while position < len(text):
        char = text[position]
        if text.startswith(('"""', "'''"), position):
            end = text.find(text[position:position + 3], position + 3)
            if end < 0:
                return depth, text[position:position + 3], commas
            position = end + 3
            continue
        if char in "\"'":
            position += 1
            while position < len(text) and text[position] != char:
                position += 2 if char == '"' and text[position] == "\\" else 1
        elif char == "#":
            break
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 1:
            commas += 1
        position += 1
    return depth, "", commas


class RulesWatcher:
    """Hot reload: `poll(now)` re-reads alerts.toml at most every `interval`; a changed file
    that validates replaces `current`, an invalid one is logged (every error) and ignored.

    The file's SHA-256 is compared, not its mtime, so editors that save by rename and coarse
    file-system clocks are both seen; the file is small. Raises RulesError at construction if
    the initial file is invalid (startup must not run without rules).
    """

    def __init__(self, path: Path | str, *, interval: timedelta = timedelta(seconds=5)) -> None:
        self.path = Path(path)
        self.interval = interval
        data = self._read_initial()
        self.current: RulesConfig = parse_rules(data.decode("utf-8", errors="replace"),
                                                str(self.path))
        self._applied = hashlib.sha256(data).hexdigest()
        self._rejected: str | None = None
        self._read_error: str | None = None
        self._checked_at: datetime | None = None

    def _read_initial(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise RulesError([f"{self.path}: cannot read the rules file: {exc.strerror}"]) \
                from None

    def poll(self, now_wall: datetime) -> RulesConfig | None:
        """The new config when a changed, valid file was applied at this poll, else None."""
        if self._checked_at is not None and now_wall - self._checked_at < self.interval:
            return None
        self._checked_at = now_wall
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            if self._read_error != exc.strerror:
                self._read_error = exc.strerror
                log.error("rules reload failed file=%s error=%s kept_rules=%d", self.path,
                          exc.strerror, len(self.current.rules))
            return None
        self._read_error = None
        digest = hashlib.sha256(data).hexdigest()
        if digest in (self._applied, self._rejected):
            return None
        try:
            config = parse_rules(data.decode("utf-8"), str(self.path))
        except (RulesError, UnicodeDecodeError) as exc:
            self._rejected = digest
            errors = exc.errors if isinstance(exc, RulesError) else [f"{self.path}: {exc}"]
            for message in errors:
                log.error("rules reload rejected file=%s error=%s", self.path, message)
            log.error("rules reload kept the previous rules file=%s kept_rules=%d errors=%d "
                      "digest=%s", self.path, len(self.current.rules), len(errors), digest[:12])
            return None
        self.current, self._applied, self._rejected = config, digest, None
        log.info("rules reloaded file=%s rules=%d digest=%s", self.path, len(config.rules),
                 digest[:12])
        return config
