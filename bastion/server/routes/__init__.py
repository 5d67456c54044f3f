"""The /v1 routes, one module per area; each route names the permission it needs
(bastion.server.context: READ, IMPORT, TRIAGE, ADMIN)."""

from bastion.server.routes import (admin, coverage, entities, events, graph, imports, risks,
                                   webhooks)

ROUTERS = [entities.router, events.router, imports.router, risks.router, coverage.router,
           graph.router, admin.router, webhooks.router]
