"""One module per training stage. Each exposes `setup(config, workdir, mesh) -> loop.Stage`."""
