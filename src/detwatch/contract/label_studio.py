"""Label Studio's labeling config for detwatch's tasks: rectangles with one class each, on one image.

The names are the wire format both directions share: every exported result says
``from_name`` :data:`FROM_NAME` and ``to_name`` :data:`TO_NAME`, and the config declares
them. Here, below the review package and the client, so that the client can merge the
configs of several pages (:func:`config_classes`) into one without importing the server's
modules.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Final
from xml.sax.saxutils import quoteattr

__all__ = ["FROM_NAME", "TO_NAME", "config_classes", "labeling_config"]

FROM_NAME: Final = "label"
"""The ``RectangleLabels`` control (``from_name`` of every result)."""
TO_NAME: Final = "image"
"""The ``Image`` object (``to_name``), read from ``data.image``."""


def labeling_config(classes: Iterable[str]) -> str:
    """The labeling config the tasks are made for: rectangles with one of ``classes`` (sorted, once each)."""
    labels = "".join(f"<Label value={quoteattr(c)}/>" for c in sorted(set(classes)))
    return (
        f'<View><Image name="{TO_NAME}" value="$image"/>'
        f'<RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}">{labels}</RectangleLabels></View>'
    )


def config_classes(config: str) -> list[str]:
    """The class names a config of :func:`labeling_config` declares (a config this module wrote: trusted XML)."""
    root = ET.fromstring(config)
    return [label.attrib["value"] for label in root.iter("Label")]
