"""Hoymiles DTU Bridge: local control of Hoymiles DTUs and WiFi inverters.

The package is layered; each concern lives in the folder named after it:

* :mod:`hoymiles_bridge.protocol` - sans-I/O frame codec, crypto, message registry
* :mod:`hoymiles_bridge.dtu` - connection, client, typed models
* :mod:`hoymiles_bridge.simulator` - a DTU that speaks the real protocol
* :mod:`hoymiles_bridge.cli` - the ``hoymiles-bridge`` command
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
