"""Maps the one import package ``stadtlink`` onto the repository's top-level folders.

``adapters/``, ``schemas/`` and ``broker_client/`` stay at the top of the repository (the layout a
reader sees first) but install as ``stadtlink.adapters``, ``stadtlink.schemas`` and
``stadtlink.broker_client``; ``stadtlink/`` holds only the root package. pyproject.toml's package
finder cannot add a prefix to what it finds, so the package list is computed here; everything else
(metadata, dependencies, package data, entry points) stays in pyproject.toml.
"""
from setuptools import find_namespace_packages, setup

SUBPACKAGE_FOLDERS = ("adapters", "schemas", "broker_client")
#: the families' tests and their sample payloads stay in the repository, not in the wheel or the image
NOT_SHIPPED = ["*.tests", "*.tests.*", "tests", "*.testdata", "*.testdata.*", "testdata",
               "*__pycache__*"]

packages = ["stadtlink"]
package_dir = {"stadtlink": "stadtlink"}
for folder in SUBPACKAGE_FOLDERS:
    package_dir[f"stadtlink.{folder}"] = folder
    packages.append(f"stadtlink.{folder}")
    packages += [f"stadtlink.{folder}.{name}" for name in find_namespace_packages(folder, exclude=NOT_SHIPPED)]

setup(packages=packages, package_dir=package_dir)
