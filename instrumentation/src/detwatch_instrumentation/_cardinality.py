"""The cardinality guard for class labels on metric attributes.

Every distinct ``objdet.detection.class`` value becomes a time series per instrument
and per model; an open-vocabulary detector (or a bug that emits free text as a
class) would blow up the store. Classes in an allow-list, or the first ``max_classes``
distinct classes seen, keep their names; all others fold into ``other``.

"First seen" rather than "most frequent": a label that has been exported stays in
the store, so re-ranking by frequency would rename series over time and break
continuity. Users who know their vocabulary pass it as the allow-list (their
top-N). Prediction events are not metrics and always carry the real class.
"""

from __future__ import annotations

from collections.abc import Iterable

from .semconv import OTHER_CLASS


class ClassFolder:
    """Folds class labels beyond the limit into ``other``; used by one thread."""

    __slots__ = ("_allowlist", "_max", "_seen")

    def __init__(self, max_classes: int, allowlist: Iterable[str] | None = None) -> None:
        self._max = max_classes
        self._allowlist = frozenset(allowlist) if allowlist is not None else None
        self._seen: set[str] = set()

    @property
    def max_classes(self) -> int:
        return self._max

    @property
    def allowlist(self) -> frozenset[str] | None:
        return self._allowlist

    def fold(self, class_name: str) -> str:
        """The label to put on metrics for ``class_name``."""
        if self._allowlist is not None:
            return class_name if class_name in self._allowlist else OTHER_CLASS
        if class_name in self._seen:
            return class_name
        if len(self._seen) < self._max:
            self._seen.add(class_name)
            return class_name
        return OTHER_CLASS
