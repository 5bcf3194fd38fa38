"""Tenants, their access keys and quotas, and request authentication.

An adapter-level package: `sigv4` and `basic` verify what AWS clients and Git send,
`sqlite_store` keeps tenants and keys, `admin` holds the use cases behind `/v1/tenants`.
The domain never imports from here; the API layer does.
"""
