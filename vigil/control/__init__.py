"""The control socket's transport: bytes in, requests out."""
