"""Benchmarks (run by hand, not by CI). A package so worker processes can import bench.* plug-ins."""
