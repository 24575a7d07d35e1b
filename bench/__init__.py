"""On-demand benchmarks: scripts that print figures, run by hand (`make bench`), never by pytest."""
