"""The DTU wire protocol, without any I/O.

* :mod:`.frame` - the ``HM`` header, CRC, strict parsing and the stream splitter
* :mod:`.crypto` - AES-128-GCM payload encryption of newer firmware
* :mod:`.registry` - tag <-> protobuf message type, direction and name
* :mod:`.codec` - frames to messages and back
* :mod:`.requests` - the read requests a client sends, and the app's time fields
* :mod:`.pb` - generated protobuf modules (from ``protos/``)
"""

from __future__ import annotations
