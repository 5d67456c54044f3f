"""Risk logic shared by importers, enrichment and the CLI: lifecycle, SLA and priority."""
