# Generated from src/pymedplum/_async/projects.py by codegen/unasync.py: run `make generate`.
"""Projects: accounts on resources, ProjectMembership access, inviting users."""

from __future__ import annotations

from pymedplum._sync._base import ClientBase


class ProjectMethods(ClientBase):
    """Projects: accounts on resources, ProjectMembership access, inviting users."""
