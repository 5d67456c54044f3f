"""Bastion: attack surface and detection coverage, one declared schema on SQLite and PostgreSQL."""

__version__ = "0.1.0"
