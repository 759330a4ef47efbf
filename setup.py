"""Package mapping that pyproject.toml alone cannot express.

The built-in integrations live in ``integrations/`` and are installed as
``vendhub_integrations`` so that no generic top-level name lands in site-packages.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["vendhub", "vendhub.*"])
    + ["vendhub_integrations"]
    + [f"vendhub_integrations.{name}" for name in find_packages("integrations")],
    package_dir={"vendhub_integrations": "integrations"},
    package_data={
        "vendhub_integrations": ["*/manifest.json"],
        # The template `alembic revision` writes new migrations from.
        "vendhub.recorder.migrations": ["script.py.mako"],
    },
)
