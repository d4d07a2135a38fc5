"""The engine's HTTP API: authentication, roles, endpoints and their defenses."""
