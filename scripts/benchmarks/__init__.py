"""VendHub benchmarks: each module here is a subcommand of scripts/bench."""
