"""Facets: small SQLite databases a tenant's code opens by name (`treadle_facets.connect`).

`models` (names, what a listing shows), `ports` (the `FacetStore` Protocol, whose
embedded adapter is `adapters/sqlite/facets.py`), `service` (the use cases: a worker's
request to open one, with the tenant's quotas; list, export, delete).
"""

from treadle.facets.models import FacetGrant, FacetInfo, check_name
from treadle.facets.ports import FacetStore
from treadle.facets.service import Facets

__all__ = ["FacetGrant", "FacetInfo", "FacetStore", "Facets", "check_name"]
