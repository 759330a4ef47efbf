"""One file per schema revision, in order: ``0001_initial.py``, ``0002_….py``, …"""
