"""The web console at `/console`, served by the platform's own process.

Server-rendered (Jinja2, autoescaped, templates shipped as package data); one small
script from /console/static refreshes an open execution's page. See docs/console.md.
"""
