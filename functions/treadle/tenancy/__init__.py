"""Tenants, their access keys and quotas, and request authentication.

`sigv4` and `basic` verify what AWS clients and Git send, `admin` holds the use cases
behind `/v1/tenants`. Tenants and keys are kept by a `TenantStore` adapter
(`adapters/sqlite/tenants.py`, `adapters/aws/dynamodb_tenants.py`). The domain never
imports from here; the API layer does.
"""
