"""What every stage shares: params.yaml and its checks, the paths of every output, file I/O, per-cell
records, errors and progress bars."""
