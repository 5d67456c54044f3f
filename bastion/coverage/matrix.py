"""The ATT&CK matrix of a coverage result, laid out as the Navigator draws it: one column per
tactic in matrix order, in each the techniques counted in that tactic (by name), each with its
sub-techniques counted in the same tactic. A cell carries the technique's score, whether it is
covered, and a colour on the layer's gradient (bastion.coverage.layer.GRADIENT, from its middle
colour at the lowest covered score to its last at the highest): covered cells are coloured,
gaps are not, so a heat map shows coverage and its strength at a glance.

`behind` lists what a cell counts through: each detection (health, status, level) with the
mappings that tie it to the technique (confidence, method, rationale, validation), read
through the store's entity reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bastion.coverage.compute import Coverage, TacticResult, TechniqueResult
from bastion.coverage.layer import GRADIENT
from bastion.schema.batch import key_for

MAPPING_FIELDS = ("technique", "confidence", "method", "mapped_by", "rationale", "validation",
                  "attack_version")


@dataclass
class Cell:
    id: str
    name: str
    covered: bool
    score: float
    count: int
    max_level: str | None
    colour: str | None  # None: a gap, left uncoloured
    subtechniques: list["Cell"] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "subtechniques"}
        out["subtechniques"] = [s.as_dict() for s in self.subtechniques]
        return out


@dataclass
class Column(TacticResult):
    """A tactic's figures and its cells."""

    cells: list[Cell] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "cells"},
                "cells": [c.as_dict() for c in self.cells]}


@dataclass
class Matrix:
    account: str
    domain: str
    version: str
    method: str
    aggregation: str
    min_score: float  # the lowest and highest covered scores: the gradient's ends
    max_score: float
    overall: dict[str, Any]
    columns: list[Column]

    def cells(self):
        """Every cell, sub-techniques included (a technique in several tactics once per column)."""
        for col in self.columns:
            for cell in col.cells:
                yield col, cell
                for sub in cell.subtechniques:
                    yield col, sub

    def covered(self) -> set[str]:
        return {c.id for _col, c in self.cells() if c.covered}

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "columns"},
                "columns": [c.as_dict() for c in self.columns]}


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(c):02x}" for c in rgb)


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def colour(score: float, low: float, high: float) -> str:
    """A covered score's colour: GRADIENT[1] at `low`, GRADIENT[2] at `high` (linear in RGB)."""
    start, end = _rgb(GRADIENT[1]), _rgb(GRADIENT[2])
    t = 1.0 if high <= low else min(1.0, max(0.0, (score - low) / (high - low)))
    return _hex(tuple(a + (b - a) * t for a, b in zip(start, end)))


def matrix(cov: Coverage) -> Matrix:
    """The matrix of a coverage result (`bastion.coverage.compute.compute`)."""
    scores = [r.score for r in cov.techniques.values() if r.covered]
    low, high = (min(scores), max(scores)) if scores else (0.0, 0.0)

    def cell(r: TechniqueResult) -> Cell:
        return Cell(r.id, r.name, r.covered, r.score, r.count, r.max_level,
                    colour(r.score, low, high) if r.covered else None)

    columns = []
    for tac in cov.tactics:
        here = [r for r in cov.techniques.values() if tac.shortname in r.tactics]
        ids = {r.id for r in here}
        parents = {r.id: cell(r) for r in here if r.parent is None or r.parent not in ids}
        for r in here:
            if r.id not in parents:
                parents[r.parent].subtechniques.append(cell(r))
        for c in parents.values():
            c.subtechniques.sort(key=lambda s: (s.name.lower(), s.id))
        cells = sorted(parents.values(), key=lambda c: (c.name.lower(), c.id))
        columns.append(Column(tac.id, tac.shortname, tac.name, tac.covered, tac.total, tac.percent,
                              cells))
    return Matrix(cov.account, cov.domain, cov.version, cov.method, cov.aggregation, low, high,
                  dict(cov.overall), columns)


def behind(tenant, cov: Coverage, technique: str) -> list[dict[str, Any]]:
    """The detections a technique counts through (`cov` computed with details=True), each with
    its mappings to the ids it counts through: confidence, method, rationale, validation.
    Values are unmasked: a front end masks them for its role (kind `detection` / `mapping`)."""
    r = cov.techniques.get(technique.upper())
    out = []
    for d in (r.detections or []) if r is not None else []:
        mappings = []
        for mapped in d["mapped"]:
            rec = tenant.get(key_for("mapping", technique=mapped, detection=d["key"]))
            if rec is not None:
                mappings.append({"kind": "mapping", "key": rec.key,
                                 **{f: rec.values.get(f) for f in MAPPING_FIELDS}})
        out.append({**d, "kind": "detection", "mappings": mappings})
    return out
