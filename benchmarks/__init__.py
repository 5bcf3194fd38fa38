"""Treadle benchmarks: plain scripts that drive a real `treadle dev` server (`make bench`)."""
