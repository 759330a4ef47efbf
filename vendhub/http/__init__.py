"""The hub's HTTP server: the REST API under ``/api``, the WebSocket API and the frontend.

``server.py`` runs aiohttp; ``view.py`` is how a resource declares its routes, the permission
each needs and the JSON schemas that both validate requests and make ``/api/openapi.json``;
``auth.py`` turns a bearer token or a console session cookie into an ``Identity``;
``errors.py`` gives every error one JSON shape. Resources live in ``api/``, one module each.
"""
