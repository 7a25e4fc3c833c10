"""The application core: the device fleet, its typed state and events, one command registry."""
