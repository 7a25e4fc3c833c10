"""The Hoymiles cloud (S-Miles) as a source: login, stations, live flow, settings."""
