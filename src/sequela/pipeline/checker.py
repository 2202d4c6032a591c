"""Reading params.yaml by dotted key, with the checks every value goes through.

`Checker` remembers each key it reads, so whatever is left unread after validation
(sequela/pipeline/config.py) is a key no stage uses, and the user is warned about it.
"""

from __future__ import annotations

from typing import Any

from sequela.pipeline.errors import ConfigError

INF = float("inf")
MISSING = object()


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fail(key: str, value: Any, allowed: str) -> None:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:76] + " ..."  # the message stays one readable line
    raise ConfigError(f"params.yaml: {key} = {shown} is not allowed; allowed: {allowed}")


class Checker:
    """Reads keys of params.yaml by dotted name, remembering each one read, so that whatever is
    left unread at the end is a key no stage uses."""

    def __init__(self, params: Any):
        if not isinstance(params, dict):
            raise ConfigError(f"params.yaml: the file holds a {type(params).__name__}, not a mapping of sections")
        self.params = params
        self.read: set[str] = set()

    def get(self, key: str, default: Any = MISSING) -> Any:
        self.read.add(key)
        node = self.params
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is not MISSING:
                    return default
                raise ConfigError(f"params.yaml: {key} is missing")
            node = node[part]
        return node

    def number(self, key: str, low: float, high: float, low_open: bool = True, high_open: bool = True) -> float:
        value = self.get(key)
        ok = (
            is_number(value)
            and (value > low if low_open else value >= low)
            and (value < high if high_open else value <= high)
        )
        if not ok:
            lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
            fail(key, value, f"a number in {lo}{low}, {high}{hi}")
        return value

    def integer(self, key: str, low: int = 1) -> int:
        value = self.get(key)
        if not is_int(value) or value < low:
            fail(
                key,
                value,
                "a positive integer" if low == 1 else "a non-negative integer" if low == 0 else f"an integer >= {low}",
            )
        return value

    def boolean(self, key: str) -> bool:
        value = self.get(key)
        if not isinstance(value, bool):
            fail(key, value, "true or false")
        return value

    def choice(self, key: str, known) -> Any:
        value = self.get(key)
        if not any(value == k and type(value) is type(k) for k in known):
            fail(key, value, f"one of {', '.join(map(str, known))}")
        return value

    def names(self, key: str, known, empty_ok: bool = False) -> list:
        value = self.get(key)
        if not isinstance(value, list) or (not value and not empty_ok):
            fail(key, value, f"a {'' if empty_ok else 'non-empty '}list drawn from {', '.join(known)}")
        for name in value:
            if not isinstance(name, str) or name not in known:
                fail(key, name, f"one of {', '.join(known)}")
        if len(set(value)) != len(value):
            fail(key, value, "a list without repeats")
        return value

    def unread(self) -> list[str]:
        """Keys in the file that no check read: the top-most unread node of each unread branch."""
        prefixes = {".".join(k.split(".")[:i]) for k in self.read for i in range(1, k.count(".") + 1)}
        out = []

        def walk(node: dict, path: str) -> None:
            for name, value in node.items():
                key = f"{path}.{name}" if path else str(name)
                if not isinstance(name, str) or "." in name:
                    out.append(key)  # `defense.epochs:` as one key is not the `epochs` of `defense:`
                elif isinstance(value, dict) and (key in self.read or key in prefixes):
                    walk(value, key)  # a section: look inside it
                elif key not in self.read:
                    out.append(key)

        walk(self.params, "")
        return out
