"""vigilctl: the client of vigil's control socket. Never imports the daemon."""
