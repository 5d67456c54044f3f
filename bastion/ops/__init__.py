"""Operations on a whole database or tenant: backup, restore and verify (backup.py), the portable
tenant export and import (moving.py), retention (retention.py) and health (health.py). Library
functions for the CLI and the server; the SQL behind them is in bastion.store."""
