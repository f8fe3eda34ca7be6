"""Packaging detail pyproject.toml cannot express: configs/ installs as privtrain.configs."""

from pathlib import Path

from setuptools import find_packages, setup

groups = sorted(p.name for p in Path("configs").iterdir() if p.is_dir() and not p.name.startswith("."))
config_packages = ["privtrain.configs", *(f"privtrain.configs.{g}" for g in groups)]

setup(
    packages=[*find_packages(include=["privtrain", "privtrain.*"]), *config_packages],
    package_dir={"privtrain.configs": "configs"},
    package_data={**{p: ["*.yaml"] for p in config_packages}, "privtrain.artifacts": ["templates/*.j2"]},
)
