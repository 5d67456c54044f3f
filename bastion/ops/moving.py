"""Moving tenants between databases and engines: `bastion tenant export T FILE` and
`bastion tenant import FILE` (the format: bastion.store.portable, docs/operations.md)."""

from __future__ import annotations

import os
from pathlib import Path

from bastion.errors import ConfigError
from bastion.store import portable
from bastion.store.store import Store


def export_tenant(store: Store, name: str, path: str | Path, *, shared: bool = True) -> portable.Exported:
    """Write tenant `name` (and, with `shared`, the ATT&CK catalogs its coverage was measured
    on) to `path`, gzip-compressed when the name ends in .gz; one consistent read per section."""
    path = Path(path)
    found = portable.tenant_ids(store, [name.strip().lower()])
    tmp = path.with_name(path.name + ".partial")
    try:
        with portable.gzip_writer(tmp, path.name.endswith(".gz")) as out:
            done = portable.export(store, out, found, shared=shared)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.replace(tmp, path)
    return done


def import_tenant(store: Store, path: str | Path, *, rename: str | None = None) -> portable.Imported:
    """Import the tenants of an export into this database (at the newest schema revision). A
    tenant is created as exported (or as `rename`); one that exists must be empty."""
    store.require_head(store.url)
    try:
        stream = portable.open_export(path)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    with stream:
        return portable.import_export(store, stream, str(path),
                                      rename=rename.strip().lower() if rename else None)
