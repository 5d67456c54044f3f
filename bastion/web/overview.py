"""Overview: entities per kind, open risks by severity, overdue risks, coverage per account, the
last imports with what each changed, and trends of open risks and coverage."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from bastion.server.context import Context
from bastion.web.app import READ, render

router = APIRouter()


@router.get("/")
def overview(request: Request, ctx: Context = Depends(READ)):
    return render(request, ctx, "overview.html", counts=ctx.tenant.counts())
