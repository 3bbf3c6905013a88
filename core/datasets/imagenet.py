"""ImageNet-1k class identities from timm's kept tables: a synset id (wnid) to its index in the
1,000-class order the class-conditional ImageNet models (DiT-XL/2) were trained with, and to
its class name (the WordNet lemmas, e.g. "tench, Tinca tinca"), which the papers' pipelines
use as the class prompt."""
from __future__ import annotations

import functools
import re

from core.errors import BenchError

CLASS_SPACE = "imagenet-1k"
PROMPT_SOURCE = "ImageNet-1k class names (timm ImageNetInfo)"
_WNID = re.compile(r"^n\d{8}$")


@functools.cache
def _tables() -> tuple[dict[str, int], dict[str, str]]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    names = info.label_names()
    return {wnid: i for i, wnid in enumerate(names)}, {wnid: info.label_name_to_description(wnid) for wnid in names}


def is_imagenet_wnid(name: str) -> bool:
    """Whether ``name`` is the synset id of one of the 1,000 ImageNet-1k classes."""
    return bool(_WNID.match(name)) and name in _tables()[0]


def imagenet_index(wnid: str) -> int:
    """The class index of ``wnid`` in ImageNet-1k's sorted-synset order (0 = n01440764, tench)."""
    try:
        return _tables()[0][wnid]
    except KeyError:
        raise BenchError(f"'{wnid}' is not the synset id (wnid) of an ImageNet-1k class") from None


def imagenet_name(wnid: str) -> str:
    """The ImageNet-1k class name of ``wnid``, e.g. "Australian terrier" or "tench, Tinca tinca"."""
    imagenet_index(wnid)
    return _tables()[1][wnid]
