"""YAML text that remembers where each key was written.

Beamline scientists edit these files by hand: an error must point at the line.
PyYAML's composed node tree carries the marks; the loaded data carries the values.
Duplicate keys, which PyYAML silently resolves to the last one, are refused here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


class ConfigError(ValueError):
    """One line: ``<file>:<line>: <key path>: <what is wrong, what was expected>``."""

    def __init__(self, source: str, line: int | None, message: str):
        self.source, self.line, self.message = source, line, message
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {message}")


def dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class YamlDocument:
    data: Any
    source: str
    root: yaml.Node | None

    def line(self, loc: tuple) -> int | None:
        """1-based line of the deepest key of ``loc`` that exists in the text."""
        node, line = self.root, (self.root.start_mark.line + 1 if self.root else None)
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == str(part):
                        node, line = value, key.start_mark.line + 1
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def error(self, loc: tuple, message: str) -> ConfigError:
        return ConfigError(self.source, self.line(loc), f"{dotted(loc)}: {message}" if loc else message)


def _check_duplicates(node: yaml.Node, source: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if key.value in seen:
                raise ConfigError(source, key.start_mark.line + 1,
                                  f"key {key.value!r} given twice (first on line {seen[key.value]})")
            seen[key.value] = key.start_mark.line + 1
            _check_duplicates(value, source)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicates(item, source)


def parse(text: str, source: str = "<string>") -> YamlDocument:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(source, mark.line + 1 if mark else None, f"not valid YAML: {problem}") from None
    if root is not None:
        _check_duplicates(root, source)
    return YamlDocument(data, source, root)


def read(path: str) -> YamlDocument:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    return parse(text, str(path))
