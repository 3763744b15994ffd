"""``-syslog``: the agent's log lines also go to the local syslog, as serf's do.

serf sends each line as it prints it (with its ``[LEVEL]``), at the priority
of that level, to the facility ``syslog_facility`` (default ``LOCAL0``);
when syslog cannot be reached at start the agent does not start.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket

from swimlib.errors import ConfigError

#: serf's (go-syslog's) facility names.
FACILITIES = {
    "KERN": 0, "USER": 1, "MAIL": 2, "DAEMON": 3, "AUTH": 4, "SYSLOG": 5, "LPR": 6,
    "NEWS": 7, "UUCP": 8, "CRON": 9, "AUTHPRIV": 10, "FTP": 11,
    **{f"LOCAL{i}": 16 + i for i in range(8)},
}
DEFAULT_FACILITY = "LOCAL0"
DEFAULT_ADDRESS = "/dev/log"


def facility_code(name: str) -> int:
    try:
        return FACILITIES[name.upper()]
    except KeyError:
        raise ConfigError(f"invalid syslog facility {name!r}: one of "
                          f"{', '.join(FACILITIES)}") from None


def open_syslog_handler(facility: str, formatter: logging.Formatter,
                        address: str = DEFAULT_ADDRESS) -> logging.Handler:
    """A handler sending to the local syslog; ConfigError when it cannot be reached."""
    code = facility_code(facility)
    try:  # SysLogHandler would swallow this and drop every line
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
            probe.connect(address)
        handler = logging.handlers.SysLogHandler(address=address, facility=code,
                                                 socktype=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ConfigError(f"Syslog setup failed: {address}: {exc.strerror or exc}") from None
    handler.ident = f"swimlib[{os.getpid()}]: "
    handler.setFormatter(formatter)
    return handler
