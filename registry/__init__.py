"""The zoo's catalogue: what models exist, where their weights come from, how to preprocess for them.

Standard library only (no torch): ``zoo list`` answers at once. The arrows go one way:
``zoo.registry`` <- ``zoo`` <- ``zoo.finetune`` <- ``zoo.cli``; this package imports none of them.
"""

from .catalog import Catalog, ExternalName, builtin_entries, catalog, get_entry, labels_for, list_external, list_models
from .errors import RegistryError, UnknownModelError, ZooError
from .schema import Architecture, Checksum, Entry, FileSpec, Head, Metric, Preprocessing, Source

__all__ = [
    "Architecture",
    "Catalog",
    "Checksum",
    "Entry",
    "ExternalName",
    "FileSpec",
    "Head",
    "Metric",
    "Preprocessing",
    "RegistryError",
    "Source",
    "UnknownModelError",
    "ZooError",
    "builtin_entries",
    "catalog",
    "get_entry",
    "labels_for",
    "list_external",
    "list_models",
]
