"""Test-side names for the local process helpers (the demo uses the same code)."""

from vigil.processes import ServerProcess, free_port, start_server

__all__ = ["ServerProcess", "free_port", "start_server"]
