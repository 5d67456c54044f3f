"""Zip archives of files to import (a Sigma rules release, a repository download), unpacked into
a directory that is then imported like any other (its files sorted, hidden ones skipped).

Unpacked as a stream, within the limits of bastion.ingest.limits: the bytes the archive expands
to in all (BASTION_MAX_DECOMPRESSED) and their ratio to the compressed bytes (BASTION_MAX_RATIO,
from BASTION_MAX_RATIO_AFTER); a member named outside the directory (absolute, `..`) refuses
the archive. Every refusal is one line naming the archive, the member and the limit."""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from pathlib import PurePosixPath

from bastion.ingest import limits
from bastion.ingest.records import Malformed

ZIP_MAGIC = b"PK\x03\x04"
MAX_MEMBERS = 100_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_zip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == ZIP_MAGIC


def unzip(path: str, dest: str, name: str) -> None:
    """Unpack the zip archive at `path` (known to the user as `name`) into the directory `dest`."""
    lim = limits.current()
    expanded = compressed = 0
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise Malformed(f"{name}: more than {MAX_MEMBERS:,} members in the archive")
            for info in members:
                if info.is_dir():
                    continue
                member = limits.excerpt(_CONTROL.sub("_", info.filename))
                parts = PurePosixPath(_CONTROL.sub("_", info.filename.replace("\\", "/"))).parts
                if not parts or parts[0] == "/" or ".." in parts or ":" in parts[0]:
                    raise Malformed(f"{name}: {member}: a member named outside the archive")
                target = os.path.join(dest, *parts)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                compressed += info.compress_size
                with archive.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        expanded += len(chunk)
                        where = f"{name}: {member}"
                        if expanded > lim.decompressed:
                            raise limits.refuse(f"zip content expands beyond {lim.decompressed:,} bytes",
                                                where, "decompressed")
                        if expanded > lim.ratio_after and expanded > lim.ratio * max(compressed, 1):
                            raise limits.refuse(f"zip content expands more than {lim.ratio} times "
                                                f"({compressed:,} bytes to {expanded:,})", where, "ratio")
                        out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError, RuntimeError) as exc:
        raise Malformed(f"{name}: not a readable zip archive: {limits.excerpt(str(exc))}") from None
