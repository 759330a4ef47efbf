"""The vending domain: money, catalog, planograms, stock, vend sessions, and the interfaces
that payment providers and dispenser boards implement (``payment.py``, ``dispenser.py``).

Nothing here knows a vendor, board or provider by name: integrations provide them through the
``vendhub_payment_provider`` and ``vendhub_dispenser`` hooks.
"""
