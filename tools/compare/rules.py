"""The rules: which differences are expected, and why.

The shipped rules are ``rules.toml`` beside this module; ``--rules FILE``
adds more. A rule matches a difference when its scenario, call and field
patterns (``fnmatch`` patterns, where ``*`` crosses dots) all match.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


class RulesError(Exception):
    """A rules file that cannot be read or has a malformed rule."""


@dataclass(frozen=True)
class Rule:
    reason: str
    scenario: str = "*"
    call: str = "*"
    field: str = "*"

    def matches(self, scenario: str, call: str, field: str) -> bool:
        return (
            fnmatch.fnmatchcase(scenario, self.scenario)
            and fnmatch.fnmatchcase(call, self.call)
            and fnmatch.fnmatchcase(field, self.field)
        )


def parse_rules(text: str, source: str) -> list[Rule]:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RulesError(f"{source}: {e}") from e
    rules = []
    for index, entry in enumerate(table.get("rule", [])):
        where = f"{source}: rule {index + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("reason"), str):
            raise RulesError(f"{where}: every rule needs a reason")
        unknown = set(entry) - {"reason", "scenario", "call", "field"}
        if unknown:
            raise RulesError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        if not all(isinstance(v, str) for v in entry.values()):
            raise RulesError(f"{where}: every value is a string")
        rules.append(Rule(**entry))
    return rules


def shipped_rules() -> list[Rule]:
    text = resources.files("pycrid.tools.compare").joinpath("rules.toml").read_text()
    return parse_rules(text, "rules.toml")


def load_rules(extra: list[Path]) -> list[Rule]:
    rules = shipped_rules()
    for path in extra:
        try:
            text = path.read_text()
        except OSError as e:
            raise RulesError(f"{path}: {e.strerror}") from e
        rules.extend(parse_rules(text, str(path)))
    return rules


def reason_for(rules: list[Rule], scenario: str, call: str, field: str) -> str | None:
    """The reason of the first rule that expects this difference, or None."""
    for rule in rules:
        if rule.matches(scenario, call, field):
            return rule.reason
    return None
