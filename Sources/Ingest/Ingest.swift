// Ingest: the daemon's shell — configuration, drop-folder watcher, pipeline runner, quarantine,
// sandboxed workers and operations endpoints. The pipeline's stages plug in through `BatchProcessor`.
