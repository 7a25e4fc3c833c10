"""MQTT: broker link, topics, Home Assistant discovery, commands."""
