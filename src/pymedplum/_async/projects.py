"""Projects: accounts on resources, ProjectMembership access, inviting users."""

from __future__ import annotations

from pymedplum._async._base import AsyncClientBase


class AsyncProjectMethods(AsyncClientBase):
    """Projects: accounts on resources, ProjectMembership access, inviting users."""
