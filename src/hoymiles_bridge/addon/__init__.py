"""Home Assistant add-on integration: options, Supervisor API."""
