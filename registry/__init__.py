"""The zoo's catalogue: what models exist, where their weights come from, how to preprocess for them.

Standard library only (no torch): ``zoo list`` answers at once. The arrows go one way:
``zoo.registry`` <- ``zoo`` <- ``zoo.finetune`` <- ``zoo.cli``; this package imports none of them.

Modules: ``records`` (the frozen record types), ``schema`` (JSON to records, every check), ``rules`` (what
an entry may ask of a library and of the file system), ``serialiser`` (records to JSON: the one way
entries are written), ``catalog`` (built-in and user files, ownership, lookup, search), ``assets`` (cards,
label sets, packaged files, confined to their folder), ``env`` (environment variables), ``errors``.
"""

from .assets import card_text, package_file
from .catalog import Catalog, ExternalName, builtin_entries, catalog, get_entry, labels_for, list_external, list_models
from .errors import RegistryError, RegistryWarning, UnknownModelError, ZooError
from .records import Architecture, Checksum, Entry, FileSpec, Head, Metric, Preprocessing, Source
from .schema import parse_entry
from .serialiser import entry_to_dict, write_entries

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
    "RegistryWarning",
    "Source",
    "UnknownModelError",
    "ZooError",
    "builtin_entries",
    "card_text",
    "catalog",
    "entry_to_dict",
    "get_entry",
    "labels_for",
    "list_external",
    "list_models",
    "package_file",
    "parse_entry",
    "write_entries",
]
