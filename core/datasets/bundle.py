"""A loaded data set as one record (its splits as tensors, its classes and statistics as JSON), so
a node of a cluster that lacks the data receives the driver's copy instead of reading its own.
The record is keyed by the data set's fingerprint; the fingerprint is recomputed on arrival."""
from __future__ import annotations

from typing import Any

from core.datasets.base import Dataset, Split

KIND = "datasets"  # the artifact kind of bundled data sets
_SPLITS = ("train", "val", "test")
_FIELDS = ("name", "class_names", "prompts", "channels", "image_size", "mean", "std", "source", "wnids",
           "prompt_source", "flips")


def to_record(data: Dataset) -> dict[str, Any]:
    """The record of ``data``: every field and split, nothing that needs unpickling."""
    record: dict[str, Any] = {name: getattr(data, name) for name in _FIELDS}
    for split in _SPLITS:
        part: Split = getattr(data, split)
        record[split] = {"images": part.images, "labels": part.labels}
    record["fingerprint"] = data.fingerprint()
    return record


def from_record(record: dict[str, Any]) -> Dataset:
    """The data set of a record; raises ValueError when its content is not the fingerprint it claims."""
    fields = {name: record[name] for name in _FIELDS if name in record}  # older records: the defaults
    for name in ("class_names", "prompts", "mean", "std"):
        fields[name] = tuple(fields[name])
    if fields["wnids"] is not None:
        fields["wnids"] = tuple(fields["wnids"])
    splits = {s: Split(record[s]["images"], record[s]["labels"]) for s in _SPLITS}
    data = Dataset(**fields, **splits)
    if data.fingerprint() != record["fingerprint"]:
        raise ValueError(f"the bundle of {data.name} holds other data than its fingerprint {record['fingerprint']}")
    return data
