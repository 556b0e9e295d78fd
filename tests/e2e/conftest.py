"""End-to-end fixtures: the integration tests' real PostgreSQL and fresh databases."""

from tests.integration.conftest import database, pg_server, template_db

__all__ = ["database", "pg_server", "template_db"]
