"""The contracts with the outside: the control protocol and the daemon's flags."""
