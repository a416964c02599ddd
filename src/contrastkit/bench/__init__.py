"""Side-by-side speed and memory benchmarks of contrastkit against its peers."""
