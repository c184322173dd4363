"""Units as data: files, schema, loader, graph, the offline check; no processes."""
