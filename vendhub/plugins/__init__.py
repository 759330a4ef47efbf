"""Plugins: hookspecs, discovery, manifests, planning and setup of integrations."""

from vendhub.plugins.hookspecs import hookimpl

__all__ = ["hookimpl"]
