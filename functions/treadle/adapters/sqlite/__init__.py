"""SQLite adapters: executions and functions (`db.py`), tenants, Git refs and logs, each
opened through `connection.py`."""
