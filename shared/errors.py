"""The exception tree of teledrive.

Every error teledrive raises on purpose derives from :class:`TeledriveError`::

    TeledriveError
    ├── ConfigError (ValueError)        a config file or option is malformed
    ├── ProtocolError (ValueError)      a message or frame failed to decode or validate
    │   └── FrameError                  a serial (MCU) frame failed COBS, CRC or layout checks
    ├── LinkError (ConnectionError)     a transport (hub socket, serial port) failed
    └── SafetyError                     a safety invariant would be broken
"""


class TeledriveError(Exception):
    """Root of all teledrive errors."""


class ConfigError(TeledriveError, ValueError):
    """A configuration file or option is malformed; the message says where."""


class ProtocolError(TeledriveError, ValueError):
    """A message failed to decode or validate; the message says what and where."""


class FrameError(ProtocolError):
    """A motor-controller frame failed COBS, CRC or layout checks."""


class LinkError(TeledriveError, ConnectionError):
    """A transport (hub connection, serial port, data channel) failed."""


class SafetyError(TeledriveError):
    """An operation would break a safety invariant."""
