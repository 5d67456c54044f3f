"""Scanner output in: one module per format, each turning its input into `Record`s.

A format module declares:

    NAME = "nuclei"                      # the --format name, and the capability recorded
    DESCRIPTION = "nuclei JSON lines or JSON array (v2 and v3 keys)"
    def sniff(sample: Sample) -> bool    # does this input look like this format?
    def parse(stream) -> Iterator[Record | Invalid]

`parse` reads a binary, peekable stream (already decompressed) and yields one `Record` per input
record, or an `Invalid` naming the record's place and the reason when it cannot be read. It never
touches the store. A whole-file problem (not XML at all, a refused DTD) raises `Malformed`.

The importer (`bastion.ingest.runner`) detects the format, merges what the records say with what
is stored, keeps each risk's lifecycle and writes through the store's one write path.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Detection tries them in this order: the most specific signatures first.
FORMAT_NAMES = ("sarif", "nmap", "bbot", "nuclei", "httpx", "subfinder", "naabu")


def format_module(name: str) -> ModuleType:
    return importlib.import_module(f"bastion.ingest.{name}")


def formats() -> dict[str, ModuleType]:
    return {name: format_module(name) for name in FORMAT_NAMES}
