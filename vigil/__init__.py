"""vigil: an init system and service supervisor.

Importing this package must stay cheap: PID 1 imports it, and so does the
client. Modules are imported by whoever needs them, never from here.
"""

__version__ = "0.1.0"
