"""The event loop and the log that the engine, control and system layers share."""
